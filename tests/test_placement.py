"""server.placement on real servers: where their threads and workers run; and lab.cpu.layout's check that a
perf2 layout held, on real servers beside a real busy loop (the runner's convoy.measure, driven here
with local processes instead of containers)."""
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from clients import thread_cpus
from clients.common import pinned_to
from conftest import REPO
from lab.cells import Background, Cell
from lab.experiments import convoy
from server import placement

TWO_CPUS = len(os.sched_getaffinity(0)) >= 2
needs_two = pytest.mark.skipif(not TWO_CPUS, reason="needs 2 CPUs")


def threads(pid):
    """{tid: (name, allowed CPUs)} of a process's threads, from /proc."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            found[int(tid)] = (name, os.sched_getaffinity(int(tid)))
        except (FileNotFoundError, ProcessLookupError):
            pass
    return found


def children(pid):
    return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def connect_and_ask(server):
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"1\n")
    assert sock.recv(100) == b"1\n"
    return sock


def answering(pid, expected, timeout_s=5):
    """The allowed CPUs of the threads named 'answer', once `expected` of them are there."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = sorted(min(cpus) for name, cpus in threads(pid).values() if name == placement.ANSWER)
        if len(found) == expected or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_the_names_the_server_gives_are_the_ones_the_sampler_reads():
    assert (placement.ANSWER, placement.WORKER) == (thread_cpus.ANSWER, thread_cpus.WORKER)


@pytest.mark.parametrize("cpus, workers", [({0}, {0}), ({0, 1}, {0, 1}), ({0, 1, 2}, {1, 2}), ({4, 5, 6, 7}, {5, 6, 7})])
def test_pool_workers_leave_the_answering_cpu_only_when_two_remain(cpus, workers):
    assert placement.worker_cpus(placement.FIXED, cpus) == workers
    assert placement.worker_cpus(placement.FREE, cpus) == cpus


@needs_two
def test_fixed_answers_the_first_client_on_the_first_cpu_and_a_second_at_once_on_the_next(start_server):
    server = start_server("threaded", preexec_fn=pinned_to({0, 1}))
    main = threads(server.proc.pid)[server.proc.pid]
    assert main[1] == {0}, "the main thread (the accept loop) runs on the server's first CPU"
    first = connect_and_ask(server)
    assert answering(server.proc.pid, 1) == [0]
    second = connect_and_ask(server)
    assert answering(server.proc.pid, 2) == [0, 1]
    first.close()
    third = connect_and_ask(server)  # the first CPU serves no one again: the next client is answered there
    assert answering(server.proc.pid, 2) == [0, 1]
    second.close(), third.close()
    assert "placement fixed: main thread on CPU 0" in server.stderr()


@needs_two
def test_free_leaves_every_thread_on_every_cpu(start_server):
    server = start_server("threaded", "--placement", "free", preexec_fn=pinned_to({0, 1}))
    sock = connect_and_ask(server)  # answered: its thread is there
    found = threads(server.proc.pid)
    assert sorted(name for name, _ in found.values()) == [placement.ANSWER, "python"]
    assert {frozenset(cpus) for _, cpus in found.values()} == {frozenset({0, 1})}
    sock.close()


@needs_two
@pytest.mark.parametrize("strategy", ["process-pool", "prefork"])
def test_pool_workers_and_children_compute_on_all_of_two_cpus(start_server, strategy):
    server = start_server(strategy, preexec_fn=pinned_to({0, 1}))
    sock = connect_and_ask(server)  # the pool is warm and the children forked once a request is answered
    expected = [[0], [1]] if strategy == "prefork" else [[0, 1], [0, 1]]  # pool workers may use both CPUs (C7)
    deadline = time.monotonic() + 5  # a child pins itself just after its fork
    while True:
        workers = [pid for pid in _descendants(server.proc.pid) if strategy == "prefork" or
                   threads(pid).get(pid, ("",))[0] == placement.WORKER]
        allowed = sorted(sorted(threads(pid)[pid][1]) for pid in workers)
        if allowed == expected or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert allowed == expected
    sock.close()


def _descendants(pid):
    found, todo = [], [pid]
    while todo:
        for child in children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


class LocalServer:
    def __init__(self, server):
        self.server, self.host, self.port = server, server.host, server.port

    def run_client(self, module, *args, timeout):
        return run_client(module, *args, "--pid", self.server.proc.pid, timeout=timeout, cpus={0, 1})


def run_client(module, *args, timeout, cpus):
    proc = subprocess.run([sys.executable, "-m", f"clients.{module}", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, preexec_fn=pinned_to(cpus))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


class LocalContext:
    """convoy.measure's context with local processes: the server on CPUs 0-1, the clients on CPU 1 (the
    runner's default layout), and a busy loop on CPU 0 while the first attempt's long request runs."""

    settings = {"server_cpus": "0", "pool_cpus": "0-1", "load_cpus": "1"}

    def __init__(self, start_server, *server_args):
        self.start_server, self.server_args = start_server, server_args
        self.long_requests = 0

    @contextmanager
    def server(self, cell, *args):
        yield LocalServer(self.start_server(cell.strategy, *self.server_args, *args, preexec_fn=pinned_to({0, 1})))

    def client(self, cell, name, module, *args, timeout, on=None):
        if on is not None:
            return on.run_client(module, *args, "--json", timeout=timeout)
        if module != "request":
            return run_client(module, *args, "--json", timeout=timeout, cpus={1})
        self.long_requests += 1
        with busy_loop(0) if self.long_requests == 1 else nullcontext():
            return run_client(module, *args, "--json", timeout=timeout, cpus={1})

    def in_background(self, fn, *args, **kwargs):
        return Background(fn, *args, **kwargs)


@contextmanager
def nullcontext():
    yield


@contextmanager
def busy_loop(cpu, most_s=30):
    """Another job on `cpu` while the block runs, at most most_s seconds."""
    proc = subprocess.Popen([sys.executable, "-c", f"import time\nend = time.monotonic() + {most_s}\n"
                             "while time.monotonic() < end: pass"], preexec_fn=pinned_to({cpu}))
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


@needs_two
@pytest.mark.parametrize("strategy, placement_, caught", [
    ("threaded", placement.FIXED, ("another job's share of CPU 0 changed",)),
    # free: the answering thread moves off CPU 0, or stays and CPU 0 changes hands: either is caught
    ("threshold-pool", placement.FREE, ("the answering thread", "another job's share of CPU 0 changed")),
])
def test_a_busy_loop_started_beside_the_server_is_caught_and_the_cell_measured_again(start_server, strategy,
                                                                                     placement_, caught, record_property):
    ctx = LocalContext(start_server, "--placement", placement_, "--quiet")
    cell = Cell(experiment="convoy", strategy=strategy, params=dict(convoy.SIZES["quick"], long_n=34))
    m = convoy.measure(ctx, cell)
    assert m["attempts"] >= 2 and m["earlier_changes"], m
    first = "; ".join(m["earlier_changes"][0])
    assert any(reason in first for reason in caught), first
    assert m["layout"]["text"] == "across CPUs: the server answers on CPU 0, the client asks on CPU 1"
    record_property("summary", f"layout check, {strategy} ({placement_}), busy loop on CPU 0 during the first "
                               f"long request: caught ({first}); measured {m['attempts']} times")
