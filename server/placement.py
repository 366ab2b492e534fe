"""Where a server's threads and processes run, within the CPUs it was given: the lab decides, not the scheduler.

A rate of tiny requests (perf2) measures, above all, whether the thread that answers runs on the client's
CPU: on the development VM a bare ping-pong on one CPU ran 3 to 6 times as fast as across two, because
waking an idle CPU is slow (the wake-up cost: docs/runner.md). Left to the scheduler, the answering thread moves to the
client's CPU whenever its own gets busy (a long request, another job), and the rate jumps fourfold in
the middle of a comparison. So, with placement "fixed" (the default):

  - the main thread, and what it starts (the accept loop, an event loop, a pool's helper threads),
    runs on the server's first CPU;
  - a thread per connection runs on the server's CPU that serves the fewest connections, the first
    on a tie: one client (perf2) is answered on the first CPU, a second one at once (C4's second
    perf1, C6's long request) on the next;
  - pool workers run on the server's other CPUs when there are two or more of them, else on all its
    CPUs (they compute in parallel: C7), so that on three CPUs or more a long request never takes the
    answering thread's CPU (C8, C9);
  - prefork's children, which answer and compute, take the workers' CPUs, one each.

With the client on a CPU of its own (the lab's load CPU), every short request then crosses CPUs the
same way before, during and after a long one. Placement "free" leaves it all to the scheduler.
"""
import os
import threading
from contextlib import contextmanager

from server.cpusets import CAN_PIN, NO_PINNING, usable_cpus
from server.cpusets import format_cpuset as describe

FIXED, FREE = "fixed", "free"
ANSWER, WORKER = "answer", "pool-worker"  # thread names, as clients.thread_cpus reads them
CHOICES = (FIXED, FREE)

_cpus = []  # the server's CPUs, lowest first, once place_main() has run with FIXED; empty: free
_workers = set()  # where its pool workers run
_serving = {}  # CPU -> connections it serves now
_lock = threading.Lock()


def place_main(placement, cpus=None):
    """Pin the calling (main) thread to the first of `cpus` (default: the CPUs it may use now), and
    remember them for the threads and processes it starts. A text for the log: where things run. A host
    that cannot pin (macOS, Windows) serves as with placement free, and the text says so."""
    cpus = sorted(usable_cpus() if cpus is None else cpus)
    fixed = placement == FIXED and CAN_PIN
    _cpus[:] = cpus if fixed else []
    _workers.clear()
    _workers.update(worker_cpus(placement, cpus) if fixed else ())
    _serving.clear()
    if placement == FIXED and not fixed:
        return f"placement fixed: {NO_PINNING}; threads on CPUs {describe(cpus)}, wherever the scheduler puts them"
    if not fixed or len(cpus) < 2:
        return f"placement {placement}: threads on CPUs {describe(cpus)}"
    os.sched_setaffinity(0, {cpus[0]})
    return (f"placement fixed: main thread on CPU {cpus[0]}, each connection's thread on the CPU of "
            f"{describe(cpus)} serving the fewest, pool workers on {describe(_workers)}")


def worker_cpus(placement, cpus):
    """Where pool workers run: all but the first of `cpus` if that leaves two or more (FIXED), else all;
    their number is a pool's default size."""
    cpus = sorted(cpus)
    return set(cpus[1:]) if placement == FIXED and len(cpus) >= 3 else set(cpus)


def pool_cpus():
    """The CPUs a pool worker or a forked child may use (None: placement free, leave them as inherited)."""
    return set(_workers) or None



@contextmanager
def connection():
    """Around a connection's thread: pinned to the CPU serving the fewest connections while it serves."""
    if not _cpus:
        name_thread(ANSWER)
        yield
        return
    with _lock:
        cpu = fewest(_cpus, _serving)
        _serving[cpu] = _serving.get(cpu, 0) + 1
    try:
        os.sched_setaffinity(0, {cpu})
        name_thread(ANSWER)
        yield
    finally:
        with _lock:
            _serving[cpu] -= 1


def fewest(cpus, counts):
    """The CPU of `cpus` with the lowest count, the first of them on a tie."""
    return min(cpus, key=lambda cpu: (counts.get(cpu, 0), cpus.index(cpu)))


def spread(cpus):
    """In a pool worker (its initializer): run on `cpus` again, not on the first CPU it inherited."""
    name_thread(WORKER)
    if cpus:
        os.sched_setaffinity(0, cpus)


def name_thread(name):
    """The calling thread's name in /proc (ps, top, clients.thread_cpus): which threads answer, which compute."""
    try:
        with open("/proc/thread-self/comm", "w") as f:
            f.write(name)
    except OSError:  # not Linux, or no /proc: the names only help a reader
        pass
