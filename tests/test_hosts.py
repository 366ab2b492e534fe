"""The lab's host side on a host without Linux's extras, as macOS (and, for python -m lab, Windows) is: no
Docker, about 30 s. Not macOS itself: this machine is Linux, made to lack what macOS lacks, three ways.

  - Python: a sitecustomize.py on PYTHONPATH deletes os.sched_getaffinity and os.sched_setaffinity, which
    macOS's and Windows's os module never has; the code must then take its fallbacks (server.cpusets).
    With LAB_TEST_HOST=windows it also hides the modules Windows's Python lacks (resource, fcntl, ...),
    for python -m lab, Windows's entry point (the servers and clients run in Linux containers there).
  - /proc: every command runs in a user and mount namespace with an empty tmpfs over /proc (unshare, no
    root needed where unprivileged user namespaces are allowed); macOS and Windows have no /proc.
  - tools: PATH is one directory of links to the tools the commands need, without GNU timeout, flock and
    sha256sum (stock macOS lacks them; scripts/lib/portable.sh falls back), and python3 is .venv's.

Each command must give its results or one clear line, never a traceback: scripts/lab run --help and
--plan, scripts/lab report on a stored run, a server run by hand answering over a real socket, perf1 and
perf2 against it, and a tool that needs Linux saying so (docs/hosts.md).
"""
import contextlib
import hashlib
import re
import shutil
import socket
import subprocess
import sys

import pytest

from conftest import REPO, run, unavailable

SITECUSTOMIZE = '''\
"""tests/test_hosts.py: this interpreter lacks what macOS's and Windows's os module lacks, and with
LAB_TEST_HOST=windows the POSIX-only modules and os.fork too (None in sys.modules: importing one raises
ImportError)."""
import os
import sys

for name in ("sched_getaffinity", "sched_setaffinity"):
    if hasattr(os, name):
        delattr(os, name)
if os.environ.get("LAB_TEST_HOST") == "windows":
    for module in ("resource", "fcntl", "termios", "pwd", "grp"):
        sys.modules[module] = None
    del os.fork
'''
# What scripts/lab and the commands under test run, besides python3 (.venv's): no timeout, flock, sha256sum.
TOOLS = ("bash", "cat", "cut", "dirname", "git", "mkdir", "perl", "rm", "shasum", "sleep", "uname")
GNU_ONLY = ("timeout", "flock", "sha256sum")
STORED_RUN = REPO / "tests" / "data" / "20261128T061650Z-806362"
TIMEOUT_S = 300  # scripts/lab's first use installs requirements/tools.txt into .venv


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """(the unshare command that hides /proc, the environment): what on_host runs a command with."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if not (unshare and mount):
        unavailable("no unshare or mount here: tests/test_hosts.py hides /proc with them")
    wrapper = [unshare, "--user", "--map-root-user", "--mount", "/bin/sh", "-c",
               f'{mount} -t tmpfs none /proc && exec "$@"', "sh"]
    probe = subprocess.run([*wrapper, "/bin/sh", "-c", "test ! -e /proc/self"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable(f"cannot hide /proc in a user namespace here ({probe.stderr.strip() or probe.returncode}); "
                    "tests/test_hosts.py needs unprivileged user namespaces")
    root = tmp_path_factory.mktemp("host")
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    bin_dir = root / "bin"
    bin_dir.mkdir()
    missing = [tool for tool in TOOLS if not shutil.which(tool)]
    if missing:
        unavailable(f"tests/test_hosts.py links these tools, which this machine lacks: {', '.join(missing)}")
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(shutil.which(tool))
    (bin_dir / "python3").symlink_to(sys.executable)
    env = {"HOME": str(root), "PATH": str(bin_dir), "PYTHONPATH": str(root / "site"), "COLUMNS": "200",
           "DOCKER_HOST": f"unix://{root}/no-docker.sock"}  # the plan must not depend on this machine's Docker
    return wrapper, env


def on_host(host, *argv, timeout=TIMEOUT_S, **env):
    wrapper, host_env = host
    return run([*wrapper, *map(str, argv)], timeout, env={**host_env, **env})


def one_clear_line(proc):
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr.strip()


@pytest.mark.parametrize("probe", [
    "import os; print(hasattr(os, 'sched_getaffinity'), hasattr(os, 'sched_setaffinity'))",
    "import os; print(os.path.exists('/proc/self'), os.path.exists('/proc/cpuinfo'))",
    f"import shutil; print(*(shutil.which(tool) is not None for tool in {GNU_ONLY}))",
])
def test_the_host_lacks_what_macos_lacks(host, probe):
    proc = on_host(host, sys.executable, "-c", probe)
    assert set(proc.stdout.split()) == {"False"}, (proc.stdout, proc.stderr)


def test_scripts_lab_run_help_and_plan(host):
    helped = on_host(host, REPO / "scripts" / "lab", "run", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "--plan" in helped.stdout and "--server-cpus" in helped.stdout
    planned = on_host(host, REPO / "scripts" / "lab", "run", "--plan", "--quick")
    assert planned.returncode == 0, planned.stderr
    assert re.search(r"\d+ cells, quick mode", planned.stdout), planned.stdout
    for cell in ("perf1/threaded", "fib/threaded", "idle_connections/asyncio"):
        assert cell in planned.stdout
    assert not (REPO / ".venv.lock.d").exists()  # the mkdir lock of scripts/lib/portable.sh, released


def test_scripts_lab_report_on_a_stored_run(host, tmp_path):
    run_dir = shutil.copytree(STORED_RUN, tmp_path / "run")
    proc = on_host(host, REPO / "scripts" / "lab", "report", run_dir)
    assert proc.returncode == 0, proc.stderr
    report = (run_dir / "report.md").read_text()
    assert "| reproduced |" in report or " reproduced " in report
    assert (run_dir / "report.html").stat().st_size > 10_000


def test_a_run_without_docker_says_so_in_one_line(host, tmp_path):
    proc = on_host(host, REPO / "scripts" / "lab", "run", "--quick", "--results", tmp_path)
    assert proc.returncode == 2
    assert one_clear_line(proc).startswith("lab run: cannot reach the Docker Engine")


@pytest.mark.parametrize("command", [["run", "--plan", "--quick"], ["report", STORED_RUN], ["experiments"],
                                     ["compare", STORED_RUN, STORED_RUN]])
def test_python_m_lab_without_the_posix_modules(host, tmp_path, command):
    """Windows's entry point, python -m lab, on a Python without resource, fcntl, termios, pwd and grp."""
    if command[0] == "report":
        command = ["report", shutil.copytree(STORED_RUN, tmp_path / "run")]
    proc = on_host(host, sys.executable, "-m", "lab", *command, LAB_TEST_HOST="windows")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.strip()


