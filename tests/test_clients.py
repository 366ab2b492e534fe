"""The article's measuring tools (clients/), run as real processes against real servers on loopback.

Timings on a shared 2-core machine are noisy: every claim is asserted as a ratio with a wide
margin, never as an absolute time.
"""

from __future__ import annotations

import json
import math
import os
import pkgutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import clients
from clients.common import free_port, pinned_to
from server import placement

REPO_ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("perf1", "perf2", "request", "loopback_floor", "gil_stall", "thread_memory", "recursion_depth",
         "cpu_parallelism", "thread_cpus")

# fib(34) takes about 0.45 s here: several 0.1 s buckets of perf2 fall wholly inside it.
LONG_FIB_N = 34
CLIENT_TIMEOUT_S = 60


def client_command(tool: str, *args) -> list[str]:
    """The command of clients.TOOL, or with tool None of `python -m clients` (compose's clients service)."""
    return [sys.executable, "-m", f"clients.{tool}" if tool else "clients", *map(str, args)]


def client_preexec(cpus: set[int] | None):
    """Pin the client if asked, and let Ctrl-C (SIGINT) reach it even if this run ignores it."""
    pin = pinned_to(cpus)

    def prepare() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if pin:
            pin()

    return prepare


def server_and_client_cpus() -> tuple[set[int] | None, set[int] | None]:
    """One CPU for the server, another for the clients, as the lab does on 2 cores.

    Unpinned, on a loaded machine, the server's I/O thread can win the race for the GIL while
    the CPU-bound thread waits to be scheduled, and C6's collapse comes and goes with the load.
    Pinned, the GIL still takes perf2 down to about 2%, while a mere share of the CPU (the
    threshold-pool server's worker on the same core) leaves it about half: C6's test tells them
    apart (checked by running it against threshold-pool, where it fails as it should)."""
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, {cpus[1]}) if len(cpus) >= 2 else (None, None)


def run_client(tool: str, *args, timeout: float = CLIENT_TIMEOUT_S, cpus=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        client_command(tool, *args),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=client_preexec(cpus),
    )


