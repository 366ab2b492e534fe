"""Open files: Docker Engine >= 25 with containerd 2 starts every container with a soft
RLIMIT_NOFILE of 1024, and a server then served only about 1,020 of 2,000 held connections. Every lab
process that holds connections raises its own soft limit to the hard one (server/limits.py): the
server, the clients and the Locust users, each tried here started with a low soft limit.

The Docker tests run the lab image under `docker run --ulimit nofile=1024:20000` on a network of its
own with no way out (--internal), every command with a time limit, and remove their containers.
"""
import json
import resource
import subprocess
import sys
import time
import uuid

import pytest

from conftest import REPO, run
from server import limits
from test_locust import RUN_MARGIN_S, aggregated_stats, locust_command, tcp
from test_server import _processes
from wire import ask, connect

LOW_SOFT = 256  # far below what the tests hold: only a raised limit serves them all
# Above what a server checks for (limits.MOST_CONNECTIONS), unless this process's own hard limit is lower.
HARD = min(12000, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
CONNECTIONS = 1000
CHILD_TIMEOUT_S = 60
# In Docker: the limits Docker Engine >= 25 with containerd 2 gives a container (soft 1024), and a room's connections.
DOCKER_ULIMIT = "nofile=1024:20000"
DOCKER_CONNECTIONS = 2000
DOCKER_HOLD_TIMEOUT_S = 60  # hold_connections' --timeout: to connect, and for all the replies


def limited(soft, hard):
    """A preexec_fn: the child starts with these limits on open files (never above this process's hard one,
    which it cannot raise)."""
    hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    def set_limits():
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    return set_limits


def python(*args, preexec_fn):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT_S, preexec_fn=preexec_fn)


def raise_in_child(needed, hard):
    """(what raise_open_files(needed) returned, the limits after it) in a child started with a soft limit of
    LOW_SOFT and this hard one."""
    proc = python("-c", "import json, resource, sys; from server import limits; "
                  "print(json.dumps([limits.raise_open_files(int(sys.argv[1])), "
                  "resource.getrlimit(resource.RLIMIT_NOFILE)]))", str(needed),
                  preexec_fn=limited(LOW_SOFT, hard))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.fast
def test_the_helper_raises_the_soft_limit_to_the_hard_one():
    assert raise_in_child(CONNECTIONS, HARD) == [None, [HARD, HARD]]


@pytest.mark.fast
def test_a_hard_limit_below_what_is_needed_is_one_line_and_the_soft_limit_still_goes_up():
    needed = HARD + 1
    message, after = raise_in_child(needed, HARD)
    assert after == [HARD, HARD]
    assert "\n" not in message, message
    assert message.startswith(f"{needed:,} open files needed, but this process may open only {HARD:,} "), message
    assert f"docker run --ulimit nofile={needed}:{needed}" in message, message


@pytest.mark.fast
def test_hold_connections_says_so_in_one_line_before_it_connects_if_the_hard_limit_is_too_low():
    proc = python("-m", "clients.hold_connections", "--port", "1", "--connections", str(CONNECTIONS),
                  preexec_fn=limited(LOW_SOFT, 512))
    needed = CONNECTIONS + limits.SPARE
    assert proc.returncode == 2, proc.stderr  # not 3: it never tried port 1
    assert proc.stderr.startswith(f"hold_connections: error: {needed:,} open files needed, but this process "
                                  "may open only 512 "), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr


def hold(port, connections, preexec_fn=None):
    """clients.hold_connections against 127.0.0.1:PORT, started with these limits; its JSON record."""
    proc = python("-m", "clients.hold_connections", "--port", str(port), "--connections", str(connections),
                  "--hold", "0.1", "--timeout", "30", "--json", preexec_fn=preexec_fn)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("strategy", ["threaded", "asyncio", "threshold-pool"])
def test_a_server_and_a_client_started_with_a_soft_limit_of_256_hold_1000_connections(start_server, strategy):
    server = start_server(strategy, "--quiet", preexec_fn=limited(LOW_SOFT, HARD))
    assert resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE) == (HARD, HARD)
    held = hold(server.port, CONNECTIONS, preexec_fn=limited(LOW_SOFT, HARD))
    assert held["served"] == CONNECTIONS, server.stderr()[-2000:]
    assert "accept failed" not in server.stderr()


@pytest.mark.parametrize("strategy", ["prefork", "process-pool"])
def test_forked_children_and_pool_workers_inherit_the_raised_limit(start_server, strategy):
    server = start_server(strategy, "--quiet", "--workers", "2", preexec_fn=limited(LOW_SOFT, HARD))
    with connect(server) as sock:
        assert ask(sock, b"20\n") == b"6765\n"  # the pool has started; prefork's first child, at least
    deadline = time.monotonic() + 10
    while len(group := [pid for pid, _, pgid in _processes() if pgid == server.proc.pid]) < 3:
        assert time.monotonic() < deadline, group  # the server and at least its two children or workers
        time.sleep(0.05)
    for pid in group:
        assert resource.prlimit(pid, resource.RLIMIT_NOFILE) == (HARD, HARD), pid


