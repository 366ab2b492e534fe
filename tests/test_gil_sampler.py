"""clients.gil_sampler on this machine, no Docker: `python -m clients.gil_sampler --pid PID` against a threaded
server on loopback driven by perf1 clients, its record read as gil_share reads it; live mode posting to a
small HTTP server here, each second taken by the Lab view's controller; a second summed up from samples made
by hand, with a GIL and without; and the one-line errors. A measurement whose server got too little CPU on
this shared machine, or whose sampler too few samples, is taken again, up to ATTEMPTS times, with the same
bounds."""
import json
import select
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clients.gil_sampler import summary
from clients.gil_state import HELD, OTHER, WAIT, Sample
from conftest import REPO
from lab.experiments.gil_share import shares
from test_gil_state import ATTEMPTS, STARVED_DELAY, WAIT_S, new_thread, niced, schedstat, tasks, wait_until
from test_live_controller import controller

RATE_HZ = 100  # the sampler's default
SAMPLE_S = 2.0


def sampler(pid, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "clients.gil_sampler", "--pid", str(pid), *map(str, args)],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def recorded(pid, seconds):
    """(the sampler's record of seconds, (the server's CPUs busy meanwhile, the share of that time its threads
    were runnable but waited for a CPU), from schedstat)."""
    before = schedstat(pid)
    proc = sampler(pid, "--max-s", seconds)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    took = record["samples"][-1][0] - record["samples"][0][0]
    return record, [(after - then) / took for after, then in zip(schedstat(pid), before)]


def idle_client(shares, *tids):
    """Why two clients' threads did not both want the GIL (held or waited) half of the time, or None: the setup
    is two clients that each keep a request in hand, and a client or its thread that gets no CPU keeps none."""
    wanting = [shares[tid]["held"] + shares[tid]["wait"] for tid in tids]
    return f"the clients' threads wanted the GIL {wanting[0]:.2f} and {wanting[1]:.2f}" if min(wanting) < 0.5 else None


def starved(record, cpu, seconds):
    """Why a measurement says too little, or None if it is fine: few samples; a server that got little CPU, or
    whose threads waited for one (a thread woken to take the GIL but not running is 'other', not 'wait')."""
    (busy, delayed), samples = cpu, len(record["samples"])
    if samples < 0.5 * RATE_HZ * seconds or busy < 0.5 or delayed >= STARVED_DELAY:
        return f"{samples} samples in {seconds} s, the server on a CPU {busy:.2f}, waiting for one {delayed:.2f}"
    return None


@contextmanager
def perf1_clients(server):
    """start() -> the TID of the server's thread for one more perf1 client, once it has its first reply."""
    clients = []

    def start():
        known = tasks(server.proc.pid)
        clients.append(subprocess.Popen(
            [sys.executable, "-m", "clients.perf1", "--host", server.host, "--port", str(server.port), "--n", "25",
             "--duration", "60"], cwd=REPO, stdout=subprocess.PIPE, text=True))
        ready, _, _ = select.select([clients[-1].stdout], [], [], WAIT_S)
        assert ready and clients[-1].stdout.readline(), "perf1 got no reply"
        return new_thread(server.proc.pid, known)

    try:
        yield start
    finally:
        for client in clients:
            client.kill()
            client.wait(timeout=10)
            client.stdout.close()


def rows(record):
    """{tid: gil_share's row}, over the whole record, and the GIL's hand-offs per second."""
    m = shares(record, (record["samples"][0][0], record["samples"][-1][0]))
    return {row["tid"]: row for row in m["gil_threads"]}, m["gil_handoffs_per_s"]


