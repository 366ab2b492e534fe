"""Which thread of a server holds the GIL, which wait for it, and how often it changes hands, sampled from
outside the server: clients.gil_state for the GIL, py-spy only for what needs a stack.

Runs in a sidecar container that shares the server container's PID namespace and alone gets
CAP_SYS_PTRACE (lab.runner.gil_sampling starts it in the runner; compose's profile gil in the live lab),
or by hand beside a server with --pid; the server keeps its hardening and is not changed. Standard
library only, and py-spy (the lab image has it).

    python -m clients.gil_sampler [--pid PID] [--rate HZ] [--dump-rate HZ] [--max-s S] [--post URL --target NAME]

The GIL, --rate times a second (at a random point of each period: a fixed one would keep step with the
switch interval): clients.gil_state reads the holder and switch_number (the hand-offs) from the server's
memory and each thread's system call from /proc, without stopping the server. Each thread then held the
GIL, waited for it (asleep on the GIL's futex, which py-spy calls idle, as it does a thread in recv), or
did something other (I/O, idle, or runnable without the GIL). A sample costs 0.1 to 0.17 ms of CPU for a
server of 3 threads (0.2 ms for 9), and waking up for it about 0.06 ms more: at the default 100 Hz, about
2% of the load CPU the sampler runs on (measured beside two perf1 clients, 2026-12-06), for 20 samples in
each 0.2 s window. A free-threaded server with the GIL disabled has no GIL to wait for: one line says so,
and each sample holds each thread's on-CPU seconds (/proc's schedstat) instead.

py-spy, --dump-rate times a second (default 1; 0: never), in a thread of its own, for what only a stack
tells: each thread's Python name, and how many fib frames its stack holds (the long request's mark). The
OS knows no Python thread name before 3.14, and reading stacks from memory would take a frame walker per
Python, which py-spy is. A dump costs 9 to 18 ms of CPU (when py-spy alone sampled, it held the rate to
25 Hz): 1 a second is 1 to 2% of a CPU, and the live C6's long request lasts many seconds; the runner's
gil_share asks more for its shorter one. Without py-spy, or where it cannot read the server (0.4.3 cannot
read 3.13t), the names are /proc's (comm), every depth is 0, and the record says why (py_spy_error).

Live mode (--post URL, compose's profile gil): each second goes to the Lab view instead (SecondPoster),
and a restarted server is found again (not with --pid). Each post carries the environment's LAB_TOKEN
(compose passes .env's) in the X-Lab-Token header: a lab with a token takes no post without it. From the
environment, not an option: a command line is visible to every process on the machine.

It stops on SIGTERM or SIGINT (docker stop/kill), or after --max-s, and prints one JSON object:
  tool, pid, python (the server's: 3.13.5, or 3.13.5t free-threaded), mechanism, gil (false: no GIL to wait
  for), rate_hz, dump_rate_hz, py_spy (its version, or null), py_spy_error (why it gave no stack, or
  null), threads {tid: name}, samples [[epoch s, switch_number, [[tid, state, fib depth], ...]], ...]
  (state: held, wait or other; without a GIL, switch_number is null and in state's place are the thread's
  on-CPU seconds so far; fib depth: as the last py-spy dump saw the thread, 0 before one), errors
  (samples that failed), first_error, server_cpu ({seconds, on_cpu_s, waiting_s}: the server's threads' CPU
  time over the record, and their time runnable but waiting for a CPU; null in live mode), interpreters
  ({id: {samples, holders {tid: share}, handoffs_per_s}} of the subinterpreters with a GIL of their own:
  3.14's InterpreterPoolExecutor; their holders are held in samples too), dump_errors (py-spy's dumps that
  failed: --nonblocking reads a stack as it changes, and 1 in 30 or so fails beside fib), first_dump_error,
  cpu_s (the sampler's own CPU time, py-spy's in it), py_spy_cpu_s
or, when it cannot sample at all, exits 1 with one line on stderr. About 100 bytes a sample for 4 threads:
600 KB for a minute at 100 Hz.
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
import threading
import time
import urllib.request

from clients import common, procfs
from clients.gil_state import HELD, WAIT, GilReader, ReaderError, Sample, handoffs_per_s, interpreter_gils

NO_THREAD = ("0", "0x0")  # py-spy's id of a thread state without an OS thread
THREAD_LINE = re.compile(r'^Thread (?P<tid>\S+) \((?P<state>[a-z+]+)\)(?:: "(?P<name>.*)")?')
FRAME_LINE = re.compile(r"^\s+(?P<function>\S+) \(")
FIND_SERVER_S = 5
DUMP_TIMEOUT_S = 2
FIRST_DUMPS = 3  # a dump fails now and then (about 1 in 30 beside fib): 3 fail only if py-spy cannot read it
MAX_RATE_HZ = 1000
MAX_DUMP_RATE_HZ = 20
WINDOW_S = 0.2  # live mode's sub-windows of each second
READY = "gil_sampler: sampling"  # on stderr once the first sample worked: the clients may start
MECHANISM = ("clients.gil_state: the GIL's holder and switch_number from /proc/PID/mem, each thread's futex "
             "from /proc/PID/task/TID/syscall")
NO_GIL_MECHANISM = "clients.gil_state: no GIL; each thread's on-CPU seconds from /proc/PID/task/TID/schedstat"
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
    if proc.returncode == 0 and not threads:  # e.g. 3.14's subinterpreters: py-spy 0.4.3 reads another interpreter
        raise SamplerError(f"py-spy's dump of the server (pid {pid}) lists none of its main interpreter's threads")
    if proc.returncode != 0 or not threads:
        lines = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()
        why = next((line for line in lines if line.startswith("Error: ")), lines[-1])  # not its backtrace's
        raise SamplerError(f"py-spy cannot read the server (pid {pid}): {why.removeprefix('Error: ').strip()}")
    return threads


def find_server(stop, wait_s):
    """The server's PID once it is there (None if stop() or wait_s passed first)."""
    deadline = time.monotonic() + wait_s
    while (pid := server_pid()) is None and not stop() and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


