"""Every strategy, over real sockets on loopback: the protocol, the errors, C1, C2, C10, shutdown."""
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import sysconfig
import time

import pytest

from clients.common import pinned_to
from conftest import REPO
from server import pool, strategies
from wire import ask, connect, no_reply_within, read_lines, reset

# Every strategy (server.strategies) that this Python can run; one that needs a newer Python (NEEDS)
# is tested for its refusal to start.
ALL = strategies.runnable()
NEEDS_NEWER = [name for name in strategies.ALL if name not in ALL]
# Strategies that serve any number of clients at once (sequential one, prefork --workers of them: C1, C10).
CONCURRENT = [name for name in ALL if strategies.at_once(name, workers=2) is None]
# Of those, the ones on one CPU compute a long fib inline, in the one thread that serves everyone (C13).
INLINE = [name for name in CONCURRENT if not strategies.load(name).MULTICORE]
# The ones with --workers keep short requests moving during a long one: its fib runs in their pool.
POOLS = [name for name in CONCURRENT if "workers" in strategies.load(name).USES]
# Of those, the pools of processes (server.pool.process_pool), whose workers a test can kill.
PROCESS_POOLS = [name for name in POOLS if vars(strategies.load(name)).get("process_pool") is pool.process_pool]
THIS_BUILD = {"version": platform.python_version(), "implementation": sys.implementation.name,
              "switch_interval_s": sys.getswitchinterval(),
              "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
              "gil_enabled": getattr(sys, "_is_gil_enabled", lambda: True)()}
BUILD_LINE = (f"python {THIS_BUILD['version']} (GIL)" if not THIS_BUILD["free_threaded"] else
              f"python {THIS_BUILD['version']} (free-threaded, GIL "
              f"{'enabled' if THIS_BUILD['gil_enabled'] else 'disabled'})")
FIB = {1: b"1\n", 2: b"1\n", 3: b"2\n", 10: b"55\n", 20: b"6765\n", 25: b"75025\n"}


@pytest.mark.parametrize("strategy", ALL)
def test_article_perf_client_style(start_server, strategy):
    """perf1/perf2: a bare number, one send, one recv(100) per reply, many on one connection."""
    server = start_server(strategy, "--quiet")
    with connect(server) as sock:
        for n in (20, 1, 10, 25, 0):
            sock.send(str(n).encode())
            assert sock.recv(100) == (FIB.get(n) or b"0\n")


@pytest.mark.parametrize("strategy", ALL)
def test_nc_and_telnet_lines(start_server, strategy):
    server = start_server(strategy)
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"
        assert ask(sock, b"20\r\n") == b"6765\n"
        assert ask(sock, b" 3 \n") == b"2\n"


@pytest.mark.parametrize("strategy", ALL)
def test_pipelined_lines_get_one_reply_each_in_order(start_server, strategy):
    server = start_server(strategy)
    with connect(server) as sock:
        assert ask(sock, b"1\n20\n3\n10\n", replies=4) == b"1\n6765\n2\n55\n"
        # Once a client has used newlines, a line split over two sends waits for its end.
        sock.sendall(b"2\n2")
        assert read_lines(sock, 1) == b"1\n"
        assert ask(sock, b"0\n") == b"6765\n"


@pytest.mark.parametrize("strategy", ALL)
def test_echo_returns_exactly_the_bytes(start_server, strategy):
    server = start_server(strategy, "--handler", "echo")
    payload = bytes(range(256)) * 40  # every byte value, no framing, larger than one recv
    with connect(server) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            got += sock.recv(65536)
        assert got == payload
        sock.send(b"hello")
        assert sock.recv(100) == b"hello"


BAD_LINES = [
    (b"abc\n", b"ERR not an integer\n"),
    (b"3.5\n", b"ERR not an integer\n"),
    (b"-1\n", b"ERR n must not be negative\n"),
    (b"41\n", b"ERR n=41 is above the limit 40\n"),
    (b"\n", b"ERR empty request\n"),
]


@pytest.mark.parametrize("strategy", ALL)
def test_bad_requests_get_err_and_the_connection_stays_open(start_server, strategy):
    server = start_server(strategy)
    with connect(server) as sock:
        sock.send(b"spam")  # a bare-number client that sends garbage
        assert sock.recv(100) == b"ERR not an integer\n"
        sock.send(b"10")
        assert sock.recv(100) == b"55\n"
        for request, reply in BAD_LINES:
            assert ask(sock, request) == reply
            assert ask(sock, b"10\n") == b"55\n"


@pytest.mark.parametrize("strategy", ALL)
def test_max_n_is_settable(start_server, strategy):
    server = start_server(strategy, "--max-n", "5")
    with connect(server) as sock:
        assert ask(sock, b"6\n") == b"ERR n=6 is above the limit 5\n"
        assert ask(sock, b"5\n") == b"5\n"


