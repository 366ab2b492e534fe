"""scripts/bench-loadgen: how fast is the lab's load generator? A benchmark that prints figures; not a test.

Against the lab's echo server (a thread per connection, --handler echo), over the same
number of connections, the same payload and the same duration, it measures in turn:
  (a) the article's bare perf2 loop: blocking sockets, one thread per connection, each doing
      sock.send(payload); sock.recv(100) as fast as it can (clients.perf2.bare_loop), all in one process;
  (b) one Locust worker process running the lab's TCP user (locustfiles/echo.py), driven by a
      headless master;
and prints the request rate of each and the ratio b/a. The lab wants b/a >= 0.9, so that what it
measures is the server and not Locust. Each round also runs
  (c) the same worker with locustfiles/_no_io.py: the echo user's loop and request event with no
      socket, so its CPU per request is Locust's own accounting (and the lab's HDR recorder);
and says what share of (b)'s CPU per request that floor is. --profile samples one more (b) run
with py-spy and says where the worker's time went: gevent's hub, the socket calls, Locust, the
lab's own code. --processes N runs (b) as Locust's --processes N, to see the rate grow with the
load's CPUs until the server is the limit (it cannot grow on a single load CPU).

A shared machine drifts: every round measures (a) and (b) back to back (in alternating order:
a b, b a, ...) and the result is the median of the rounds' ratios.

With 2 or more CPUs the server runs on the first CPU and both loads on the others (sched_setaffinity),
as in the lab's compose defaults; the output says which.

(a) counts the requests completed in --duration seconds once every connection is up. (b) runs the
worker for --duration seconds plus two at each end, and takes the mean of the whole seconds in
between from the lab's HDR summary (PREFIX_hdr.json, "per_second"), so spawning and stopping do not
count. Each side's CPU time (user + system) per request, over the same span, comes with it: a
figure the machine's noise moves far less than the rates, and the ratio b/a would be where the
load's CPU is the limit.
"""

import argparse
import collections
import json
import math
import multiprocessing
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import psutil

from clients.common import free_port, pinned_to
from clients.perf2 import bare_loop
from lab import REPO
from lab.bench.common import STARTUP_TIMEOUT_S, BenchError, cpu_plan, exit_status, start_server, stop

LOCUSTFILE = REPO / "locustfiles" / "echo.py"
NO_IO_LOCUSTFILE = REPO / "locustfiles" / "_no_io.py"
# Locust's run is this much longer than the measurement at each end: the first and the last
# whole-second buckets are partial (spawning, stopping) and left out.
LOCUST_MARGIN_S = 2


def parse_args():
    parser = argparse.ArgumentParser(prog="scripts/bench-loadgen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=4,
                        help="connections: threads in (a), Locust users in (b) (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=6.0,
                        help="seconds measured per run (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (default: %(default)s)")
    parser.add_argument("--bytes", type=int, default=2,
                        help="request size, newline included; the same for (a) and (b) (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0,
                        help="use the echo server already listening on 127.0.0.1:PORT (default: start one)")
    parser.add_argument("--python", default=default_python(),
                        help="the Python that has Locust installed (default: %(default)s)")
    parser.add_argument("--processes", type=int, default=1,
                        help="Locust worker processes in (b) (Locust's own --processes: the worker forks N "
                             "processes, the users spread over them); (a) keeps its threads (default: %(default)s)")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, one more (b) run sampled by py-spy, and where the worker's time "
                             "went: Locust, gevent's hub, the socket calls, the lab's own code")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    args = parser.parse_args()
    if args.connections < 1 or args.duration < 2 or args.rounds < 1 or args.bytes < 1 or args.processes < 1:
        parser.error("--connections, --rounds, --bytes and --processes must be >= 1, --duration >= 2")
    return args


def default_python():
    venv_python = REPO / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


# ------------------------------------------------------------------------- measuring

class Measurement(NamedTuple):
    rate: float  # requests per second
    cpu_us_per_request: float  # the load process's CPU time (user + system) per request


def process_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_of(pid):
    """utime + stime of another process and of its children (Locust's --processes forks), from /proc."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:  # a child that just ended
            continue
        total += times.user + times.system
    return total


class CpuSampler(threading.Thread):
    """A process's CPU time at each whole second of the clock, where Locust's per-second counts begin."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.finished = pid, {}, threading.Event()

    def run(self):
        while True:
            second = int(time.time()) + 1
            if self.finished.wait(second - time.time() + 0.002):
                return
            try:
                self.samples[second] = cpu_seconds_of(self.pid)
            except psutil.NoSuchProcess:
                return


# ------------------------------------------------------------------------- (a) the bare loop