class RunningClient:
    """A client running in the background; its stdout lines are noted with their time of arrival,
    so a test can wait for lines printed after a given moment, however slow the machine is."""

    def __init__(self, tool: str, *args, cpus=None):
        self.process = subprocess.Popen(
            client_command(tool, *args),
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=client_preexec(cpus),
        )
        self.arrivals: list[float] = []
        self.lines: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        for line in self.process.stdout:
            with self.changed:
                self.arrivals.append(time.time())
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.arrivals.append(float("inf"))  # end of output
            self.changed.notify_all()

    def wait_for_lines(self, count: int, after: float = 0.0) -> None:
        """Wait until count lines have arrived after the epoch time `after`."""
        with self.changed:
            arrived = self.changed.wait_for(
                lambda: sum(1 for at in self.arrivals if at > after) >= count, timeout=CLIENT_TIMEOUT_S
            )
            ended = float("inf") in self.arrivals
        assert arrived and not ended, ("the client ended early", self.lines)

    def interrupt_json(self) -> dict:
        """Stop the client with Ctrl-C (SIGINT); return the record it still prints."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=CLIENT_TIMEOUT_S)
        self.reader.join(CLIENT_TIMEOUT_S)
        stderr = self.process.stderr.read()
        assert self.process.returncode == 130, stderr
        record = json.loads(self.lines[-1])
        assert record["stopped_by"] == "interrupt"
        return record


def json_run(tool: str, *args, timeout: float = CLIENT_TIMEOUT_S, cpus=None) -> tuple[dict, list[str]]:
    """Run a tool with --json; return its record and the lines it printed before it."""
    result = run_client(tool, *args, "--json", timeout=timeout, cpus=cpus)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]), lines[:-1]


def server_address(server) -> list[str]:
    return ["--host", server.host, "--port", server.port]


@pytest.fixture
def fib_server(start_server):
    return start_server("threaded", "--handler", "fib", "--quiet")


# ---------------------------------------------------------------- perf1, perf2, request: output


def test_perf1_json_is_consistent_with_its_samples(fib_server):
    record, lines = json_run("perf1", *server_address(fib_server), "--n", 20, "--count", 5)
    assert record["tool"] == "perf1"
    assert record["n"] == 20 and record["payload"] == "20"  # the article's bare number
    assert record["count"] == len(record["latencies_s"]) == 5
    latency_lines = [line for line in lines if not line.startswith("#")]
    assert [float(line) for line in latency_lines] == [round(x, 6) for x in record["latencies_s"]]
    assert record["mean_s"] == pytest.approx(statistics.fmean(record["latencies_s"]))
    assert min(record["latencies_s"]) <= record["p50_s"] <= record["p99_s"] <= max(record["latencies_s"])
    # Every sample lies inside the run's epoch window.
    assert record["ended_at"] - record["started_at"] >= sum(record["latencies_s"])
    assert record["stopped_by"] == "count"


def test_perf1_duration_bounds_the_loop(fib_server):
    record, _ = json_run("perf1", *server_address(fib_server), "--n", 15, "--duration", 0.3)
    assert record["stopped_by"] == "duration"
    assert record["count"] == len(record["latencies_s"]) >= 1
    assert record["ended_at"] - record["started_at"] >= 0.3


def test_perf2_json_buckets_sum_to_the_total(fib_server):
    record, lines = json_run("perf2", *server_address(fib_server), "--duration", 1, "--interval", 0.25)
    assert record["tool"] == "perf2" and record["payload"] == "1" and record["interval_s"] == 0.25
    starts = [start for start, _ in record["buckets"]]
    counts = [count for _, count in record["buckets"]]
    assert len(record["buckets"]) == 4
    assert starts[0] == pytest.approx(record["started_at"])
    assert [later - earlier for earlier, later in zip(starts, starts[1:])] == pytest.approx([0.25] * 3)
    assert sum(counts) == record["total"] > 0
    assert record["rate_per_s"] == pytest.approx(record["total"] / record["duration_s"])
    assert record["duration_s"] >= 1.0
    # One printed line per bucket, with the count of that bucket.
    rate_lines = [line for line in lines if "requests/second (" in line]
    assert [int(line.split("(")[1].split()[0]) for line in rate_lines] == counts


def test_request_prints_the_reply_and_its_time(fib_server):
    record, lines = json_run("request", *server_address(fib_server), 20)
    assert lines[0] == "6765" == record["reply"]
    assert lines[1].startswith("elapsed ")
    assert record["started_at"] <= record["sent_at"] <= record["ended_at"] and record["elapsed_s"] > 0


# ---------------------------------------------------------------- the claims


def test_c4_a_second_perf1_client_clearly_raises_the_first_ones_latency(fib_server):
    """C4: the threaded server's threads share one GIL, so a 2nd client doubles each latency.

    As in the article, one perf1 runs throughout and a second one joins for a while, three times.
    Each time, the first one's samples with company are compared with its samples alone just
    before and after, so a load that comes and goes on this shared machine spoils one cycle at
    most; the median of the three ratios is the verdict. Sample counts, not durations, set the
    phases, so a slow machine makes the test slower, not wrong."""
    address = server_address(fib_server)
    first = RunningClient("perf1", *address, "--duration", 60, "--json")
    first.wait_for_lines(4)
    seconds = []
    for _ in range(3):
        second, _ = json_run("perf1", *address, "--count", 6)
        seconds.append(second)
        first.wait_for_lines(4, after=second["ended_at"])
    record = first.interrupt_json()

    samples = list(zip(record["sent_at"], record["latencies_s"]))[1:]  # the first one connects too
    windows = [(second["started_at"], second["ended_at"]) for second in seconds]
    ratios = []
    for index, (start, end) in enumerate(windows):
        gap_start = windows[index - 1][1] if index else 0.0
        gap_end = windows[index + 1][0] if index + 1 < len(windows) else float("inf")
        together = [latency for sent, latency in samples if start <= sent < end]
        alone = [
            latency
            for sent, latency in samples
            if gap_start < sent and sent + latency < start or end < sent and sent + latency < gap_end
        ]
        assert len(together) >= 3 and len(alone) >= 3, (samples, windows)
        ratios.append(statistics.fmean(together) / statistics.fmean(alone))
    # The calibration measured x1.9; a core per client would give x1.0.
    assert statistics.median(ratios) > 1.4, f"latency with a second client / alone, per cycle: {ratios}"


def test_c6_perf2_rate_collapses_while_a_long_request_runs(start_server):
    """C6: a CPU-bound thread holds the GIL 5 ms at a time; perf2's thread gets a slot per switch."""
    server_cpus, client_cpus = server_and_client_cpus()
    server = start_server("threaded", "--handler", "fib", "--quiet", preexec_fn=pinned_to(server_cpus))
    address = server_address(server)
    perf2 = RunningClient("perf2", *address, "--interval", 0.1, "--duration", 60, "--json", cpus=client_cpus)
    perf2.wait_for_lines(8)  # a steady rate first
    long_request, _ = json_run("request", *address, LONG_FIB_N, cpus=client_cpus)
    perf2.wait_for_lines(3, after=long_request["ended_at"])  # and the recovery
    record = perf2.interrupt_json()

    interval = record["interval_s"]
    before = [count for start, count in record["buckets"][1:] if start + interval <= long_request["started_at"]]
    during = [
        count
        for start, count in record["buckets"]
        if start >= long_request["started_at"] and start + interval <= long_request["ended_at"]
    ]
    assert len(before) >= 3 and len(during) >= 2, (record["buckets"], long_request)
    # The article and the calibration see a drop of more than 98%.
    assert statistics.median(during) < 0.2 * statistics.median(before), (before, during)
    assert sum(count for _, count in record["buckets"]) == record["total"]


