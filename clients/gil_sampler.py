"""Which thread of a server holds the GIL, sampled from outside the server with py-spy.

Runs in a sidecar container that shares the server container's PID namespace and alone gets
CAP_SYS_PTRACE (lab.runner.gil_sampling starts it in the runner; compose's profile gil in the live lab);
the server keeps its hardening and is not changed. Standard library only, and py-spy (the lab image
has it).

    python -m clients.gil_sampler [--rate HZ] [--max-s S] [--post URL --target NAME]

About every 1/rate s (at a random point of each period) it runs `py-spy dump --nonblocking` on the
server's process, which names each thread's state: idle, active, or active+gil (the one thread that
holds the GIL). py-spy's `record` keeps no time
per sample in a form that says which thread held the GIL (its chrome trace merges a thread's unchanged
stacks across samples where it did not hold it), so one dump per sample it is: each one is a real
reading at a known epoch time, which lines up with perf2's buckets. A dump costs about 5 ms of CPU, on
the load CPU: hence the modest rate.

Live mode (--post URL, compose's profile gil): each second's shares go to the Lab view instead
(SecondPoster), and a restarted server is found again. Each post carries the environment's LAB_TOKEN (compose
passes .env's) in the X-Lab-Token header: a lab with a token takes no post without it. From the
environment, not an option: a command line is visible to every process on the machine.

It stops on SIGTERM or SIGINT (docker stop/kill), or after --max-s, and prints one JSON object:
  tool, pid, py_spy (version), rate_hz, threads {tid: name}, samples [[epoch s, [[tid, state, fib depth],
  ...]], ...] (fib depth: how many fib frames the thread's stack holds, the long request's mark),
  errors (dumps that failed), first_error, cpu_s (the dumps' own CPU time)
or, when it cannot sample at all, exits 1 with one line on stderr.
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from clients import common, procfs

THREAD_LINE = re.compile(r'^Thread (?P<tid>\S+) \((?P<state>[a-z+]+)\)(?:: "(?P<name>.*)")?')
FRAME_LINE = re.compile(r"^\s+(?P<function>\S+) \(")
FIND_SERVER_S = 5
DUMP_TIMEOUT_S = 2
READY = "gil_sampler: sampling"  # on stderr once the first dump worked: the clients may start
NO_THREAD = ("0", "0x0")  # py-spy's id of a thread state without an OS thread
HELD = "active+gil"  # py-spy's state of the thread that holds the GIL
HEARTBEAT = "/tmp/gil-sampler-posted"
TOKEN_HEADER = "X-Lab-Token"  # what lab.live.controller.token_ok reads


class SamplerError(Exception):
    """Why the server cannot be sampled, in one line."""


def server_pid():
    """The PID of `python -m server` in this PID namespace (clients.procfs's search), or None."""
    try:
        return procfs.find_server(procfs.processes())
    except common.ClientError:
        return None


def parse_dump(text):
    """[(tid, name, state, fib depth)] from `py-spy dump` output. A thread py-spy names 0 is left out: its
    thread state has no OS thread yet, or no more (a thread starting or ending), and is none of the server's."""
    threads = []
    for line in text.splitlines():
        match = THREAD_LINE.match(line)
        if match:
            threads.append([match["tid"], match["name"] or "", match["state"], 0])
        elif threads and (frame := FRAME_LINE.match(line)) and frame["function"].rpartition(".")[2] == "fib":
            threads[-1][3] += 1
    return [thread for thread in threads if thread[0] not in NO_THREAD]


def dump(py_spy, pid):
    """One reading of every thread of pid; SamplerError with py-spy's last line if it could not."""
    try:
        proc = subprocess.run([py_spy, "dump", "--nonblocking", "--pid", str(pid)], capture_output=True,
                              text=True, timeout=DUMP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise SamplerError(f"py-spy dump took over {DUMP_TIMEOUT_S} s") from None
    threads = parse_dump(proc.stdout)
    if proc.returncode != 0 or not threads:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        raise SamplerError(f"py-spy cannot read the server (pid {pid}): {lines[-1].strip()}")
    return threads


def find_server(stop, wait_s):
    """The server's PID once it is there (None if stop() or wait_s passed first)."""
    deadline = time.monotonic() + wait_s
    while (pid := server_pid()) is None and not stop() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def sample(rate_hz, max_s, stop, on_sample=None):
    """Dump the server every 1/rate_hz s until stop() or max_s; the record described above. With
    on_sample (live mode), each sample goes to on_sample(epoch s, [[tid, name, state, fib depth], ...])
    instead of into the record, and a server that restarts is found again."""
    py_spy = shutil.which("py-spy")
    if not py_spy:
        raise SamplerError("py-spy is not installed in this image (requirements/lab.txt pins it)")
    pid = find_server(stop, FIND_SERVER_S)
    if pid is None:
        raise SamplerError("no `python -m server` process in the server's container (is the PID namespace "
                           "shared?)")
    version = subprocess.run([py_spy, "--version"], capture_output=True, text=True).stdout.split()[-1]
    dump(py_spy, pid)  # fails at once, with py-spy's reason, if py-spy cannot read this Python at all
    print(f"{READY} pid {pid} with py-spy {version} at {rate_hz:g} Hz", file=sys.stderr, flush=True)
    names, samples, errors, first_error = {}, [], 0, None
    start = time.monotonic()
    k = 0
    while not stop() and time.monotonic() - start < max_s:
        taken_at = time.time()
        try:
            threads = dump(py_spy, pid)
        except SamplerError as e:
            errors, first_error = errors + 1, first_error or str(e)
            if server_pid() != pid:  # the server ended: nothing more to read, or (live) its next one
                pid = find_server(stop, max_s - (time.monotonic() - start)) if on_sample else None
                if pid is None:
                    break
        else:
            for tid, name, _, _ in threads:
                names[tid] = name or names.get(tid, "")  # a thread just started may have no name yet
            if on_sample:
                on_sample(taken_at, [[tid, names[tid], state, depth] for tid, _, state, depth in threads])
            else:
                samples.append([round(taken_at, 4), [[tid, state, depth] for tid, _, state, depth in threads]])
        k += 1
        # at a random point of each period: a fixed period would alias with the GIL's own rhythm (two
        # threads taking turns every 5 ms switch interval, sampled every 40 ms, is always the same turn)
        time.sleep(max(0.0, start + (k + random.random()) / rate_hz - time.monotonic()))
    import resource  # here: the lab's runner imports this module's names on Windows too, which has none
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"tool": "gil_sampler", "pid": pid, "py_spy": version, "rate_hz": rate_hz, "threads": names,
            "samples": samples, "errors": errors, "first_error": first_error,
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}


class SecondPoster:
    """Live mode (compose's profile gil): each second's samples, summed up, POSTed as JSON to the Lab
    view (lab/live/routes.py, /lab/gil):
      second (epoch), target (the server's service), samples, free (share of samples in which no thread
      held the GIL), threads [{tid, name, held (share), fib_depth (deepest seen: the long request)}]
    HEARTBEAT is touched after every POST the master took: compose's health check reads it."""

    def __init__(self, url, target, token=""):
        self.url, self.target = url, target
        self.headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token else {})}
        self.second, self.samples, self.failed_at = None, [], 0.0

    def __call__(self, taken_at, threads):
        if self.second is not None and int(taken_at) != self.second:
            self.post(summary(self.second, self.samples, self.target))
            self.samples = []
        self.second = int(taken_at)
        self.samples.append(threads)

    def post(self, body):
        request = urllib.request.Request(self.url, json.dumps(body).encode(), self.headers)
        try:
            with urllib.request.urlopen(request, timeout=2):
                pass
            with open(HEARTBEAT, "w"):
                pass
        except OSError as e:
            if time.monotonic() - self.failed_at > 30:  # one line now and then, not one a second
                self.failed_at = time.monotonic()
                refused = " (is LAB_TOKEN this lab's?)" if getattr(e, "code", None) in (401, 403) else ""
                print(f"gil_sampler: cannot post to {self.url}: {e}{refused}", file=sys.stderr, flush=True)