def test_one_perf1_client_never_waits_and_two_wait_for_each_other(start_server, record_property):
    """One perf1 client: its connection's thread holds the GIL and waits for it about never. Two (C4): both
    threads wait for it a large share of the time, and it changes hands many times a second."""
    server = start_server("threaded", "--handler", "fib", "--quiet", preexec_fn=niced)
    pid = server.proc.pid
    for _ in range(ATTEMPTS):
        with perf1_clients(server) as start:
            a = start()
            one, cpu_one = recorded(pid, SAMPLE_S)
            b = start()
            two, cpu_two = recorded(pid, SAMPLE_S)
        (one_rows, one_rate), (two_rows, two_rate) = rows(one), rows(two)
        why = [reason for reason in (starved(one, cpu_one, SAMPLE_S), starved(two, cpu_two, SAMPLE_S),
                                     idle_client(two_rows, a, b)) if reason]
        if not why:
            break
    assert not why, f"starved {ATTEMPTS} times: {why}"
    record_property("summary", f"gil_sampler, perf1 on threaded: one client wait {one_rows[a]['wait']:.2f}, "
                               f"{one_rate:.0f} hand-offs/s; two: wait {two_rows[a]['wait']:.2f} and "
                               f"{two_rows[b]['wait']:.2f}, {two_rate:.0f} hand-offs/s; sampler CPU "
                               f"{two['cpu_s'] / SAMPLE_S:.1%} of one")
    assert one["python"] == ".".join(map(str, sys.version_info[:3])) and one["gil"] and one["rate_hz"] == RATE_HZ
    assert one["errors"] == two["errors"] == 0 and one["mechanism"].startswith("clients.gil_state")
    assert all(isinstance(switch_number, int) and {state for _, state, _ in threads} <= {HELD, WAIT, OTHER}
               for _, switch_number, threads in two["samples"])
    assert one_rows[a]["wait"] < 0.05 and one_rows[a]["held"] > 0.5, one_rows
    assert two_rows[a]["wait"] > 0.2 and two_rows[b]["wait"] > 0.2, two_rows
    assert two_rate > 20 and two_rate > 5 * one_rate, (one_rate, two_rate)
    assert one_rows[pid]["role"] == "accept loop" and one_rows[pid]["held"] == one_rows[pid]["wait"] == 0
    assert str(a) in one["threads"] and {str(a), str(b)} <= set(two["threads"])