@pytest.mark.parametrize("strategy", ["process-pool", "threshold-pool", "asyncio-pool", "prefork"])
def test_a_strategy_that_forks_says_so_in_one_line_on_windows(host, strategy):
    proc = on_host(host, sys.executable, "-m", "server", "--strategy", strategy, "--port", "0", LAB_TEST_HOST="windows",
                   timeout=60)
    assert proc.returncode == 2
    assert f"--strategy {strategy} needs os.fork, which Windows lacks" in one_clear_line(proc), proc.stderr


def test_threaded_by_hand_and_perf2_on_windows(host):
    """The strategies that do not fork serve on a host without os.fork, and the clients ask them."""
    with threaded_by_hand(host, LAB_TEST_HOST="windows") as (port, _):
        perf2 = on_host(host, sys.executable, "-m", "clients.perf2", "--port", port, "--duration", 1,
                        LAB_TEST_HOST="windows", timeout=60)
    assert perf2.returncode == 0, perf2.stderr
    assert re.search(r"^# \d+ requests in [\d.]+ s", perf2.stdout, re.M), perf2.stdout


@contextlib.contextmanager
def threaded_by_hand(host, **env):
    """A threaded server run by hand, as docs/servers.md shows, with placement fixed: (port, the process)."""
    wrapper, host_env = host
    proc = subprocess.Popen([*wrapper, sys.executable, "-m", "server", "--strategy", "threaded", "--port", "0"],
                            cwd=REPO, env={**host_env, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()  # 'listening on HOST:PORT', or nothing if it failed
    try:
        if not line.startswith("listening on "):
            proc.kill()
            pytest.fail(f"the server did not start: {line}{proc.communicate(timeout=10)[1]}", pytrace=False)
        yield int(line.rsplit(":", 1)[1]), proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def server(host):
    """A threaded server by hand on the simulated macOS host, for the tests below: (port, the process)."""
    with threaded_by_hand(host) as started:
        yield started


def test_a_server_by_hand_answers_and_says_it_cannot_pin(server):
    port, proc = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"10\n")
        assert sock.recv(100) == b"55\n"
    log = [proc.stderr.readline() for _ in range(2)]  # its build, then where its threads run
    assert "placement fixed: pinning to CPUs needs Linux (os.sched_setaffinity)" in log[1], log


def test_perf1_and_perf2_against_it(host, server):
    port, _ = server
    perf1 = on_host(host, sys.executable, "-m", "clients.perf1", "--port", port, "--n", 20, "--count", 20,
                    timeout=60)
    assert perf1.returncode == 0, perf1.stderr
    assert re.search(r"^# 20 requests of fib\(20\), mean [\d.]+ s", perf1.stdout, re.M), perf1.stdout
    perf2 = on_host(host, sys.executable, "-m", "clients.perf2", "--port", port, "--duration", 1, timeout=60)
    assert perf2.returncode == 0, perf2.stderr
    assert re.search(r"^# \d+ requests in [\d.]+ s, \d+ requests/second overall", perf2.stdout, re.M), perf2.stdout


@pytest.mark.parametrize("tool, needs", [
    (["thread_cpus", "--duration", "0.1"], "Linux's /proc"),
    (["loopback_floor", "--duration", "0.3"], "Linux's /proc and CPU pinning (os.sched_setaffinity)"),
    (["cpu_parallelism", "--duration", "0.1"], "os.fork (Linux, macOS)"),  # on the simulated Windows host
])
def test_a_tool_that_needs_linux_says_so(host, tool, needs):
    proc = on_host(host, sys.executable, "-m", f"clients.{tool[0]}", *tool[1:], timeout=60, LAB_TEST_HOST="windows")
    assert proc.returncode == 2
    assert one_clear_line(proc) == (f"{tool[0]}: error: needs {needs}, which this host lacks: run it on Linux, "
                                    "e.g. in the lab's containers")


def test_the_scripts_portable_tools_fall_back(host):
    """with_timeout's perl fallback keeps GNU timeout's exit statuses, and lab_sha256 sha256sum's hash."""
    script = ('source scripts/lib/portable.sh; with_timeout 1 sleep 5; echo "$?"; '
              'with_timeout 5 bash -c "exit 3"; echo "$?"; echo lab | lab_sha256')
    proc = on_host(host, shutil.which("bash"), "-c", script, timeout=60)
    assert proc.stdout.split() == ["124", "3", hashlib.sha256(b"lab\n").hexdigest()], proc.stderr