def bare_loop_process(port, connections, duration, payload, cpus, results):
    """Runs in a child process: one thread per connection, the article's perf2 loop in each."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(connections)]
    counts = [0] * connections
    everyone_connected = threading.Barrier(connections + 1)

    def perf2(index):
        everyone_connected.wait()
        counts[index], _ = bare_loop(sockets[index], payload, duration)

    threads = [threading.Thread(target=perf2, args=(index,)) for index in range(connections)]
    for thread in threads:
        thread.start()
    cpu_before = process_cpu_seconds()
    everyone_connected.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, process_cpu_seconds() - cpu_before
    results.put(Measurement(sum(counts) / elapsed, cpu / sum(counts) * 1e6))


def measure_bare_loop(args, port, payload, cpus):
    results = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(
        target=bare_loop_process, args=(port, args.connections, args.duration, payload, cpus, results))
    child.start()
    try:
        return results.get(timeout=args.duration + STARTUP_TIMEOUT_S)
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()


# ------------------------------------------------------------------------- (b) one Locust worker

def measure_locust_worker(args, port, cpus, workdir, locustfile=LOCUSTFILE, while_running=None):
    """One headless run of `locustfile` in --processes worker processes; while_running(worker pid), if
    given, is called once the users run."""
    locust = [args.python, "-m", "locust", "-f", str(locustfile), "--echo-bytes", str(args.bytes)]
    master_port = free_port()
    prefix = Path(workdir) / f"locust-{time.monotonic_ns()}"
    run_time = int(args.duration + 2 * LOCUST_MARGIN_S + 0.999)
    master = subprocess.Popen(
        [*locust, "--master", "--headless", "--expect-workers", str(args.processes), "-u", str(args.connections),
         "-r", str(args.connections * 100), "-t", f"{run_time}s", "--host", f"tcp://127.0.0.1:{port}",
         "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port),
         "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=pinned_to(cpus),
        start_new_session=True)
    worker = subprocess.Popen(
        [*locust, "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port),
         *(["--processes", str(args.processes)] if args.processes > 1 else []), "--loglevel", "WARNING"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pinned_to(cpus),
        start_new_session=True)
    worker_cpu = CpuSampler(worker.pid)
    worker_cpu.start()
    try:
        if while_running is not None:
            time.sleep(LOCUST_MARGIN_S + 1)
            while_running(worker.pid)
        _, errors = master.communicate(timeout=run_time + STARTUP_TIMEOUT_S)
        worker.wait(timeout=10)
    finally:
        worker_cpu.finished.set()
        for proc in (master, worker):
            if proc.poll() is None:
                stop(proc)
    summary_path = Path(f"{prefix}_hdr.json")
    if not summary_path.exists():
        raise BenchError(f"Locust wrote no {summary_path.name}; its stderr:\n{errors.decode()[-2000:]}")
    summary = json.loads(summary_path.read_text())
    if summary["locust"]["num_failures"]:
        raise BenchError(f"Locust reported {summary['locust']['num_failures']} failures")
    measured = summary["per_second"][1:-1][:int(args.duration)]
    if not measured:
        raise BenchError("Locust completed no request in a whole second")
    first, last = measured[0][0], measured[-1][0]
    requests = sum(count for _, count in measured)
    samples = worker_cpu.samples
    cpu = samples[last + 1] - samples[first] if first in samples and last + 1 in samples else math.nan
    return Measurement(requests / len(measured), cpu / requests * 1e6)


# ------------------------------------------------------------------------- where (b)'s time goes

PROFILE_S = 4
# Where a py-spy sample's innermost frame is, by the file it is in; the lab's socket calls apart.
SOCKET_CALLS = ("self.sock.send(", "self.sock.recv(")


def profile_locust_worker(args, port, cpus, workdir):
    """py-spy's samples of one (b) run's worker, counted by where the innermost frame is."""
    py_spy = Path(args.python).parent / "py-spy"
    if not py_spy.exists():
        raise BenchError(f"--profile needs py-spy next to {args.python} (requirements/bench.txt)")
    raw = Path(workdir) / "profile.txt"

    def record(pid):
        proc = subprocess.run([str(py_spy), "record", "--pid", str(pid), "--duration", str(PROFILE_S),
                               "--rate", "500", "--format", "raw", "--full-filenames", "--output", str(raw), "--nonblocking",
                               *(["--subprocesses"] if args.processes > 1 else [])],
                              capture_output=True, text=True, timeout=PROFILE_S + 30)
        if proc.returncode != 0:
            raise BenchError(f"py-spy failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")

    measure_locust_worker(args, port, cpus, workdir, while_running=record)
    return samples_by_place(raw.read_text())


def samples_by_place(raw_text):
    """{place: samples} of py-spy's raw (collapsed) stacks: the innermost frame's library, or the lab's
    code with its socket calls counted apart."""
    places = collections.Counter()
    for line in raw_text.splitlines():
        stack, _, count = line.rpartition(" ")
        leaf = stack.rsplit(";", 1)[-1]  # 'function (path/file.py:line)'
        location = leaf.rpartition("(")[2].rstrip(")")
        path, _, line_number = location.rpartition(":")
        places[place_of(path, line_number)] += int(count)
    return places


def place_of(path, line_number):
    if "/gevent/" in path:
        return "gevent's hub and libev (waiting, switching greenlets)"
    if "/locust/" in path:
        return "Locust (its statistics, events, runner)"
    if "/locustfiles/" in path or "/lab/" in path:
        try:
            text = Path(path).read_text().splitlines()[int(line_number) - 1]
        except (OSError, ValueError, IndexError):
            text = ""
        return "the socket calls (send, recv)" if any(call in text for call in SOCKET_CALLS) else "the lab's own code"
    if "/hdrh/" in path:
        return "HdrHistogram (encoding reports)"
    return "other (zmq, the standard library, ...)"


def workers_text(processes):
    return "one Locust worker" if processes == 1 else f"Locust worker, {processes} processes,"


def print_profile(places):
    total = sum(places.values())
    print(f"where the Locust worker's time went (py-spy, {total} samples of a {PROFILE_S} s (b) run):")
    for place, count in places.most_common():
        print(f"  {count / total:6.1%}  {place}")


# ------------------------------------------------------------------------- the run

def main():
    args = parse_args()
    return exit_status("bench-loadgen", lambda: benchmark(args))


def benchmark(args):
    payload = b"x" * (args.bytes - 1) + b"\n"
    server_cpus, load_cpus, pinning = cpu_plan(load="loads (a) and (b)")
    server = None
    if args.port:
        port, pinning = args.port, f"server on 127.0.0.1:{args.port} (not started here, not pinned); " + \
            (f"loads pinned to CPU {','.join(map(str, sorted(load_cpus)))}" if load_cpus else "loads not pinned")
    else:
        server, port = start_server(server_cpus, "--handler", "echo")
    print(f"bench-loadgen: echo server on 127.0.0.1:{port}; {pinning}")
    print(f"  {args.connections} connections, {args.bytes}-byte requests, {args.duration:g} s per run, "
          f"{args.rounds} rounds; Locust from {args.python}", flush=True)
    bare, locust, floor = [], [], []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-loadgen-") as workdir:
            for round_number in range(1, args.rounds + 1):
                order = ("a", "b") if round_number % 2 else ("b", "a")
                for which in order:
                    if which == "a":
                        bare.append(measure_bare_loop(args, port, payload, load_cpus))
                    else:
                        locust.append(measure_locust_worker(args, port, load_cpus, workdir))
                floor.append(measure_locust_worker(args, port, load_cpus, workdir, NO_IO_LOCUSTFILE))
                print(f"  round {round_number}: (a) bare loop {bare[-1].rate:6.0f} req/s, "
                      f"{bare[-1].cpu_us_per_request:4.1f} µs CPU/request   (b) {workers_text(args.processes)} "
                      f"{locust[-1].rate:6.0f} req/s, {locust[-1].cpu_us_per_request:4.1f} µs CPU/request   "
                      f"b/a {locust[-1].rate / bare[-1].rate:.2f}   (c) no I/O {floor[-1].rate:6.0f} req/s, "
                      f"{floor[-1].cpu_us_per_request:4.1f} µs CPU/request", flush=True)
            places = profile_locust_worker(args, port, load_cpus, workdir) if args.profile else None
    finally:
        if server is not None:
            stop(server)
    ratios = [b.rate / a.rate for a, b in zip(bare, locust)]
    ratio = statistics.median(ratios)
    bare_cpu, locust_cpu, floor_cpu = (statistics.median(m.cpu_us_per_request for m in side)
                                       for side in (bare, locust, floor))
    print(f"median: (a) bare loop {statistics.median(a.rate for a in bare):.0f} req/s, {bare_cpu:.1f} µs CPU/request; "
          f"(b) {workers_text(args.processes)} {statistics.median(b.rate for b in locust):.0f} req/s, "
          f"{locust_cpu:.1f} µs CPU/request; "
          f"(c) Locust with no I/O {statistics.median(c.rate for c in floor):.0f} req/s, {floor_cpu:.1f} µs CPU/request")
    print(f"b/a = {ratio:.2f} (median of the rounds' ratios; target >= 0.9); "
          f"CPU per request a/b = {bare_cpu / locust_cpu:.2f} (the ratio when the load's CPU is the limit)")
    print(f"Locust's own accounting per request (c) is {floor_cpu / locust_cpu:.0%} of (b)'s CPU per request")
    if places:
        print_profile(places)
    if args.json:
        print(json.dumps({"connections": args.connections, "processes": args.processes, "duration_s": args.duration,
                          "bytes": args.bytes, "profile": places,
                          "pinning": pinning, "bare": [a._asdict() for a in bare],
                          "locust": [b._asdict() for b in locust], "no_io": [c._asdict() for c in floor],
                          "ratio": ratio, "cpu_per_request_ratio": bare_cpu / locust_cpu,
                          "no_io_share": floor_cpu / locust_cpu}))


if __name__ == "__main__":
    sys.exit(main())