class Posts(BaseHTTPRequestHandler):
    """The Lab view's /lab/gil, as far as the sampler sees it: each post's body and token kept."""

    def do_POST(self):
        self.server.posts.append((self.headers.get("X-Lab-Token"),
                                  json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@contextmanager
def lab_gil():
    """(the URL of a /lab/gil on loopback, the list its posts go to)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Posts)
    server.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/lab/gil", server.posts
    finally:
        server.shutdown()
        server.server_close()


def test_live_mode_posts_each_second_with_wait_and_hand_offs(start_server, monkeypatch, tmp_path):
    """Two perf1 clients: each posted second has both threads' held and wait, the hand-offs per second and
    its 0.2 s windows, carries the token, and the Lab view's controller takes it."""
    server = start_server("threaded", "--handler", "fib", "--quiet", preexec_fn=niced)
    monkeypatch.setenv("LAB_TOKEN", "the-token")
    made, _ = controller()
    for _ in range(ATTEMPTS):
        with lab_gil() as (url, posts), perf1_clients(server) as start:
            tids = {start(), start()}
            before, started = schedstat(server.proc.pid), time.monotonic()
            proc = sampler(server.proc.pid, "--max-s", 4, "--post", url, "--target", "server-by-hand",
                           "--dump-rate", 0)
            delayed = (schedstat(server.proc.pid)[1] - before[1]) / (time.monotonic() - started)
        assert proc.returncode == 0 and proc.stdout == "", proc.stderr
        seconds = [body for _, body in posts]
        full = [s for s in seconds if s["samples"] >= 0.5 * RATE_HZ and not idle_client(
            {t["tid"]: t for t in s["threads"]}, *tids)]
        if len(full) >= 2 and delayed < STARVED_DELAY:
            break
    assert len(full) >= 2 and delayed < STARVED_DELAY, (f"starved {ATTEMPTS} times: {[s['samples'] for s in seconds]} "
                                                        f"samples a second, the server waiting for a CPU {delayed:.2f}")
    assert {token for token, _ in posts} == {"the-token"}
    assert all(made.take_gil_second(body) is None for body in seconds) and list(made.gil) == seconds
    for second in full:
        assert second["target"] == "server-by-hand" and second["pid"] == server.proc.pid
        threads = {t["tid"]: t for t in second["threads"]}
        assert tids <= set(threads) and all(set(t) == {"tid", "name", "held", "wait", "fib_depth"}
                                            for t in threads.values()), threads
        assert sum(threads[tid]["wait"] for tid in tids) > 0.3 and second["handoffs"] > 20, second
        assert 0 <= second["free"] <= 1
        starts = [window[0] for window in second["windows"]]
        assert starts == sorted(starts) and all(second["second"] <= t0 < second["second"] + 1 for t0 in starts)
        for _, handoffs, by_thread in second["windows"]:
            assert handoffs >= 0 and {str(tid) for tid in tids} <= set(by_thread), second["windows"]
            assert all(0 <= held + wait <= 1 for held, wait in by_thread.values())
    refused = made.take_gil_second({**seconds[0], "windows": "every 0.2 s"})
    assert refused.startswith("not a second of clients.gil_sampler") and "\n" not in refused


def at(t, switch_number, threads, cpu_s=None):
    return Sample(t, switch_number, None, threads, cpu_s)


@pytest.mark.fast
def test_a_second_is_summed_up_per_thread_and_per_window():
    """Made by hand: thread 1 holds the GIL in the first half of second 100, thread 2 waits; they swap in the
    second half. The hand-offs count from the previous second's last sample. Without a GIL, on-CPU shares."""
    samples = [(at(100.05 + i / 10, 10 + i, {1: HELD if i < 5 else WAIT, 2: WAIT if i < 5 else HELD}),
                [[1, "a", HELD if i < 5 else WAIT, 12], [2, "b", WAIT if i < 5 else HELD, 0]]) for i in range(10)]
    second = summary(100, samples, "server-x", 7, before=at(99.95, 9, {}))
    assert second["handoffs"] == 10.0 and second["free"] == 0 and second["samples"] == 10 and second["pid"] == 7
    assert second["threads"] == [{"tid": 1, "name": "a", "held": 0.5, "wait": 0.5, "fib_depth": 12},
                                 {"tid": 2, "name": "b", "held": 0.5, "wait": 0.5, "fib_depth": 0}]
    assert [w[0] for w in second["windows"]] == [100.0, 100.2, 100.4, 100.6, 100.8]
    assert second["windows"][0] == [100.0, 10.0, {"1": [1.0, 0.0], "2": [0.0, 1.0]}]
    assert second["windows"][4][2] == {"1": [0.0, 1.0], "2": [1.0, 0.0]}
    no_gil = [(at(100 + i / 2, None, {1: OTHER, 2: OTHER}, {1: i * 0.5, 2: i * 0.25}),
               [[1, "a", i * 0.5, 0], [2, "b", i * 0.25, 0]]) for i in range(2)]
    second = summary(100, no_gil, "server-t")
    assert second["handoffs"] is None and second["free"] is None
    assert [(t["tid"], t["on_cpu"]) for t in second["threads"]] == [(1, 1.0), (2, 0.5)]
    assert second["windows"] == [[100.0, None, {"1": None, "2": None}], [100.4, None, {"1": 1.0, "2": 0.5}]]


@pytest.mark.fast
def test_a_process_it_cannot_read_is_one_line_and_exit_1():
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        wait_until(lambda: open(f"/proc/{sleeper.pid}/comm").read().strip() == "sleep", "exec of sleep")
        proc = sampler(sleeper.pid, "--max-s", 1)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.returncode == 1 and proc.stdout == "", proc
    assert proc.stderr.splitlines() == [f"gil_sampler: process {sleeper.pid} (sleep) is not CPython: no _PyRuntime in "
                                        "the files it maps"]
    bad = sampler(1, "--rate", 0)
    assert bad.returncode == 2 and "--rate must be in (0, 1000]" in bad.stderr and "Traceback" not in bad.stderr