@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("request_bytes", [b"1" * 65, b"1\n" + b"7" * 65], ids=["bare", "after-a-line"])
def test_overlong_request_gets_err_and_close_and_others_are_served(start_server, strategy, request_bytes):
    server = start_server(strategy)
    with connect(server) as sock:
        sock.sendall(request_bytes)
        data = b""
        while chunk := sock.recv(4096):  # read until the server closes
            data += chunk
        assert data.endswith(b"ERR request longer than 64 bytes\n")
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"


@pytest.mark.parametrize("strategy", ALL)
def test_a_reset_during_a_computation_is_cleaned_up_quietly(start_server, strategy):
    server = start_server(strategy)
    sock = connect(server)
    sock.send(b"30")
    time.sleep(0.02)  # the request is being computed now
    reset(sock)
    time.sleep(0.3)
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"
    assert server.proc.poll() is None
    # (the fixture asserts that stderr holds no traceback)


def test_c1_sequential_makes_a_second_client_wait_until_the_first_closes(start_server):
    server = start_server("sequential")
    first, second = connect(server), connect(server)
    assert ask(first, b"10\n") == b"55\n"
    second.sendall(b"10\n")
    assert no_reply_within(second, 0.5)
    first.close()
    assert read_lines(second, 1) == b"55\n"
    second.close()


@pytest.mark.parametrize("strategy", CONCURRENT)
def test_c2_many_clients_are_served_at_once(start_server, strategy):
    server = start_server(strategy, "--handler", "echo", "--quiet")
    clients = [connect(server) for _ in range(50)]
    try:
        for i, sock in enumerate(clients):  # every client is still connected while all are answered
            sock.sendall(b"client %d" % i)
            assert sock.recv(100) == b"client %d" % i
    finally:
        for sock in clients:
            sock.close()


def test_c10_prefork_serves_exactly_its_workers_at_once(start_server):
    server = start_server("prefork", "--workers", "2")
    first, second, third = connect(server), connect(server), connect(server)
    assert ask(first, b"10\n") == b"55\n"
    assert ask(second, b"10\n") == b"55\n"
    third.sendall(b"10\n")
    assert no_reply_within(third, 0.5)  # both children are busy with a client
    first.close()
    assert read_lines(third, 1) == b"55\n"
    second.close()
    third.close()


def long_request_delays_a_short_one(server, long_n=32):
    """Send fib(long_n) on one connection and fib(1) on another; return short wait / long duration."""
    with connect(server) as long_sock, connect(server) as short_sock:
        assert ask(short_sock, b"1\n") == b"1\n"  # both connections are being served
        started = time.perf_counter()
        long_sock.sendall(b"%d\n" % long_n)
        time.sleep(0.02)
        short_started = time.perf_counter()
        assert ask(short_sock, b"1\n") == b"1\n"
        short_wait = time.perf_counter() - short_started
        read_lines(long_sock, 1)
        return short_wait / (time.perf_counter() - started)


@pytest.mark.parametrize("strategy", INLINE)
def test_c13_a_long_inline_request_blocks_every_other_client(start_server, strategy):
    server = start_server(strategy, "--quiet")
    assert long_request_delays_a_short_one(server) > 0.5


@pytest.mark.parametrize("strategy", POOLS)
def test_pools_keep_short_requests_moving_during_a_long_one(start_server, strategy):
    server = start_server(strategy, "--quiet", "--workers", "2")
    # A pool that let the long request block the short one would delay it every time (C13's inline
    # strategies: > 0.5); a busy machine only now and then. So a slow attempt is measured again.
    delays = []
    for _ in range(3):
        delays.append(long_request_delays_a_short_one(server, long_n=34))  # a longer fib: hiccups weigh less
        if delays[-1] < 0.2:
            break
    assert delays[-1] < 0.2, f"the short request waited {delays} of the long one's time in every attempt"


@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_within_2s_mid_computation_leaves_no_process(start_server, strategy, signum):
    server = start_server(strategy)
    idle, busy = connect(server), connect(server)
    assert ask(idle, b"1\n") == b"1\n"
    busy.sendall(b"40\n")  # many seconds of work (the limit), inline or in a pool worker
    time.sleep(0.3)
    code, seconds = server.stop(signum)
    assert code == 0
    assert seconds < 2.0
    assert not server.leftover_processes(wait_s=2.0)
    idle.close()
    busy.close()


def test_logs_the_build_and_connections_to_stderr_and_quiet_keeps_only_the_build(start_server):
    loud, quiet = start_server("threaded"), start_server("threaded", "--quiet")
    for server in (loud, quiet):
        with connect(server) as sock:
            assert ask(sock, b"1\n") == b"1\n"
    time.sleep(0.2)
    lines = loud.stderr().splitlines()
    assert lines[0] == f"server[{loud.proc.pid}]: {BUILD_LINE}"
    assert sum("connection from 127.0.0.1:" in line for line in lines) == 1
    assert sum("connection closed 127.0.0.1:" in line for line in lines) == 1
    assert quiet.stderr() == f"server[{quiet.proc.pid}]: {BUILD_LINE}\n"  # the build, and nothing else


