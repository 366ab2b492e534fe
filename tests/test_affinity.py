"""server.affinity, the lab image's entrypoint: a command runs on LAB_CPUS of the CPUs it may use, on all
of those when none of LAB_CPUS is there (a Docker with one CPU), and untouched without LAB_CPUS or LAB_CPU_ROLE
(a role's CPUs in the lab's layout: tests/test_layouts.py).

The fast tests run it as a process here, on a CPU set narrowed the way a container's is; the docker tests
run the lab image on a one-CPU container (--cpuset-cpus 0), as a Docker with one CPU would start it."""
import json
import os
import subprocess
import sys
import time
import uuid

import pytest

from clients.common import pinned_to
from compose_lab import FORKED_WORKERS
from conftest import LAB_IMAGE as IMAGE, REPO, run
from server.cpusets import format_cpuset

LAUNCHER = [sys.executable, "-S", "-m", "server.affinity"]
SHOW = "import json, os; print(json.dumps([sorted(os.sched_getaffinity(0)), os.environ.get('LAB_CPUS_AVAILABLE'), os.getpid()]))"
MINE = sorted(os.sched_getaffinity(0))


def launch(lab_cpus, *command, available=None):
    """(exit status, (affinity, LAB_CPUS_AVAILABLE, pid) as the command saw them or None, stderr, launcher's pid)
    of the launcher run here with LAB_CPUS (None: unset) on `available` CPUs (None: this test's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_CPU")}
    env["PYTHONPATH"] = str(REPO)
    if lab_cpus is not None:
        env["LAB_CPUS"] = lab_cpus
    proc = subprocess.Popen([*LAUNCHER, *(command or (sys.executable, "-c", SHOW))], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=pinned_to(available))
    out, err = proc.communicate(timeout=30)
    shown = json.loads(out) if out.startswith("[") else None
    return proc.returncode, shown, err, proc.pid



@pytest.mark.fast
def test_without_lab_cpus_the_command_runs_untouched_as_the_launcher_itself():
    for unset in (None, "", " "):
        code, (cpus, available, pid), err, launcher = launch(unset)
        assert (code, cpus, available, err) == (0, MINE, format_cpuset(MINE), ""), unset
        assert pid == launcher, "exec: the command is the launcher's process, not a child of it"


@pytest.mark.fast
def test_the_command_runs_on_the_wanted_cpus_of_those_there_are():
    first = MINE[0]
    code, (cpus, available, _), err, _ = launch(str(first))
    assert (code, cpus, available, err) == (0, [first], format_cpuset(MINE), "")
    # wanted and absent ones: the wanted that exist, one line says which were left out
    code, (cpus, available, _), err, _ = launch(f"{first},{first + 1}", available={first})
    assert (code, cpus, available) == (0, [first], str(first))
    assert err == f"LAB_CPUS={first},{first + 1}: this Docker gives the container CPU {first} only; running on {first}\n"


@pytest.mark.fast
@pytest.mark.skipif(len(MINE) < 2, reason="needs two CPUs")
def test_a_subset_of_two_is_one():
    code, (cpus, _, _), err, _ = launch(str(MINE[1]))
    assert (code, cpus, err) == (0, [MINE[1]], "")


@pytest.mark.fast
def test_with_none_of_the_wanted_cpus_it_runs_on_all_there_are_and_says_so():
    absent = MINE[-1] + 1
    code, (cpus, available, _), err, _ = launch(str(absent), available={MINE[0]})
    assert (code, cpus, available) == (0, [MINE[0]], str(MINE[0]))
    assert err == f"LAB_CPUS={absent}: this Docker gives the container CPU {MINE[0]} only; running on {MINE[0]}\n"
    code, (cpus, _, _), err, _ = launch(str(absent))
    assert cpus == MINE and err.count("\n") == 1 and f"running on {format_cpuset(MINE)}" in err


@pytest.mark.fast
def test_a_lab_cpus_that_is_no_cpu_set_stops_it_with_one_line(tmp_path):
    ran = tmp_path / "ran"
    for bad in ("zero", "1-0", "0,,1", "-1"):
        code, _, err, _ = launch(bad, sys.executable, "-c", f"open({str(ran)!r}, 'w')")
        assert code == 2 and err.startswith("server.affinity: LAB_CPUS: ") and err.count("\n") == 1, (bad, err)
        assert not ran.exists(), "the command must not run"


@pytest.mark.fast
def test_the_commands_exit_status_and_errors():
    assert launch("0", sys.executable, "-c", "raise SystemExit(7)")[0] == 7
    code, _, err, _ = launch(None, "no-such-command-here")
    assert code == 127 and err == "server.affinity: cannot run no-such-command-here: No such file or directory\n"
    proc = subprocess.run(LAUNCHER, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("usage: ")


@pytest.mark.fast
def test_children_inherit_the_pinning():
    """A pool's workers and prefork's children are forked or spawned from the command: they run where it does."""
    child = f"import subprocess, sys; sys.stdout.write(subprocess.run([sys.executable, '-c', {SHOW!r}], " \
            "capture_output=True, text=True).stdout)"
    code, (cpus, _, _), _, _ = launch(str(MINE[-1]), sys.executable, "-c", child)
    assert (code, cpus) == (0, [MINE[-1]])


# --- the lab image ----------------------------------------------------------------------------

def docker_run(*args, timeout=120):
    return run(["docker", "run", "--rm", "--network", "none", *args], timeout)


@pytest.mark.docker
def test_the_image_on_one_cpu_runs_where_it_can(lab_image):
    """A Docker with CPU 0 only, as a container pinned to it: LAB_CPUS=0-1 (set for two CPUs' pools) runs on
    0, and so does LAB_CPUS=1, with one line that says so; the container starts either way."""
    for wanted in ("0-1", "1"):
        proc = docker_run("--cpuset-cpus", "0", "-e", f"LAB_CPUS={wanted}", IMAGE, "python", "-c",
                          "import os; print(sorted(os.sched_getaffinity(0)))")
        assert (proc.returncode, proc.stdout.strip()) == (0, "[0]"), proc.stderr
        assert proc.stderr == f"LAB_CPUS={wanted}: this Docker gives the container CPU 0 only; running on 0\n"
    # as compose passes the .env as shipped: an empty LAB_CPUS and the role, whose layout on one CPU is CPU 0
    for role in ("pool", "load"):
        proc = docker_run("--cpuset-cpus", "0", "-e", "LAB_CPUS=", "-e", f"LAB_CPU_ROLE={role}", IMAGE, "python",
                          "-c", "import os; print(sorted(os.sched_getaffinity(0)))")
        assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[0]", ""), role


@pytest.mark.docker
def test_the_image_on_two_cpus_pins_to_lab_cpus_and_without_it_to_nothing(lab_image, docker_engine):
    if docker_engine < 2:
        pytest.skip("the Docker Engine has one CPU")
    show = ["python", "-c", "import os; print(sorted(os.sched_getaffinity(0)), os.environ['LAB_CPUS_AVAILABLE'])"]
    pinned = docker_run("-e", "LAB_CPUS=1", IMAGE, *show)
    assert (pinned.returncode, pinned.stdout.strip(), pinned.stderr) == (0, f"[1] 0-{docker_engine - 1}", "")
    untouched = docker_run(IMAGE, *show)
    assert untouched.stdout.strip() == f"{list(range(docker_engine))} 0-{docker_engine - 1}", untouched.stderr


@pytest.mark.docker
def test_the_pool_server_on_one_cpu_starts_one_worker(lab_image):
    """The process-pool server with the pools' LAB_CPUS (0-1) on a Docker with CPU 0 only: one worker."""
    name = f"labtest-affinity-{uuid.uuid4().hex[:8]}"
    run(["docker", "run", "-d", "--name", name, "--network", "none", "--init", "--cpuset-cpus", "0",
         "-e", "LAB_CPUS=0-1", IMAGE, "python", "-m", "server", "--strategy", "process-pool", "--host", "127.0.0.1",
         "--port", "25000"], 120, check=True)
    try:
        deadline = time.monotonic() + 60
        while run(["docker", "exec", name, "python", "-S", "-m", "server.healthcheck", "25000"], 30).returncode:
            assert time.monotonic() < deadline, run(["docker", "logs", name], 30).stderr[-2000:]
            time.sleep(0.5)
        workers = run(["docker", "exec", name, "python", "-c", FORKED_WORKERS], 60, check=True).stdout
        assert int(workers) == 1
        logs = run(["docker", "logs", name], 30).stderr
        assert logs.splitlines()[0] == "LAB_CPUS=0-1: this Docker gives the container CPU 0 only; running on 0", logs
    finally:
        run(["docker", "rm", "-f", name], 60)
