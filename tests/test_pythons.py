"""The lab on several Pythons: a server image per version, the strategies that need 3.14,
and a free-threaded build whose threads really run in parallel.

The free-threaded build tested here is 3.13t: it is compiled from Debian's python3.13 source
package, which this machine's Debian mirror serves; python3.14's source is not served here, so
3.14t builds only where it is, or from a tarball (scripts/build-python-image --tarball,
tests/test_build_python.py). 3.13g is its twin: the same source and flags, with the GIL. 3.15 is
Debian's binary package on the sid base.
"""
import json
import re
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from conftest import REPO, run, unavailable
from lab.experiments import perf1
from lab.pythons import image, twin
from lab.records.record import verdict_label
from test_runner import lab_run, only_run
from wire import ask, connect, read_lines

pytestmark = pytest.mark.docker
GIL_BUILD, FREE_THREADED, NEWEST = "3.13", "3.13t", "3.14"
TWIN, PACKAGED = twin(FREE_THREADED), "3.15"
# A cold build: the sid base (debootstrap, ~30 s), then CPython compiled twice (~2.5 min each on 2 cores).
BUILD_TIMEOUT_S = 1800


@pytest.fixture(scope="module")
def python_images(docker_engine):
    proc = run([str(REPO / "scripts" / "build-python-image"), GIL_BUILD, FREE_THREADED, NEWEST, TWIN, PACKAGED],
               BUILD_TIMEOUT_S)
    if proc.returncode != 0:
        message = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "registry" in proc.stderr or "root" in proc.stderr:
            unavailable(f"the per-Python images cannot be built here: {message}")
        pytest.fail(f"scripts/build-python-image failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
                    pytrace=False)
    return proc


def docker_run(*args, timeout=120):
    return run(["docker", "run", "--rm", "--network", "none", *args], timeout)