class Stacks:
    """py-spy dumps of pid in a thread of their own, every 1/rate_hz s: latest {tid: (Python name, fib depth)}
    of the last dump. None at all where py-spy is missing or cannot read pid, and error says why; a dump
    that fails now and then (--nonblocking reads a stack as it changes) is counted in errors, the first
    one's line in first_error."""

    def __init__(self, pid, rate_hz):
        self.pid, self.rate_hz, self.py_spy = pid, rate_hz, shutil.which("py-spy")
        self.latest, self.errors, self.error, self.first_error = {}, 0, None, None
        self.version, self.thread, self.done = None, None, threading.Event()
        if not rate_hz:
            self.error = "--dump-rate 0: no py-spy"
        elif not self.py_spy:
            self.error = "py-spy is not installed here (requirements/lab.txt pins it)"
        else:
            self.version = subprocess.run([self.py_spy, "--version"], capture_output=True, text=True).stdout.split()[-1]
            for _ in range(FIRST_DUMPS):  # at once: py-spy says why if it cannot read this Python at all
                try:
                    self.take()
                    break
                except SamplerError as e:
                    self.error = str(e)
            else:
                return
            self.error = None
            self.thread = threading.Thread(target=self.run, name="py-spy", daemon=True)
            self.thread.start()

    def take(self):
        # py-spy names a thread by its TID when it knows it (else a pthread id in hex, which no sample has)
        self.latest = {int(tid): (name, depth) for tid, name, _, depth in dump(self.py_spy, self.pid) if tid.isdigit()}

    def run(self):
        start, k = time.monotonic(), 1
        while not self.done.wait(max(0.0, start + (k + random.random()) / self.rate_hz - time.monotonic())):
            k += 1
            try:
                self.take()
            except SamplerError as e:
                self.errors, self.first_error = self.errors + 1, self.first_error or str(e)

    def described(self):
        return f"py-spy {self.version} at {self.rate_hz:g} Hz" if self.thread else f"no py-spy ({self.error})"

    def stop(self):
        self.done.set()
        if self.thread:
            self.thread.join(DUMP_TIMEOUT_S + 1)


def version_of(reader):
    return ".".join(map(str, reader.version)) + "t" * reader.free_threaded