def test_a_server_whose_hard_limit_is_too_low_says_so_in_one_line_and_serves(start_server):
    server = start_server("threaded", "--quiet", preexec_fn=limited(LOW_SOFT, 512))
    with connect(server) as sock:
        assert ask(sock, b"20\n") == b"6765\n"
    warnings = server.stderr().splitlines()[1:]  # after the build's line
    needed = limits.MOST_CONNECTIONS + limits.SPARE
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"server[{server.proc.pid}]: {needed:,} open files needed, but this process "
                                  "may open only 512 "), warnings


def test_locust_users_started_with_a_soft_limit_of_256_all_connect(start_server, tmp_path):
    """Locust raises its own soft limit to 10,000 only if the hard limit allows it: here (4,096) it does
    not, and 300 users, each with its connection, need more than 256 files."""
    server = start_server("threaded", "--quiet")
    prefix, users, seconds = tmp_path / "perf2", 300, 3
    proc = subprocess.run(locust_command("perf2", "--headless", "-u", str(users), "-r", str(users), "-t",
                                         f"{seconds}s", "--host", tcp(server), "--csv", str(prefix),
                                         "--only-summary"),
                          cwd=REPO, capture_output=True, text=True, timeout=seconds + RUN_MARGIN_S,
                          preexec_fn=limited(LOW_SOFT, 4096))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = aggregated_stats(prefix)
    assert int(stats["Failure Count"]) == 0, proc.stderr[-3000:]
    assert int(stats["Request Count"]) >= users


# ---------------------------------------------------------------- in Docker


@pytest.fixture
def docker_network(lab_image):
    """An --internal network, and start(alias, *command): a lab container on it under DOCKER_ULIMIT, in
    the background; everything removed at the end."""
    name = f"labtest-files-{uuid.uuid4().hex[:8]}"
    run(["docker", "network", "create", "--internal", name], 60, check=True)
    containers = []

    def start(alias, *command):
        container = f"{name}-{alias}"
        containers.append(container)
        run(["docker", "run", "-d", "--name", container, "--network", name, "--network-alias", alias,
             "--ulimit", DOCKER_ULIMIT, lab_image.name, *command], 120, check=True)
        return container

    start.name, start.image = name, lab_image.name
    yield start
    if containers:
        run(["docker", "rm", "-f", *containers], 120)
    run(["docker", "network", "rm", name], 60)


def healthy(container, timeout_s=60):
    """The server's own health check (fib(10) over a real connection), tried for up to timeout_s."""
    deadline = time.monotonic() + timeout_s
    while run(["docker", "exec", container, "python", "-m", "server.healthcheck"], 60).returncode != 0:
        if time.monotonic() > deadline:
            return False
        time.sleep(1)
    return True


@pytest.mark.docker
@pytest.mark.parametrize("strategy", ["threaded", "asyncio"])
def test_in_a_container_with_a_soft_limit_of_1024_2000_held_connections_are_all_served(docker_network,
                                                                                       strategy):
    server = docker_network("server", "python", "-m", "server", "--strategy", strategy, "--host", "0.0.0.0",
                            "--quiet")
    assert healthy(server), run(["docker", "logs", server], 30).stderr
    # python -m server is the container's first process; it raised its own soft limit
    inside = run(["docker", "exec", server, "python", "-c", "import resource; "
                  "print(*resource.prlimit(1, resource.RLIMIT_NOFILE))"], 60, check=True).stdout.split()
    assert inside == ["20000", "20000"], inside
    # the client, in a container with the same limits, holds them all and asks fib(1) on every one
    out = run(["docker", "run", "--rm", "--network", docker_network.name, "--ulimit", DOCKER_ULIMIT,
               docker_network.image, "python", "-m", "clients", "hold_connections", "server", "--connections",
               str(DOCKER_CONNECTIONS), "--hold", "0.5", "--timeout", str(DOCKER_HOLD_TIMEOUT_S), "--json"],
              3 * DOCKER_HOLD_TIMEOUT_S, check=True).stdout
    held = json.loads(out.splitlines()[-1])
    print(f"{strategy}: served {held['served']:,} of {held['connections']:,} held connections")
    logs = run(["docker", "logs", server], 30).stderr
    assert held["served"] == held["connections"] == DOCKER_CONNECTIONS, logs[-2000:]
    assert "accept failed" not in logs and "open files needed" not in logs, logs[-2000:]