def summary(second, samples, target):
    """One second of samples, as SecondPoster posts it."""
    threads = {}
    for sample_threads in samples:
        for tid, name, state, depth in sample_threads:
            row = threads.setdefault(tid, {"tid": tid, "name": name, "held": 0, "fib_depth": 0})
            row["held"] += state == HELD
            row["fib_depth"] = max(row["fib_depth"], depth)
    n = len(samples)
    for row in threads.values():
        row["held"] = row["held"] / n
    held_by_any = sum(any(state == HELD for _, _, state, _ in t) for t in samples)
    return {"second": second, "target": target, "samples": n, "free": 1 - held_by_any / n,
            "threads": list(threads.values())}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clients.gil_sampler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=25.0, help="dumps per second (default: 25)")
    parser.add_argument("--max-s", type=float, default=600.0, help="stop after this many seconds (default: 600)")
    parser.add_argument("--post", metavar="URL", help="live mode: POST each second's shares to URL (the Lab view's "
                                                       "/lab/gil) instead of printing one record at the end")
    parser.add_argument("--target", default="", help="live mode: the server's name, shown in the Lab view")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= 200 or args.max_s <= 0:
        parser.error("--rate must be in (0, 200] and --max-s above 0")
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        record = sample(args.rate, args.max_s, lambda: bool(stopping),
                        SecondPoster(args.post, args.target, os.environ.get("LAB_TOKEN", "").strip())
                        if args.post else None)
    except SamplerError as e:
        print(f"gil_sampler: {e}", file=sys.stderr)
        return 1
    if not args.post:
        print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