def start_reading(pid, rate_hz, dump_rate_hz):
    """(GilReader, Stacks) of pid, once a first sample worked; SamplerError if the reader cannot read it."""
    try:
        reader = GilReader(pid)
    except ReaderError as e:
        raise SamplerError(str(e)) from None
    try:
        reader.sample()
    except ReaderError as e:
        reader.close()
        raise SamplerError(str(e)) from None
    stacks = Stacks(pid, dump_rate_hz)
    mechanism = MECHANISM if reader.has_gil() else NO_GIL_MECHANISM
    print(f"{READY} pid {pid}, Python {version_of(reader)} at {rate_hz:g} Hz ({mechanism}); stacks: "
          f"{stacks.described()}", file=sys.stderr, flush=True)
    if not reader.has_gil():
        print(f"gil_sampler: Python {version_of(reader)} in process {pid} runs with the GIL disabled: no GIL to "
              "wait for; sampling each thread's on-CPU seconds instead", file=sys.stderr, flush=True)
    return reader, stacks


def reopen(stop, wait_s, rate_hz, dump_rate_hz):
    """(pid, GilReader, Stacks) of the server found again (live mode), once it can be read: a server just
    started may have no interpreter yet, for up to FIND_SERVER_S. None if stop() or wait_s passed first."""
    deadline, failing_since = time.monotonic() + wait_s, None
    while (pid := find_server(stop, deadline - time.monotonic())) is not None:
        try:
            return (pid, *start_reading(pid, rate_hz, dump_rate_hz))
        except SamplerError:
            failing_since = failing_since or time.monotonic()
            if time.monotonic() - failing_since > FIND_SERVER_S:
                raise
            time.sleep(0.1)
    return None


def alive(pid, given):
    """Whether pid is still the one to read: the process given, or still the server found."""
    return not procfs.ended(pid) if given else server_pid() == pid


def sample(rate_hz, dump_rate_hz, max_s, stop, pid=None, on_sample=None):
    """Read the server's GIL every 1/rate_hz s until stop() or max_s; the record described above. pid: that
    process, else the server found. With on_sample (live mode), each sample goes to on_sample(pid, the
    gil_state.Sample, [[tid, name, state or on-CPU s, fib depth], ...]) instead of into the record, and a
    server found that restarts is found again."""
    given, cpu_at_start = pid is not None, time.process_time()
    pid = pid if given else find_server(stop, FIND_SERVER_S)
    if pid is None:
        raise SamplerError("no `python -m server` process in the server's container (is the PID namespace "
                           "shared?)")
    reader, stacks = start_reading(pid, rate_hz, dump_rate_hz)
    python, gil = version_of(reader), reader.has_gil()
    cpu_at_first, wall_at_first, server_cpu = reader.schedstats(), time.time(), None
    names, samples, errors, first_error, own_gils = {}, [], 0, None, []
    start, k = time.monotonic(), 0
    try:
        while not stop() and time.monotonic() - start < max_s:
            try:
                s = reader.sample()
            except ReaderError as e:
                errors, first_error = errors + 1, first_error or str(e)
                if not alive(pid, given):  # the server ended: nothing more to read, or (live) its next one
                    reader.close()
                    stacks.stop()
                    found = reopen(stop, max_s - (time.monotonic() - start), rate_hz, dump_rate_hz) if (
                        on_sample and not given) else None
                    if found is None:
                        break
                    (pid, reader, stacks), names = found, {}
            else:
                threads = []
                for tid, state in s.threads.items():
                    name, depth = stacks.latest.get(tid, ("", 0))
                    # a thread just started may have no Python name yet; py-spy, none at all: the OS's, then
                    names[tid] = name or names.get(tid) or procfs.thread_name(pid, tid)
                    threads.append([tid, names[tid], state if s.cpu_s is None else round(s.cpu_s.get(tid, 0.0), 4),
                                    depth])
                if s.interpreters:  # their GILs only, for the summary
                    own_gils.append(Sample(s.taken_at, None, None, {}, interpreters=s.interpreters))
                if on_sample:
                    on_sample(pid, s, threads)
                else:
                    samples.append([round(s.taken_at, 4), s.switch_number,
                                    [[tid, state, depth] for tid, _, state, depth in threads]])
            k += 1
            time.sleep(max(0.0, start + (k + random.random()) / rate_hz - time.monotonic()))
        if reader.mem is not None and not on_sample:
            server_cpu = cpu_since(reader, cpu_at_first, wall_at_first)
    finally:
        reader.close()
        stacks.stop()
    import resource  # here: the lab's runner imports this module's names on Windows too, which has none
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # py-spy's dumps
    py_spy_cpu_s = usage.ru_utime + usage.ru_stime
    return {"tool": "gil_sampler", "pid": pid, "python": python, "mechanism": MECHANISM if gil else NO_GIL_MECHANISM,
            "gil": gil, "rate_hz": rate_hz, "dump_rate_hz": dump_rate_hz, "py_spy": stacks.version,
            "py_spy_error": stacks.error, "threads": names, "samples": samples, "errors": errors,
            "first_error": first_error, "interpreters": interpreters_of(own_gils), "dump_errors": stacks.errors,
            "first_dump_error": stacks.first_error, "server_cpu": server_cpu,
            "cpu_s": round(time.process_time() - cpu_at_start + py_spy_cpu_s, 3),
            "py_spy_cpu_s": round(py_spy_cpu_s, 3)}


