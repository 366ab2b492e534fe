"""What the benchmarks (scripts/bench-*) share: a server on its own CPU, the load on the others, named as
lab.cpu.layout names the runner's perf2 layout."""
import argparse
import os
import platform
import select
import signal
import subprocess
import sys

from clients.common import pinned_to
from lab import REPO
from lab.cpu import layout
from lab.runner.environment import cpu_model
from server.cpusets import CAN_PIN, NO_PINNING, usable_cpus
from server.strategies import threaded

STARTUP_TIMEOUT_S = 30


def cpu_plan(load="the load", one_client_cpu=False):
    """(server CPUs, load CPUs, the layout in words, lab.cpu.layout's): the server on the first CPU this process
    may use, the load on the others, or on the second only with one_client_cpu (a single client, which
    must not move between CPUs either: a rate across CPUs is several times one on the same CPU)."""
    if not CAN_PIN:
        raise BenchError(f"{NO_PINNING}: a benchmark measures a server and its load on CPUs of their own")
    cpus = sorted(usable_cpus())
    if len(cpus) < 2:
        return {cpus[0]}, {cpus[0]}, layout.text(cpus[0], {cpus[0]}, f"{load} too")
    server, others = {cpus[0]}, set(cpus[1:2] if one_client_cpu else cpus[1:])
    return server, others, layout.text(cpus[0], others, load)


def machine():
    """'AMD EPYC, 2 CPUs, Linux 6.18.44, Python 3.11.7': the machine a benchmark ran on, as a run's report
    names it, and the Python that ran it."""
    return (f"{cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, `PROG: error: why (--help explains)`, and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (--help explains)\n")


class BenchError(Exception):
    """What stops a benchmark, in one line (exit_status prints it)."""


def exit_status(tool, measure):
    """Run measure(): exit status 0, or 1 after a BenchError's line on stderr, as `TOOL: why`."""
    try:
        measure()
    except BenchError as error:
        print(f"{tool}: {error}", file=sys.stderr)
        return 1
    return 0


def start_server(cpus, *args):
    """A threaded server (with `args`, e.g. --handler echo) on a free port of 127.0.0.1, pinned to
    `cpus`, in its own session; (process, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "--strategy", threaded.NAME, *args, "--port", "0", "--quiet"],
        cwd=REPO, stdout=subprocess.PIPE, preexec_fn=pinned_to(cpus), start_new_session=True)
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        stop(proc)
        raise BenchError(f"the server ({threaded.NAME} {' '.join(args)}) did not start: {line!r}")
    return proc, int(line.rsplit(":", 1)[1])


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