def test_c5_gil_stall_silences_the_ticker_but_not_in_the_control_run():
    # 2*10**7 takes about 0.7 s here; the article's 10**9 takes about 35 s.
    record, lines = json_run("gil_stall", "--size", "2e7", timeout=120)
    stall, control, sigint = record["stall"], record["control"], record["sigint"]
    assert stall["completed"]
    assert stall["longest_gap_s"] >= 0.8 * stall["duration_s"]
    assert stall["ticks_during"] <= 2
    assert control["duration_s"] == pytest.approx(stall["duration_s"], rel=0.2)
    assert control["longest_gap_s"] < 0.25 * control["duration_s"]
    assert control["ticks_during"] >= 0.25 * control["duration_s"] / record["tick_interval_s"]
    # Ctrl-C sent early in the call is only delivered once the call is over.
    assert sigint["sent"] and sigint["sent_after_s"] < 0.9 * stall["duration_s"]
    assert sigint["verdict"] == "deferred"
    assert sigint["interrupt_after_s"] >= 0.9 * stall["duration_s"]
    assert sigint["call_completed_first"]
    assert any("Ctrl-C does not work" in line for line in lines)


def test_c11_thread_memory_virtual_per_thread_far_above_resident():
    record, _ = json_run("thread_memory", "--threads", 500, "--stack-size", 64)
    default, small = record["variants"]
    assert default["stack_size_kib"] is None and small["stack_size_kib"] == 64
    for variant in (default, small):
        assert variant["threads_started"] == 500 and variant["start_error"] is None
        assert variant["after"]["threads"] - variant["before"]["threads"] == 500
    assert default["vm_size_per_thread_kib"] > 20 * default["vm_rss_per_thread_kib"]
    # threading.stack_size() shrinks the reservation by about the difference of the stack sizes.
    if record["default_stack_kib"]:
        shrink = default["vm_size_per_thread_kib"] - small["vm_size_per_thread_kib"]
        assert shrink > 0.5 * (record["default_stack_kib"] - 64)