def test_server_build_json_describes_this_python():
    result = run_module("server.build", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == THIS_BUILD


def test_prefork_defaults_to_the_cpus_it_may_run_on(start_server):
    """Pinned to one CPU, prefork forks one child: CPU pinning is honoured."""
    server = start_server("prefork", preexec_fn=pinned_to({min(os.sched_getaffinity(0))}))
    time.sleep(0.3)
    group = [pid for pid, _, pgid in _processes() if pgid == server.proc.pid]
    assert len(group) == 2  # the parent and one child


def _processes():
    """(pid, parent pid, process group) of every process, from /proc."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            yield int(entry), int(fields[1]), int(fields[2])


@pytest.mark.parametrize("strategy", PROCESS_POOLS)
def test_a_killed_pool_worker_fails_its_request_and_the_pool_recovers(start_server, strategy):
    server = start_server(strategy, "--workers", "2")
    with connect(server) as victim:
        assert ask(victim, b"20\n") == b"6765\n"  # the pool has started (it does so before accepting)
        victim.sendall(b"36\n")  # seconds of work in a pool worker
        time.sleep(0.3)
        forkserver = _children(server.proc.pid)
        workers = [pid for parent in forkserver for pid in _children(parent)]
        assert len(workers) == 2
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:  # the pool, broken by the first kill, ended the other worker first
                pass
        assert read_lines(victim, 1) == b"ERR server error (BrokenProcessPool)\n"
    with connect(server) as sock:
        assert ask(sock, b"20\n") == b"6765\n"
        assert ask(sock, b"25\n") == b"75025\n"
    assert "a pool worker died; starting a new pool" in server.stderr()


def _children(pid):
    return [child for child, parent, _ in _processes() if parent == pid]


def _cap_address_space():
    # Each thread reserves an 8 MiB stack: 1 GiB of address space allows roughly a hundred of them.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_threaded_turns_clients_away_when_no_thread_can_start_and_keeps_serving(start_server):
    server = start_server("threaded", "--quiet", preexec_fn=_cap_address_space)
    clients = []
    try:
        for _ in range(400):
            clients.append(connect(server))
        time.sleep(0.5)
        assert "turned away" in server.stderr()  # the limit was really reached
        turned_away = 0
        for sock in clients:
            sock.sendall(b"1\n")
            try:
                served = read_lines(sock, 1) == b"1\n"
            except ConnectionError:
                served = False
            turned_away += not served
        assert 0 < turned_away < len(clients)
    finally:
        for sock in clients:
            sock.close()
    time.sleep(0.5)  # the served clients' threads end and free their stacks
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"
    assert server.proc.poll() is None


def run_module(*args):
    """python -m ARGS in the repo, run to its end."""
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("args, message", [
    (["--strategy", "nope"], "invalid choice: 'nope'"),
    (["--strategy", "threaded", "--workers", "4"], "--workers does nothing for --strategy threaded"),
    (["--strategy", "process-pool", "--workers", "0"], "must be 1 or more"),
    (["--strategy", "threaded", "--port", "-5"], "must be 0 or more"),
    (["--strategy", "threaded", "--switch-interval", "0"], "must be above 0"),
])
def test_bad_command_lines_get_a_clear_error(args, message):
    result = run_module("server", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_the_lists_of_strategies_above_find_some():
    assert ALL and CONCURRENT and INLINE and POOLS and PROCESS_POOLS


@pytest.mark.parametrize("strategy", NEEDS_NEWER)
def test_a_strategy_this_python_cannot_run_refuses_before_listening(start_server, strategy):
    """One line, exit 2, and no bind: on a port in use it would otherwise fail with 'cannot listen'."""
    server = start_server("threaded")
    result = run_module("server", "--strategy", strategy, "--port", str(server.port))
    assert result.returncode == 2
    assert result.stderr == (f"python -m server: error: --strategy {strategy} needs {strategies.load(strategy).NEEDS}; "
                             f"this is Python {platform.python_version()}\n")
    assert result.stdout == ""


def test_a_port_in_use_is_a_clear_error(start_server):
    server = start_server("threaded")
    result = run_module("server", "--strategy", "threaded", "--port", str(server.port))
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_compose_health_check_asks_fib_10_and_says_why_not_in_one_line(start_server):
    """server.healthcheck, as compose runs it (python -S): healthy only for the right fib(10), over a real
    connection; a closed port, a wrong reply and a bad argument each get one line and a non-zero exit."""
    def check(*args):
        result = subprocess.run([sys.executable, "-S", "-m", "server.healthcheck", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=20)
        assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) <= 1, result.stderr
        return result.returncode, result.stderr.strip()

    assert check(str(start_server("threaded").port)) == (0, "")
    echo = start_server("threaded", "--handler", "echo")
    assert check(str(echo.port)) == (1, f"127.0.0.1:{echo.port} answered fib(10) with b'10\\n', not b'55\\n'")
    echo.stop()
    code, why = check(str(echo.port))
    assert code == 1 and why.startswith(f"127.0.0.1:{echo.port} does not answer fib(10): "), why
    assert check("port") == (1, "usage: python -S -m server.healthcheck [PORT]")