def cpu_since(reader, before, wall_before):
    """{seconds, on_cpu_s, waiting_s} of the server's threads since before (GilReader.schedstats()) at
    wall_before: their CPU time, and their time runnable but waiting for a CPU (a thread woken to take the
    GIL that waits for a CPU is 'other' in the samples, not 'wait': this says how much of that there was);
    None if the server could not be read. A thread that ended meanwhile is not in them."""
    try:
        after = reader.schedstats()
    except ReaderError:
        return None
    spent = [sum(now[i] - before.get(tid, (0.0, 0.0))[i] for tid, now in after.items()) for i in (0, 1)]
    return {"seconds": round(time.time() - wall_before, 3), "on_cpu_s": round(spent[0], 4),
            "waiting_s": round(spent[1], 4)}


class SecondPoster:
    """Live mode (compose's profile gil): each second's samples, summed up, POSTed as JSON to the Lab
    view (lab/live/routes.py, /lab/gil):
      second (epoch), target (the server's service), pid, samples, free (share of samples in which no thread
      held the GIL; null without a GIL), handoffs (the GIL's hand-offs per second; null without a GIL),
      threads [{tid, name, held, wait (shares of the second's samples), fib_depth (deepest seen: the long
      request); without a GIL, on_cpu (its share of a CPU) instead of held and wait}],
      windows [[t0 (epoch), handoffs per s, {tid: [held, wait]}], ...] per WINDOW_S of the second that has
      samples (without a GIL: {tid: on_cpu}), interpreters (as in the record: each subinterpreter's own GIL)
    HEARTBEAT is touched after every POST the master took: compose's health check reads it."""

    def __init__(self, url, target, token=""):
        self.url, self.target = url, target
        self.headers = {"Content-Type": "application/json", **({TOKEN_HEADER: token} if token else {})}
        self.second, self.samples, self.before, self.pid, self.failed_at = None, [], None, None, 0.0

    def __call__(self, pid, s, threads):
        if self.second is not None and int(s.taken_at) != self.second:
            self.post(summary(self.second, self.samples, self.target, self.pid, self.before))
            self.before, self.samples = self.samples[-1][0], []
        if pid != self.pid:  # a restarted server: its switch_number starts again
            self.before, self.pid = None, pid
        self.second = int(s.taken_at)
        self.samples.append((s, threads))

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