def test_c12_recursion_depth_contains_crashes_and_grows_with_the_stack():
    record, lines = json_run("recursion_depth", "--stack-size", 256, "--stack-size", 1024, "--limit", 20000)
    probes = {(row["kind"], row["stack_size_kib"]): row for row in record["probes"]}
    assert set(probes) == {(kind, size) for kind in ("python", "c") for size in (256, 1024, None)}
    # Recursion through C overflows a 256 KiB thread stack: the child dies, the tool reports it.
    assert probes["c", 256]["outcome"] == "crashed" and probes["c", 256]["signal"] == "SIGSEGV"
    assert probes["c", 256]["depth"] > 100
    assert record["crashes"] == sum(row["outcome"] == "crashed" for row in record["probes"]) >= 1
    assert any(line.startswith("crashes: ") for line in lines)
    # Python-to-Python calls (3.11+) do not nest the C stack: far deeper on the same stack.
    assert probes["python", 256]["depth"] > 5 * probes["c", 256]["depth"]
    if probes["c", 1024]["outcome"] == "crashed":
        assert probes["c", 1024]["depth"] > 2 * probes["c", 256]["depth"]
    else:  # Python 3.12 stops C recursion itself, at a fixed depth, before 1 MiB runs out
        assert probes["c", 1024]["outcome"] == "recursion-error"


# ---------------------------------------------------------------- errors and exit codes


class MisbehavingServer:
    """A listener on loopback that accepts one connection and then closes it, or says nothing."""

    def __init__(self, close_at_once: bool):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.close_at_once = close_at_once
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve_one, daemon=True)
        self.thread.start()

    def serve_one(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            if not self.close_at_once:
                self.done.wait(10)

    def close(self) -> None:
        self.done.set()
        self.thread.join(10)
        self.listener.close()


def assert_one_line_error(result: subprocess.CompletedProcess, exit_code: int, text: str) -> None:
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert text in result.stderr


def test_refused_connection_exits_3():
    port = free_port()
    for tool, args in (("perf1", ["--count", 1]), ("perf2", ["--duration", 1]), ("request", [30])):
        assert_one_line_error(run_client(tool, "--port", port, *args), 3, "connection refused")


def test_err_reply_exits_5(fib_server):
    address = server_address(fib_server)
    assert_one_line_error(run_client("request", *address, "abc"), 5, "ERR")
    assert_one_line_error(run_client("perf1", *address, "--n", 99, "--count", 1), 5, "ERR")
    # The server keeps the connection and the service: a good request still works.
    assert run_client("request", *address, 10).stdout.startswith("55\n")


def test_dropped_connection_exits_4():
    server = MisbehavingServer(close_at_once=True)
    try:
        # Closed or reset, depending on timing: both are a dropped connection.
        assert_one_line_error(run_client("perf1", "--port", server.port, "--count", 1), 4, "by the server")
    finally:
        server.close()


def test_no_reply_exits_6_after_the_timeout():
    server = MisbehavingServer(close_at_once=False)
    try:
        result = run_client("request", "--port", server.port, "--timeout", 0.3, 30)
        assert_one_line_error(result, 6, "no reply")
    finally:
        server.close()


class ScriptedServer:
    """A listener on loopback that answers one connection's requests with `reply(i)` (bytes sent in
    the pieces given), for perf2's paths off its fast loop."""

    def __init__(self, reply):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.reply = reply
        self.thread = threading.Thread(target=self.serve_one, daemon=True)
        self.thread.start()

    def serve_one(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            for i in range(100_000):  # bounded: perf2 --duration 1 asks far fewer
                if not connection.recv(100):
                    return
                pieces = self.reply(i)
                if pieces is None:
                    return  # close: a dropped connection
                for piece in pieces:
                    connection.sendall(piece)
                    time.sleep(0.001)  # apart, so that the client's one recv gets only the first

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.mark.parametrize("reply, exit_code, text", [
    (lambda i: [b"1", b"\n"], 0, None),  # a reply split in transit is read on to its newline
    (lambda i: [b"1\n"] if i < 50 else [b"ERR busy\n"], 5, "server replied: ERR busy"),
    (lambda i: [b"1\n"] if i < 50 else [b"2\n"], 7, "wrong reply b'2' to fib(1)"),
    (lambda i: [b"1\n"] if i < 50 else None, 4, "by the server"),
])
def test_perf2_off_its_fast_path(reply, exit_code, text):
    server = ScriptedServer(reply)
    try:
        result = run_client("perf2", "--port", server.port, "--duration", 1, "--json")
    finally:
        server.close()
    if exit_code:
        assert_one_line_error(result, exit_code, text)
    else:
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1])["total"] > 0


