"""Shutdown under load, the server's contract: within 2 s of SIGTERM or SIGINT (to the server alone, or
a terminal's Ctrl-C to its whole process group, once or twice), in every strategy, the server exits with
code 0 and leaves no process of its group behind (pool workers, forkserver, prefork children), while all
of this happens at once:

- IDLE connections are open and silent, each with its thread or task (in sequential and prefork, which
  accept lazily, they wait in the backlog: shutdown must not wait for them either);
- CHURN connections were just opened and closed, half with a FIN, half with an RST;
- BUSY clients are waiting for fib(40), many seconds of work, inline or in a pool worker, with two more
  fib(40)s pipelined behind it: every worker of a pool, or every prefork child but one, is busy, and
  when shutdown stops the workers, the next request must not start a new pool;
- a flood is in flight: one client pipelines "1\\n" requests without reading a reply, so that the server
  blocks on a full send buffer while more requests wait in its receive buffer.

Each test records its time as the "shutdown_s" property; tests/conftest.py prints the worst of them.
"""
import os
import resource
import signal
import subprocess
import time
from contextlib import contextmanager

import pytest

from clients import abuse
from server import limits, strategies
from wire import ask, connect, reset

ALL = strategies.runnable()
LIMIT_S = 2.0
IDLE = 2000
CHURN = 1000
BUSY = 2
WORKERS = BUSY + 1  # pools and prefork: the busy clients take all workers but one, the flood takes that one
# A long fib blocks every other client where one thread serves them all (C1, C13): one busy client is all
# that they can take.
ONE_AT_A_TIME = {name for name in ALL if not strategies.load(name).MULTICORE}
# They accept a client only when a process is free (C1, C10): the others wait in the backlog.
LAZY = {name for name in ALL if strategies.at_once(name, WORKERS)}
# More than loopback's buffers hold (several MB each way) and than a server answers before the signal:
# the flood is still in flight then, whatever the strategy. It stops by itself after FLOOD_S anyway.
FLOOD_REQUESTS = 20_000_000
FLOOD_S = 30
CONNECT_TIMEOUT_S = 5
SETUP_S = 60  # opening the connections, all of them: a bound on every loop of the setup
# How the server is told to stop: (signal, to its whole process group, how many times). A signal to the
# server alone, as kill, systemd or docker stop send it; or a terminal's Ctrl-C, which reaches the whole
# group (pool workers and prefork children too), once or twice: the second one comes during the cleanup,
# which it must not cut short.
HOW = {"SIGTERM": (signal.SIGTERM, False, 1), "SIGINT": (signal.SIGINT, False, 1),
       "ctrl-c": (signal.SIGINT, True, 1), "ctrl-c-twice": (signal.SIGINT, True, 2)}
SECOND_SIGNAL_AFTER_S = 0.01
# This process may hold every connection at once; some to spare.
FILES_NEEDED = IDLE + CHURN + limits.SPARE


@pytest.fixture
def many_files():
    """This process's soft RLIMIT_NOFILE raised for FILES_NEEDED (server.limits), as the server raises its
    own; restored afterwards."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    too_few = limits.raise_open_files(FILES_NEEDED)
    if too_few:
        pytest.fail(too_few, pytrace=False)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def flood(server):
    """A client in a background thread that pipelines "1\\n" requests and never reads a reply, until it
    has sent FLOOD_REQUESTS of them, FLOOD_S have passed, or stop() is called."""
    return abuse.Flood(server.address, b"1\n", FLOOD_REQUESTS, seconds=FLOOD_S)


@contextmanager
def under_load(server, strategy):
    """Put the server under all of the load at once; leave the flood in flight. At the end, whatever
    happened, the flood stops and every connection is closed."""
    socks, floods = [], []
    deadline = time.monotonic() + SETUP_S
    busy = 1 if strategy in ONE_AT_A_TIME else BUSY
    try:
        if strategy in LAZY:
            # They serve the first clients that come: the busy ones and the flood; the rest waits.
            start_busy(server, busy, socks)
            floods.append(flood(server))
            open_connections(server, IDLE, deadline, socks)
        else:
            # Every idle connection has its thread or task before the rest begins: a client that connects
            # after them all is answered. Then a long inline fib blocks no accept() still to come.
            open_connections(server, IDLE, deadline, socks)
            open_connections(server, 1, deadline, socks)
            assert ask(socks[-1], b"1\n") == b"1\n"
            floods.append(flood(server))
            start_busy(server, busy, socks)
        assert len(socks) >= IDLE + busy, f"the setup ran out of time after {len(socks)} connections"
        churn(server, CHURN, deadline)
        assert floods[0].started.wait(timeout=5), "the flood could not send anything"
        assert floods[0].thread.is_alive(), f"the flood ended before the signal, after {floods[0].sent} bytes"
        yield
    finally:
        for running in floods:
            running.stop()
        for sock in socks:
            sock.close()


def start_busy(server, count, socks):
    """`count` clients whose fib(40) is being computed. Each asks fib(1) first, so that it is served now,
    not waiting in the backlog."""
    for _ in range(count):
        socks.append(connect(server, timeout=CONNECT_TIMEOUT_S))
        assert ask(socks[-1], b"1\n") == b"1\n"
        socks[-1].sendall(b"40\n" * 3)


def open_connections(server, count, deadline, socks):
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        socks.append(connect(server, timeout=CONNECT_TIMEOUT_S))


def churn(server, count, deadline):
    """Open and close `count` connections, every other one with an RST."""
    for i in range(count):
        if time.monotonic() > deadline:
            break
        with connect(server, timeout=CONNECT_TIMEOUT_S) as sock:  # a FIN as it ends, unless reset
            if i % 2:
                reset(sock)


def stop(server, how):
    """Tell the server to stop, as `how` says (HOW); return (exit code, seconds from the first signal)."""
    signum, to_group, count = HOW[how]
    if not to_group and count == 1:
        return server.stop(signum, timeout=10)
    started = time.monotonic()
    for i in range(count):
        if i:
            time.sleep(SECOND_SIGNAL_AFTER_S)
        try:
            os.killpg(server.proc.pid, signum)
        except ProcessLookupError:  # all gone already
            pass
    code = server.proc.wait(timeout=10)
    return code, time.monotonic() - started


@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("how", list(HOW))
def test_shutdown_within_2s_under_load_leaves_no_process(start_server, many_files, record_property,
                                                         strategy, how):
    args = ["--workers", str(WORKERS)] if "workers" in strategies.load(strategy).USES else []
    server = start_server(strategy, *args)
    with under_load(server, strategy):
        try:
            code, seconds = stop(server, how)
        except subprocess.TimeoutExpired:
            record_property("shutdown_s", 10.0)
            pytest.fail(f"the server did not exit within 10 s of {how}")
        record_property("shutdown_s", round(seconds, 3))
        assert code == 0, server.stderr()[-3000:]
        assert seconds < LIMIT_S, f"exit took {seconds:.2f} s"
        assert not server.leftover_processes(wait_s=LIMIT_S)
