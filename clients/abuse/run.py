"""Running one case of the abuse battery: a fresh client's fib(20) timed while the case is in place and
after it, measured again when the machine, not the abuse, starved it."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field

from clients import common, procfs
from clients.abuse.cases import IDLE_CONNECTIONS, Case
from clients.abuse.sockets import CONNECT_TIMEOUT_S, Misbehaved, answer, expect, read_lines
from server import limits, strategies

FRESH_N = 20
LIMIT_S = 1.0  # the fresh client's fib(20) takes milliseconds: a second means it waited for the abuse
FRESH_TIMEOUT_S = 10.0  # how long to keep waiting, to say how late a late reply was
# After thousands of connections close at once, a thread per connection server's threads all wake and take
# turns for the GIL: 1-3 s here (docs/servers.md), rarely over 10. The fresh client must be answered.
CONVOY_TIMEOUT_S = 30.0
ATTEMPTS = 3  # a late fresh request is asked again only if the server was starved (OtherLoad)
STARVED = 0.25  # ... that is, if other processes held this share of the machine's CPUs meanwhile
FILES_NEEDED = IDLE_CONNECTIONS + limits.SPARE


@dataclass
class Outcome:
    case: str
    why: str | None = None  # None: the case went as the protocol says
    during_s: list[float] = field(default_factory=list)  # the fresh client's fib(20) times during the case
    waited: bool = False  # the strategy serves the fresh client only after the case (strategies.at_once)
    convoy: bool = False  # after the case, the fresh client's thread took turns for the GIL with thousands
    after_s: list[float] = field(default_factory=list)  # and after it

    @property
    def ok(self):
        return self.why is None


class Fresh:
    """A fresh client's fib(20): sent now, timed until its reply."""

    def __init__(self, address):
        self.started = time.perf_counter()
        self.sock = socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
        self.sock.sendall(b"%d\n" % FRESH_N)

    def seconds(self, since=None, timeout=FRESH_TIMEOUT_S):
        """Seconds from `since` (default: the send) to the reply; Misbehaved if it is wrong or does not come
        within `timeout`."""
        try:
            expect(read_lines(self.sock, 1, timeout), [answer(FRESH_N)])
            return time.perf_counter() - (since or self.started)
        finally:
            self.sock.close()


def fresh_seconds(address, limit=LIMIT_S):
    return Fresh(address).seconds(timeout=max(limit, FRESH_TIMEOUT_S))


class OtherLoad:
    """The share of the machine's CPUs that went to processes other than the server's and this one's
    (Linux: /proc/stat, /proc/PID/stat), and to the hypervisor (steal). A fresh request that took long
    while others held the CPUs was starved by a busy machine, not stalled by the abuse: it is measured
    again. A server slow of its own doing (its loop busy, its threads fighting for the GIL) is not."""

    def __init__(self, server_pid):
        self.server_pid = server_pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def reading(self):
        """(monotonic s, machine busy CPU-s, server tree CPU-s, this process's CPU-s)."""
        times = procfs.machine_times()
        busy = sum(times[name] for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        server = 0
        for pid in procfs.tree(self.server_pid, procfs.processes()):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    server += sum(map(int, f.read().rsplit(")", 1)[1].split()[11:15]))  # u, s, cu, cs time
            except (FileNotFoundError, ProcessLookupError):
                continue
        own = os.times()
        return (time.monotonic(), busy / self.ticks, server / self.ticks,
                own.user + own.system)

    def share_since(self, before):
        now = self.reading()
        wall, busy, server, own = (after - then for after, then in zip(now, before))
        return max(0.0, busy - server - own) / (wall * os.cpu_count())


def timed_fresh(address, limit, others=None):
    """A fresh client's fib(20) times: one, or up to ATTEMPTS while each late one was starved (others)."""
    times = []
    while len(times) < ATTEMPTS:
        before = others.reading() if others else None
        times.append(fresh_seconds(address, limit))
        if times[-1] < limit or others is None or others.share_since(before) < STARVED:
            break
    return times


def run_case(one: Case, address, limit=LIMIT_S, strategy=None, workers=2, others=None) -> Outcome:
    """Run one case; a fresh client asks fib(20) while it is in place and after it, each in under
    `limit` (measured again only when starved: timed_fresh). Given the server's strategy, two things
    are as the article says: a strategy that serves `at_once` clients at once (C1, C10) serves the fresh
    client after a case that holds as many (timed from the end of the case); and a thread per connection
    (C13) makes the fresh client wait, after a case that closes thousands of connections at once, for
    their threads to take their turns for the GIL (it must be answered, within CONVOY_TIMEOUT_S)."""
    serves = None if strategy is None else strategies.at_once(strategy, workers)
    outcome = Outcome(one.name, waited=serves is not None and one.holds >= serves,
                      convoy=one.convoy and strategy is not None and strategies.thread_per_connection(strategy))
    try:
        with one.abuse(address):
            if outcome.waited:
                queued = Fresh(address)  # in the backlog until the case lets go
            else:
                outcome.during_s = timed_fresh(address, limit, others)
        ended = time.perf_counter()  # the case has checked its client's replies and let go of it
        if outcome.waited:
            outcome.during_s = [queued.seconds(since=ended)]
        outcome.after_s = timed_fresh(address, CONVOY_TIMEOUT_S if outcome.convoy else limit, others)
    except (Misbehaved, OSError) as error:
        outcome.why = f"{type(error).__name__}: {error}" if isinstance(error, OSError) else str(error)
        return outcome
    for when, times in (("during", outcome.during_s), ("after", [] if outcome.convoy else outcome.after_s)):
        if times and times[-1] >= limit:
            outcome.why = (f"the fresh client's fib({FRESH_N}) took {', '.join(f'{t:.3f}' for t in times)} s "
                           f"{when} the case")
            break
    return outcome


def enough_files(needed=FILES_NEEDED):
    """The limit on open files raised for `needed` (the idle-connections case's, by default), or a ClientError
    (common.enough_files). A server started afterwards inherits it."""
    common.enough_files(needed)