def test_bad_arguments_exit_2():
    for tool, args in (
        ("perf1", ["--count", 0]),
        ("perf1", ["--count", 1, "--duration", 1]),
        ("perf2", ["--interval", "-1"]),
        ("gil_stall", ["--size", "spam"]),
        ("thread_memory", ["--stack-size", 4]),
        ("thread_cpus", ["--interval", "0.001"]),
    ):
        result = run_client(tool, *args)
        assert result.returncode == 2, (tool, args, result.stderr)
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("tool", TOOLS)
def test_help_explains_the_output(tool):
    result = run_client(tool, "--help")
    assert result.returncode == 0
    assert "output:" in result.stdout and "--json" in result.stdout


def test_thread_cpus_names_a_servers_answering_threads_and_workers_and_refuses_a_missing_pid(start_server):
    server = start_server("threshold-pool", "--quiet")
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"1\n")
        assert sock.recv(100) == b"1\n"
        result = run_client("thread_cpus", "--pid", server.proc.pid, "--duration", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.strip().splitlines()[-1])
    roles = sorted(info["role"] for info in record["threads"].values())
    workers = placement.worker_cpus(placement.FIXED, record["cpus"])
    assert roles.count("answer") == 1 and roles.count("worker") == len(workers), record["threads"]
    assert "sampler" in roles and len(record["samples"]) >= 2
    assert_one_line_error(run_client("thread_cpus", "--pid", 999_999_999, "--duration", "0.1"), 1, "no process")