def summary(second, samples, target, pid=None, before=None):
    """One second of samples [(gil_state.Sample, [[tid, name, state, fib depth], ...])], as SecondPoster posts
    it; its hand-offs are counted from before (the previous second's last Sample) if given."""
    gil = samples[0][0].switch_number is not None
    rows = {}
    for _, threads in samples:
        for tid, name, _, depth in threads:
            row = rows.setdefault(tid, {"tid": tid, "name": name, "held": 0, "wait": 0, "fib_depth": 0})
            row["fib_depth"] = max(row["fib_depth"], depth)
    n, first, last = len(samples), before or samples[0][0], samples[-1][0]
    shares = held_and_waited(samples) if gil else {}
    for row in rows.values():
        if gil:
            row["held"], row["wait"] = shares[str(row["tid"])]
        else:
            del row["held"], row["wait"]
            row["on_cpu"] = on_cpu(first, last, row["tid"])
    windows, previous = [], first
    for k in range(round(1 / WINDOW_S)):
        inside = [(s, threads) for s, threads in samples if min(int((s.taken_at - second) / WINDOW_S), 4) == k]
        if inside:
            windows.append([round(second + k * WINDOW_S, 1), rounded(handoffs_per_s(previous, inside[-1][0])),
                            held_and_waited(inside) if gil else
                            {str(tid): on_cpu(previous, inside[-1][0], tid) for tid in inside[-1][0].threads}])
            previous = inside[-1][0]
    held_by_any = sum(any(state == HELD for _, _, state, _ in threads) for _, threads in samples)
    return {"second": second, "target": target, "pid": pid, "samples": n,
            "free": round(1 - held_by_any / n, 3) if gil else None, "handoffs": rounded(handoffs_per_s(first, last)),
            "threads": list(rows.values()), "windows": windows,
            "interpreters": interpreters_of([s for s, _ in samples if s.interpreters])}


def interpreters_of(samples):
    """{interpreter id (str, JSON's key): {samples, holders {tid: share}, handoffs_per_s}} of the subinterpreters
    with a GIL of their own seen in the gil_state Samples."""
    return {str(interp_id): {"samples": gil["samples"], "holders": {str(tid): round(share, 3) for tid, share in
                                                                     gil["holders"].items()},
                             "handoffs_per_s": rounded(gil["handoffs_per_s"])}
            for interp_id, gil in interpreter_gils(samples).items()}


def held_and_waited(samples):
    """{tid (str, JSON's key): [held, wait]}: each thread's shares of the samples [(Sample, threads)] (of a
    second, or of a window of it) in which it held the GIL and waited for it."""
    counts = {}
    for _, threads in samples:
        for tid, _, state, _ in threads:
            held_wait = counts.setdefault(str(tid), [0, 0])
            held_wait[0] += state == HELD
            held_wait[1] += state == WAIT
    return {tid: [round(held / len(samples), 3), round(wait / len(samples), 3)] for tid, (held, wait) in counts.items()}


def on_cpu(first, last, tid):
    """Thread tid's share of a CPU from Sample first to Sample last (no GIL: they hold cpu_s)."""
    seconds, now = last.taken_at - first.taken_at, last.cpu_s or {}
    if seconds <= 0 or tid not in now:
        return None
    return round((now[tid] - (first.cpu_s or {}).get(tid, 0.0)) / seconds, 3)


def rounded(value, digits=1):
    return None if value is None else round(value, digits)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clients.gil_sampler", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pid", type=common.positive_int, help="the process to read (default: the one "
                                                                "`python -m server` in this PID namespace)")
    parser.add_argument("--rate", type=float, default=100.0, help="GIL samples per second (default: 100)")
    parser.add_argument("--dump-rate", type=float, default=1.0, help="py-spy dumps per second, for the threads' "
                                                                     "names and fib depth; 0: none (default: 1)")
    parser.add_argument("--max-s", type=float, default=600.0, help="stop after this many seconds (default: 600)")
    parser.add_argument("--post", metavar="URL", help="live mode: POST each second's shares to URL (the Lab view's "
                                                       "/lab/gil) instead of printing one record at the end")
    parser.add_argument("--target", default="", help="live mode: the server's name, shown in the Lab view")
    args = parser.parse_args(argv)
    if not 0 < args.rate <= MAX_RATE_HZ or not 0 <= args.dump_rate <= MAX_DUMP_RATE_HZ or args.max_s <= 0:
        parser.error(f"--rate must be in (0, {MAX_RATE_HZ}], --dump-rate in [0, {MAX_DUMP_RATE_HZ}] and --max-s "
                     "above 0")
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.append(True))
    try:
        record = sample(args.rate, args.dump_rate, args.max_s, lambda: bool(stopping), args.pid,
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