def build_of(python):
    proc = docker_run(image(python), "python", "-m", "server.build", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_each_image_runs_the_python_it_is_named_for(python_images):
    builds = {python: build_of(python) for python in (GIL_BUILD, FREE_THREADED, NEWEST)}
    assert builds[GIL_BUILD]["version"].startswith("3.13.") and builds[GIL_BUILD]["gil_enabled"]
    assert builds[NEWEST]["version"].startswith("3.14.") and not builds[NEWEST]["free_threaded"]
    assert builds[FREE_THREADED] == {**builds[FREE_THREADED], "free_threaded": True, "gil_enabled": False}
    assert builds[FREE_THREADED]["version"] == builds[GIL_BUILD]["version"], "the same version, two builds"
    builds.update({python: build_of(python) for python in (TWIN, PACKAGED)})
    assert builds[TWIN] == {**builds[GIL_BUILD], "free_threaded": False, "gil_enabled": True}, "the twin has the GIL"
    assert builds[PACKAGED]["version"].startswith("3.15.") and builds[PACKAGED]["gil_enabled"]


def test_the_twin_is_compiled_with_the_free_threaded_builds_flags_but_the_gil(python_images):
    """3.13g / 3.13t measures free-threading alone only if nothing else differs: the same configure flags."""
    flags = {python: docker_run(image(python), "python", "-c", "import sysconfig; "
                                "print(sysconfig.get_config_var('CONFIG_ARGS'))").stdout.split()
             for python in (FREE_THREADED, TWIN)}
    assert "'--disable-gil'" in flags[FREE_THREADED] and "'--disable-gil'" not in flags[TWIN], flags
    assert [flag for flag in flags[FREE_THREADED] if flag != "'--disable-gil'"] == flags[TWIN], flags


@pytest.fixture
def server_in(python_images):
    """Start `python -m server --strategy S` in a Python's image, published on a free loopback port."""
    started = []

    def start(python, strategy, *args):
        name = f"labtest-py-{python.replace('.', '')}-{strategy}-{time.monotonic_ns()}"
        proc = run(["docker", "run", "-d", "--name", name, "-p", "127.0.0.1::25000", image(python), "python", "-m",
                    "server", "--strategy", strategy, "--host", "0.0.0.0", "--port", "25000", *args], 60, check=True)
        started.append(name)
        port = int(run(["docker", "port", name, "25000/tcp"], 30, check=True).stdout.split(":")[-1])
        deadline = time.monotonic() + 60
        while "listening on" not in run(["docker", "logs", name], 30).stdout:
            assert time.monotonic() < deadline, run(["docker", "logs", name], 30).stderr
            time.sleep(0.2)
        return SimpleNamespace(name=name, address=("127.0.0.1", port), container_id=proc.stdout.strip())

    yield start
    for name in started:
        run(["docker", "rm", "-f", name], 60)


@pytest.mark.parametrize("strategy", ["subinterpreters", "asyncio-pool"])
def test_the_new_strategies_answer_the_protocol_on_3_14(server_in, strategy):
    server = server_in(NEWEST, strategy, "--workers", "2")
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"
        assert ask(sock, b"30\n") == b"832040\n"  # above the threshold: computed in the pool
        assert ask(sock, b"1\n2\n20\n", replies=3) == b"1\n1\n6765\n"  # pipelined, in order
        assert ask(sock, b"nope\n").startswith(b"ERR")
        assert ask(sock, b"3\n") == b"2\n", "an ERR reply keeps the connection"
    # a bare number, as the article's perf clients send it
    with connect(server) as sock:
        assert ask(sock, b"12") == b"144\n"


def test_subinterpreters_compute_a_long_request_beside_short_ones(server_in):
    server = server_in(NEWEST, "subinterpreters", "--workers", "2")
    with connect(server) as long_client, connect(server) as short_client:
        long_sent = time.monotonic()
        long_client.sendall(b"36\n")  # about a second
        time.sleep(0.2)
        started = time.monotonic()
        assert ask(short_client, b"5\n") == b"5\n"
        short_s = time.monotonic() - started
        assert read_lines(long_client, 1) == b"14930352\n"
        long_s = time.monotonic() - long_sent
    assert short_s < long_s / 3, f"the short request waited {short_s:.2f} s beside a {long_s:.2f} s one"


def test_subinterpreters_refuses_before_3_14_with_a_clear_message(python_images):
    proc = docker_run(image(GIL_BUILD), "python", "-m", "server", "--strategy", "subinterpreters")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "3.14" in proc.stderr and "subinterpreters" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "listening" not in proc.stdout


def test_the_server_says_which_build_it_runs_on(server_in):
    server = server_in(FREE_THREADED, "threaded")
    with connect(server) as sock:
        assert ask(sock, b"10\n") == b"55\n"
    assert "free-threaded, GIL disabled" in run(["docker", "logs", server.name], 30).stderr


def test_free_threaded_perf1_does_not_double_where_the_gil_build_does(python_images, lab_image, tmp_path):
    """Two perf1 clients against threaded with 2 CPUs: near x1 on the free-threaded build, and
    clearly below the GIL build's ratio in the same run."""
    if int(run(["docker", "info", "--format", "{{.NCPU}}"], 30, check=True).stdout) < 2:
        unavailable("the free-threaded perf1 test needs 2 CPUs")
    proc = lab_run("--quick", "--image", lab_image.name, "--python", f"{GIL_BUILD},{FREE_THREADED}",
                      "--experiments", "perf1", "--strategies", "threaded", "--pool-cpus", "0-1",
                      results=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    run_dir, record = only_run(tmp_path)
    pythons = record["environment"]["pythons"]
    assert pythons[FREE_THREADED]["free_threaded"] and not pythons[FREE_THREADED]["gil_enabled"]
    assert not pythons[GIL_BUILD]["free_threaded"]
    cells = {python: record["cells"][f"{python}/perf1/threaded"]["measurements"] for python in (GIL_BUILD, FREE_THREADED)}
    ratio = {python: m["ratio"] for python, m in cells.items()}
    # Judged against what the machine gave two bare processes on the same CPUs in the same cell
    # (parallel_ratio: 1 on two free CPUs, more while another job holds one): near parallel, and well
    # below the GIL build's doubling. On two free CPUs these are the bounds 1.4 and GIL - 0.4.
    verdicts = {verdict_label(row): row for row in record["claims"]}
    if any(perf1.starved(m) for m in cells.values()):
        # Another job held the CPUs in every attempt: no build's parallelism can be judged, and the lab says so.
        starved = [python for python, m in cells.items() if perf1.starved(m)]
        for python in starved:
            row = verdicts[f"C4 on {python}"]
            assert cells[python]["attempts"] == perf1.ATTEMPTS and row["verdict"] == "not run", row
            assert row["measured"] == perf1.unjudged(cells[python]), row
        print(f"starved in every attempt on {starved}: {cells}")
    else:
        parallel = max(1.0, cells[FREE_THREADED]["parallel_ratio"])
        machine = (f"two bare processes on the server's CPUs took x{parallel:.2f} of one's time "
                   f"(in {cells[FREE_THREADED]['attempts']} attempt(s); 1.0 on two free CPUs)")
        assert ratio[FREE_THREADED] < parallel + 0.4 * (2 - parallel), (ratio, machine)
        assert ratio[FREE_THREADED] < ratio[GIL_BUILD] - 0.4 * (2 - parallel), (ratio, machine)
        assert verdicts[f"C4 on {GIL_BUILD}"]["verdict"] == "reproduced", (verdicts[f"C4 on {GIL_BUILD}"], machine)
        assert verdicts[f"C4 on {FREE_THREADED}"]["verdict"] == "not reproduced", (verdicts[f"C4 on {FREE_THREADED}"],
                                                                                   machine)
    report = subprocess.run([sys.executable, "-m", "lab", "report", str(run_dir)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    text = (run_dir / "report.md").read_text()
    assert "Across Pythons and builds" in text and "free-threaded, GIL disabled" in text
    assert (run_dir / "plots" / f"{FREE_THREADED}_perf1.png").stat().st_size > 1000


# Two threads that want the GIL all the time, for at most 60 s (the test removes the container sooner).
SPINNING_THREADS = """
import threading, time
def spin(end=time.monotonic() + 60):
    while time.monotonic() < end:
        sum(i * i for i in range(1000))
for _ in range(2):
    threading.Thread(target=spin).start()
"""
# Two subinterpreters of 3.14's InterpreterPoolExecutor (each with a GIL of its own), each summing in C for
# seconds at a time, for at most 60 s.
SPINNING_INTERPRETERS = """
import functools, time
from concurrent.futures import InterpreterPoolExecutor
work = functools.partial(sum, range(10**8))
with InterpreterPoolExecutor(2) as pool:
    end = time.monotonic() + 60
    while time.monotonic() < end:
        for future in [pool.submit(work) for _ in range(2)]:
            future.result()
"""


def gil_state_beside(python, script):
    """clients.gil_state, in a container of python's image beside one running script (PID 1 of its PID
    namespace, shared), with CAP_SYS_PTRACE alone: its output."""
    name = f"lab-gil-state-{python.replace('.', '-')}-{time.monotonic_ns()}"
    run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", image(python), "python", "-c", script],
        120, check=True)
    try:
        time.sleep(1)  # the threads started
        return run(["docker", "run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "SYS_PTRACE",
                    "--pid", f"container:{name}", image(python), "python", "-m", "clients.gil_state", "1",
                    "--windows", "2", "--window", "1"], 120)
    finally:
        run(["docker", "rm", "-f", name], 60)


def thread_lines(output):
    """{tid: {state: share}} of the last window's thread lines: '  123 python  held 0.50  wait 0.48  other 0.02'."""
    last = output.rsplit("window ", 1)[-1]
    return {int(m[1]): {state: float(share) for state, share in re.findall(r"(held|wait|other|on-CPU) (\S+)", m[2])}
            for m in re.finditer(r"^\s+(\d+) (.*)$", last, re.M)}


@pytest.mark.parametrize("python", [GIL_BUILD, NEWEST, PACKAGED])
def test_the_gil_reader_sees_two_threads_take_turns_on_each_gil_build(python_images, python):
    """clients.gil_state reads each GIL build's interpreter from a side container: two threads that both want
    the GIL each hold it part of the time and wait for it the rest, and it changes hands."""
    proc = gil_state_beside(python, SPINNING_THREADS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Python {python}." in proc.stdout.splitlines()[0], proc.stdout
    handoffs = [int(n) for n in re.findall(r"(\d+) hand-offs/s", proc.stdout)]
    spinning = [t for t in thread_lines(proc.stdout).values() if t["held"] + t["wait"] >= 0.8]
    assert len(spinning) == 2 and all(t["held"] >= 0.2 and t["wait"] >= 0.2 for t in spinning), proc.stdout
    assert handoffs and min(handoffs) > 10, proc.stdout


def test_the_gil_reader_shows_each_threads_cpu_on_the_free_threaded_build(python_images):
    """3.13t with the GIL disabled: no GIL to wait for, one line says so, and each spinning thread's share
    of a CPU shows them run in parallel (the container has both CPUs)."""
    proc = gil_state_beside(FREE_THREADED, SPINNING_THREADS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no GIL: each thread's share on a CPU" in proc.stdout, proc.stdout
    on_cpu = sorted(t["on-CPU"] for t in thread_lines(proc.stdout).values())
    assert len(on_cpu) >= 2 and sum(on_cpu[-2:]) >= 1.3, proc.stdout


def test_the_gil_reader_shows_each_subinterpreters_own_gil(python_images):
    """3.14's InterpreterPoolExecutor: two subinterpreters, each with a GIL of its own, each held by its
    worker thread most of the time, at once; the main interpreter's GIL is free."""
    proc = gil_state_beside(NEWEST, SPINNING_INTERPRETERS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.rsplit("window ", 1)[-1]
    own = re.findall(r"interpreter (\d+)'s own GIL: held by (\d+) ([\d.]+)", last)
    assert len(own) == 2 and len({tid for _, tid, _ in own}) == 2, proc.stdout
    assert all(float(share) >= 0.5 for _, _, share in own), proc.stdout
