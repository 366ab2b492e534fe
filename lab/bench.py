"""What the benchmarks (scripts/bench-*) share: a server on its own CPU, the load on the others."""
import os
import select
import signal
import subprocess
import sys

from lab import REPO
from server.strategies import threaded

STARTUP_TIMEOUT_S = 30


def cpu_plan(load="the load"):
    """(server CPUs, load CPUs, description): split the CPUs this process may use."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"only CPU {cpus[0]} available: server and load share it (no pinning)"
    server, others = {cpus[0]}, set(cpus[1:])
    return server, others, f"server pinned to CPU {cpus[0]}, {load} to CPU {','.join(map(str, cpus[1:]))}"


def pinned_to(cpus):
    """A preexec_fn that pins the child process to `cpus` (None: leave it alone)."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def start_server(tool, cpus, *args):
    """A threaded server (with `args`, e.g. --handler echo) on a free port of 127.0.0.1, pinned to
    `cpus`, in its own session; (process, port). `tool` names the benchmark in the error that stops it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--strategy", threaded.NAME, *args, "--port", "0", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, preexec_fn=pinned_to(cpus), start_new_session=True)
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        stop(proc)
        sys.exit(f"{tool}: the server ({threaded.NAME} {' '.join(args)}) did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