def test_hold_connections_counts_the_clients_served_at_once(start_server):
    threaded, sequential = start_server("threaded", "--quiet"), start_server("sequential", "--quiet")
    results = {}
    for name, server in (("threaded", threaded), ("sequential", sequential)):
        proc = subprocess.run([sys.executable, "-m", "clients.hold_connections", "--host", server.host,
                               "--port", str(server.port), "--connections", "20", "--hold", "0.2",
                               "--timeout", "1", "--json"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        results[name] = json.loads(proc.stdout.splitlines()[-1])
    assert results["threaded"]["served"] == 20
    assert results["sequential"]["served"] == 1  # C1: only the first connection is served


def loopback_floor(*args, cpus=None, timeout=30) -> dict:
    """clients.loopback_floor's JSON record (on `cpus` only, with taskset, if given)."""
    pin = ["taskset", "-c", cpus] if cpus else []
    proc = subprocess.run([*pin, sys.executable, "-m", "clients.loopback_floor", *map(str, args), "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def two_cpus() -> list[int]:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the across layout is not measurable on one")
    return cpus


def test_loopback_floor_measures_both_layouts_and_the_perf2_client_ceiling_across_cpus():
    cpus = two_cpus()
    record = loopback_floor("--duration", 0.6)
    first, last = cpus[0], cpus[-1]  # the defaults: across FIRST,LAST, the same CPU LAST
    assert (record["same_cpu"], record["echo_cpu"], record["client_cpu"]) == (last, first, last)
    assert record["ran_on"] == {"same": {"echo": last, "client": last}, "across": {"echo": first, "client": last}}
    assert record["perf2_layout"] == "across CPUs" and record["across_cpus_not_measurable"] is None
    for loop in ("same_cpu", "across_cpus"):  # a third of --duration each, and a rate from its own count
        assert record[f"{loop}_total"] > 100 and record[f"{loop}_duration_s"] >= 0.2, record
        assert abs(record[f"{loop}_per_s"] - record[f"{loop}_total"] / record[f"{loop}_duration_s"]) < 1e-6
    # the old fields: the bare loop and perf2's own loop, in perf2's layout, across CPUs
    assert record["rate_per_s"] == record["across_cpus_per_s"] and record["total"] == record["across_cpus_total"]
    assert record["perf2_total"] > 100 and record["perf2_duration_s"] >= 0.2  # every echo was fib(1)'s reply
    assert abs(record["perf2_ceiling_per_s"] - record["perf2_total"] / record["perf2_duration_s"]) < 1e-6


def affinity_of(pid: int) -> str | None:
    """The CPUs a process may run on, as /proc/PID/status lists them; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def test_loopback_floor_pins_the_echo_and_the_client_where_its_options_say():
    """Read from outside, in /proc, while it runs: the options' layouts (not the defaults), each end on its CPU."""
    cpus = two_cpus()
    first, last = cpus[0], cpus[-1]
    proc = subprocess.Popen(client_command("loopback_floor", "--same-cpu", first, "--across", f"{last},{first}",
                                           "--duration", 3, "--json"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = set()  # (the client's CPUs, the echo's CPUs)
    try:
        while proc.poll() is None:
            for child in children_of(proc.pid):
                echo, client = affinity_of(child), affinity_of(proc.pid)
                if echo and client:  # neither gone yet (a fresh child has the client's CPUs for an instant)
                    seen.add((client, echo))
            time.sleep(0.01)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert {(str(first), str(first)), (str(first), str(last))} <= seen, seen  # same CPU, then across
    record = json.loads(out.splitlines()[-1])
    assert record["ran_on"] == {"same": {"echo": first, "client": first}, "across": {"echo": last, "client": first}}


def test_loopback_floor_moves_out_of_an_affinity_as_the_lab_views_master_does():
    """Pinned by affinity alone (taskset, as server.affinity pins the master), it may still use the other CPUs
    it is given: the defaults come from its affinity, the options may name any CPU it can run on."""
    first, last = two_cpus()[0], two_cpus()[-1]
    record = loopback_floor("--duration", 0.4, "--same-cpu", last, "--across", f"{first},{last}", cpus=str(last))
    assert record["ran_on"] == {"same": {"echo": last, "client": last}, "across": {"echo": first, "client": last}}


def test_loopback_floor_on_one_cpu_reports_the_across_floor_as_not_measurable():
    record = loopback_floor("--duration", 0.4, cpus="0")
    assert record["across_cpus_per_s"] is None and record["across_cpus_total"] is None
    assert record["across_cpus_not_measurable"] == "this process may use one CPU only (0)"
    assert record["ran_on"] == {"same": {"echo": 0, "client": 0}, "across": None}
    # perf2's layout is the same CPU there: the old fields are its floor and its ceiling
    assert record["perf2_layout"] == "same CPU" and record["rate_per_s"] == record["same_cpu_per_s"]
    assert record["perf2_total"] > 100
    given = loopback_floor("--duration", 0.4, "--across", "0,0", cpus="0")
    assert given["across_cpus_not_measurable"] == "--across gives the echo and the client the same CPU (0)"


@pytest.mark.parametrize("args, text", [
    (["--same-cpu", "x"], "--same-cpu: 'x' is not a CPU number"),
    (["--same-cpu", "4096"], "--same-cpu: CPU 4096 is not one this process may use"),
    (["--across", "1"], "--across '1': expected ECHO_CPU,CLIENT_CPU, e.g. 0,1"),
    (["--across", "0,1,2"], "expected ECHO_CPU,CLIENT_CPU"),
    (["--across", "0,-1"], "--across: '-1' is not a CPU number"),
])
def test_loopback_floor_refuses_a_cpu_it_cannot_use_in_one_line(args, text):
    assert_one_line_error(run_client("loopback_floor", *args, "--duration", 0.1), 2, text)


@pytest.mark.parametrize("duration", ["0", "61", "x"])
def test_loopback_floor_bounds_its_duration(duration):
    result = run_client("loopback_floor", "--duration", duration)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("python -m clients.loopback_floor: error: argument "
                                                             "--duration")


PARALLELISM_ATTEMPTS = 8
FULL_CPU_SHARE = 0.9  # its phases then differ by at most 10% in the CPU they got: the ratio stays within x1.8-x2.2
SAME_CPU_SPEED = 1.1  # ... and its CPU seconds do the same work per call in both phases, within 10%


def cpu_parallelism(*cpus):
    """clients.cpu_parallelism's record, run on those CPUs only."""
    proc = subprocess.run(["taskset", "-c", ",".join(map(str, cpus)), sys.executable, "-m", "clients.cpu_parallelism",
                           "--n", "20", "--duration", "0.3", "--json"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_cpu_parallelism_sees_two_processes_share_one_cpu():
    # Two processes on one CPU each get half of it: about x2, never near x1. Another job that takes part
    # of CPU 0 in one phase and not the other moves the ratio (a CI run saw x1.57): the record's CPU
    # shares show it. One that slows CPU 0 while its time is still charged to the test's processes (the
    # other vCPU of a busy machine, a host taking the vCPU: a CI run saw x3.05 with full shares) shows as
    # more CPU seconds per call in one phase. Either measurement is made again.
    # Here even a quiet machine gave x0.78 to x1.23 per call between 0.3 s phases, and x1.55 with x0.78.
    # After PARALLELISM_ATTEMPTS starved ones, the least starved is judged.
    records = []
    for _ in range(PARALLELISM_ATTEMPTS):
        record = cpu_parallelism(0)
        speed = record["two_cpu_per_call_s"] / record["one_cpu_per_call_s"]
        starved = max(FULL_CPU_SHARE - min(record["one_cpu_share"], record["two_cpu_share"]), 0,
                      abs(math.log(speed)) - math.log(SAME_CPU_SPEED))
        records.append((starved, record))
        if not starved:
            break
        print(f"cpu_parallelism starved (CPU shares {record['one_cpu_share']:.2f}, {record['two_cpu_share']:.2f}; "
              f"CPU seconds per call x{speed:.2f} in the second phase): measured again")
    record = min(records, key=lambda pair: pair[0])[1]
    assert record["cpus"] == [0] and record["one_s"] > 0
    assert 1.6 < record["ratio"] < 2.6, record
    assert abs(record["ratio"] - record["two_s"] / record["one_s"]) < 1e-9


# ---------------------------------------------------------------- python -m clients NAME SERVICE (compose's clients service)


def test_python_m_clients_runs_a_client_against_the_named_host(fib_server):
    result = run_client(None, "request", fib_server.host, 20, "--port", fib_server.port)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "6765"


@pytest.mark.parametrize("args", [[], ["nope", "x"], ["gil_stall", "x"], ["perf2"], ["perf2", "--duration", 1],
                                  ["request", "localhost", "20", "--bogus"], ["perf2", "localhost", "--duration", -1]])
def test_python_m_clients_refuses_bad_arguments_in_one_line(args):
    assert_one_line_error(run_client(None, *args), 2, "error:")


def test_python_m_clients_offers_exactly_the_clients_that_take_a_host():
    from clients.__main__ import NETWORK_CLIENTS

    shared = ("common", "procfs", "__main__")  # what the tools share, and the entry point: not tools
    tools = [info.name for info in pkgutil.iter_modules(clients.__path__) if info.name not in shared]
    assert sorted(NETWORK_CLIENTS) == sorted(tool for tool in tools if "--host" in run_client(tool, "--help").stdout)
    assert "perf2" in run_client(None, "--help").stdout
