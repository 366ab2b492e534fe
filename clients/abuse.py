"""abuse: the abuse battery. Each case misuses one server the way a broken or greedy client would,
and meanwhile a fresh client asks fib(20): it must be answered in under a second, during the case
and after it, and the abusive client must get what the protocol says (an ERR, a close, or its
replies in order).

A case is a context manager: entering it puts the abuse in place (connections held open, a flood
running); the fresh client asks while it is in place; leaving it checks what the abusive client got
(raising Misbehaved if it got something else) and closes everything. Every case is bounded in count
and time. tests/test_abuse.py runs every case against every strategy; docs/servers.md's reliability
table is `python -m clients.abuse --markdown`.
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable

from clients import common, process_memory
from server import limits, strategies
from server.protocol import MAX_REQUEST, fib_reply
from server.service import Service

DESCRIPTION = """\
Run the abuse battery against one server on loopback or a private network (the lab's compose
network): garbage, NUL bytes, non-ASCII digits, over-long lines, half-closes, resets mid-compute,
connect floods, slowloris clients, thousands of idle connections, clients that pipeline without
reading. During each case and after it, a fresh client asks fib(20) and must be answered within
--limit seconds. Start the server first (python -m server --strategy NAME).
With --strategy, a case that holds as many connections open as the strategy serves at once lets the
fresh client wait until the case ends, as the article says it must: """ + "; ".join(
    f"{name} serves {strategies.at_once(name, 'its --workers')}" for name in strategies.ALL
    if strategies.at_once(name, "its --workers")) + ".\n"

OUTPUT_HELP = """\
output:
  one line per case: its name, 'ok' or 'FAILED: <why>', and the fresh client's fib(20) time during
  the case and after it, in ms; several times when a late one was starved and asked again
  (--server-pid); 'waited' when the strategy serves that client only after the case; 'C13's convoy'
  when, after the case, it took turns for the GIL with thousands of ending threads
  with --json, a last line with one JSON object: tool, python, host, port, strategy, limit_s, cases (a
  list of {case, ok, why, during_s, waited, convoy, after_s}), started_at, ended_at
  exit status 1 if any case failed
"""

FRESH_N = 20
LIMIT_S = 1.0  # the fresh client's fib(20) takes milliseconds: a second means it waited for the abuse
FRESH_TIMEOUT_S = 10.0  # how long to keep waiting, to say how late a late reply was
# After thousands of connections close at once, a thread per connection server's threads all wake and take
# turns for the GIL: 1-3 s here (docs/servers.md), rarely over 10. The fresh client must be answered.
CONVOY_TIMEOUT_S = 30.0
ATTEMPTS = 3  # a late fresh request is asked again only if the server was starved (OtherLoad)
STARVED = 0.25  # ... that is, if other processes held this share of the machine's CPUs meanwhile
CONNECT_TIMEOUT_S = 10.0
SHORT = Service().threshold  # the longest request that the threshold strategies compute inline
IDLE_CONNECTIONS = 3000
TAKEN_IN_S = 3.0  # how long a server may take to accept them all and start a thread or task for each
FILES_NEEDED = IDLE_CONNECTIONS + limits.SPARE


class Misbehaved(Exception):
    """The server did something the protocol does not allow, or the abusive client got no answer."""


@dataclass(frozen=True)
class Case:
    name: str
    sends: str  # what the abusive client does, for the docs
    gets: str  # what it must get, for the docs
    holds: int  # connections it holds open while the fresh client asks
    convoy: bool  # it ends by closing thousands of connections at once
    abuse: Callable  # abuse((host, port)): a context manager


CASES: list[Case] = []


def case(sends, gets, holds=1, convoy=False):
    def register(function):
        CASES.append(Case(function.__name__.replace("_", "-"), sends, gets, holds, convoy, contextmanager(function)))
        return function
    return register


# ---------------------------------------------------------------- socket helpers


def connect(address, rcvbuf=None):
    """A connection; with `rcvbuf`, a receive buffer that small (set before connecting, so that the
    window the server sees is small too): unread replies push back on the server at once."""
    if rcvbuf is None:
        return socket.create_connection(address, timeout=CONNECT_TIMEOUT_S)
    sock = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(CONNECT_TIMEOUT_S)
    sock.connect(address)
    return sock


def reset(sock):
    """Close with an RST instead of a FIN, as a killed client would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_lines(sock, count, timeout=CONNECT_TIMEOUT_S):
    """The next `count` reply lines, without their newlines; Misbehaved if the server closes first."""
    data = b""
    sock.settimeout(timeout)
    while data.count(b"\n") < count:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise Misbehaved(f"no reply within {timeout:g} s after {data!r}") from None
        if not chunk:
            raise Misbehaved(f"closed after {data!r}, before {count} replies")
        data += chunk
    return data.split(b"\n")[:count]


def read_to_end(sock, timeout=CONNECT_TIMEOUT_S):
    """(everything until the server closes, True if it reset instead of closing)."""
    data = b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return data, True
    except TimeoutError:
        raise Misbehaved(f"not closed within {timeout:g} s; got {data[:200]!r}") from None
    return data, False


def expect(got, wanted):
    if got != wanted:
        raise Misbehaved(f"got {got!r}, not {wanted!r}")


def err(reason):
    return b"ERR " + reason.encode()


TOO_LONG = err(f"request longer than {MAX_REQUEST} bytes")
NOT_AN_INTEGER = err("not an integer")


def answer(n):
    return fib_reply(n).rstrip(b"\n")


def expect_close(sock, before=()):
    """The server sends these lines and closes: `before` are the lines it owes first."""
    data, was_reset = read_to_end(sock)
    wanted = b"".join(line + b"\n" for line in before)
    if data != wanted or was_reset:
        raise Misbehaved(f"got {data!r}{' and a reset' if was_reset else ''}, not {wanted!r} and a close")


# ---------------------------------------------------------------- the cases: bad input


@case("60 random bytes (no newline among them), no newline: a bare request", "ERR not an integer; open")
def garbage(address):
    with connect(address) as sock:
        sock.sendall(bytes(random.Random(15).choice(range(11, 256)) for _ in range(60)))
        yield
        expect(read_lines(sock, 1), [NOT_AN_INTEGER])
        expect(asks(sock, b"20\n"), [answer(20)])


@case("a line of random bytes, then 20", "ERR not an integer, then fib(20): the connection stays open")
def garbage_line(address):
    with connect(address) as sock:
        sock.sendall(bytes(random.Random(16).choice(range(11, 256)) for _ in range(60)) + b"\n20\n")
        yield
        expect(read_lines(sock, 2), [NOT_AN_INTEGER, answer(20)])


@case("NUL bytes: a bare one, then a line of them", "ERR not an integer, twice; open")
def nul_bytes(address):
    with connect(address) as sock:
        sock.sendall(b"\x00")
        expect(read_lines(sock, 1), [NOT_AN_INTEGER])
        sock.sendall(b"\x00" * 40 + b"\n")
        yield
        expect(read_lines(sock, 1), [NOT_AN_INTEGER])


@case("digits that are not ASCII: Arabic-Indic ٤٢, fullwidth ４２, superscript ²", "ERR not an integer, once per line")
def non_ascii_digits(address):
    lines = ["٤٢", "４２", "²"]
    with connect(address) as sock:
        sock.sendall("".join(line + "\n" for line in lines).encode())
        yield
        expect(read_lines(sock, len(lines)), [NOT_AN_INTEGER] * len(lines))


@case("what Python's int() would take: 1_0, +5, ' 4 2', 0x10, 1e3", "ERR not an integer, once per line")
def int_lookalikes(address):
    lines = [b"1_0", b"+5", b" 4 2", b"0x10", b"1e3"]
    with connect(address) as sock:
        sock.sendall(b"".join(line + b"\n" for line in lines))
        yield
        expect(read_lines(sock, len(lines)), [NOT_AN_INTEGER] * len(lines))


@case("-1, 41, and a 60-digit number", "ERR n must not be negative; ERR n=… is above the limit 40, twice")
def out_of_range(address):
    huge = b"9" * 60
    with connect(address) as sock:
        sock.sendall(b"-1\n41\n" + huge + b"\n")
        yield
        expect(read_lines(sock, 3), [err("n must not be negative"), err("n=41 is above the limit 40"),
                                     err(f"n={huge.decode()} is above the limit 40")])


@case("empty lines: \\n, \\r\\n, spaces", "ERR empty request, once per line")
def empty_lines(address):
    with connect(address) as sock:
        sock.sendall(b"\n\r\n   \n")
        yield
        expect(read_lines(sock, 3), [err("empty request")] * 3)


@case(f"a line of {MAX_REQUEST + 1} digits", f"ERR request longer than {MAX_REQUEST} bytes, and a close")
def over_long_line(address):
    with connect(address) as sock:
        sock.sendall(b"1" * (MAX_REQUEST + 1) + b"\n")
        yield
        expect_close(sock, [TOO_LONG])


@case("1\\n, then 100 digits that never end their line", "fib(1), ERR request longer than 64 bytes, a close")
def over_long_tail(address):
    with connect(address) as sock:
        sock.sendall(b"1\n" + b"7" * 100)
        yield
        expect_close(sock, [answer(1), TOO_LONG])


@case("a bare request of 10,000 digits, no newline", "ERRs, then a close (or a reset, when the server closes "
      "with digits still unread)")
def over_long_bare(address):
    with connect(address) as sock:
        sock.sendall(b"1" * 10_000)
        yield
        data, was_reset = read_to_end(sock)
        *lines, tail = data.split(b"\n")
        # A bare request is whatever one recv() returned: a short first chunk is a number above the limit.
        if tail or not all(line.startswith(b"ERR n=") for line in lines[:-1]) or \
                (lines[-1:] != [TOO_LONG] and not was_reset):
            raise Misbehaved(f"got {data[:300]!r}{' and a reset' if was_reset else ''}, not ERRs ending with "
                             f"{TOO_LONG!r}")


@case("20 one byte per send, 20 ms apart, after a first line", "fib(1), then fib(20)")
def split_request(address):
    with connect(address) as sock:
        sock.sendall(b"1\n")
        expect(read_lines(sock, 1), [answer(1)])
        for byte in b"20":
            sock.sendall(bytes([byte]))
            time.sleep(0.02)
        yield
        sock.sendall(b"\n")
        expect(read_lines(sock, 1), [answer(20)])


# ---------------------------------------------------------------- the cases: connections


@case("20\\n, then shuts its sending side (half-close)", "fib(20), then a close")
def half_close_after_request(address):
    with connect(address) as sock:
        sock.sendall(b"20\n")
        sock.shutdown(socket.SHUT_WR)
        yield
        expect_close(sock, [answer(20)])


@case("shuts its sending side at once, sends nothing", "a close, no reply")
def half_close_at_once(address):
    with connect(address) as sock:
        sock.shutdown(socket.SHUT_WR)
        yield
        expect_close(sock)


@case("32\\n (a quarter second of fib), then a reset 0.1 s into it", "nothing: the server drops it quietly",
      holds=0)
def reset_mid_compute(address):
    sock = connect(address)
    sock.sendall(b"32\n")
    time.sleep(0.1)
    reset(sock)
    yield


@case("32\\n, then a close 0.1 s into it, never reading the reply", "nothing: the server drops it quietly", holds=0)
def close_mid_compute(address):
    with connect(address) as sock:
        sock.sendall(b"32\n")
        time.sleep(0.1)
    yield


@case("20,000 pipelined 1\\n, then a reset without reading a reply", "nothing: the server drops it quietly", holds=0)
def reset_with_replies_unread(address):
    sock = connect(address)
    sock.sendall(b"1\n" * 20_000)
    reset(sock)
    yield


@case("2,000 connections in a row, each closed at once", "nothing", holds=0)
def connect_flood(address):
    for _ in range(2000):
        connect(address).close()
    yield


@case("2,000 connections in a row, each reset at once", "nothing", holds=0)
def reset_flood(address):
    for _ in range(2000):
        reset(connect(address))
    yield


@case("1,000 connections opened at once, then all closed", "nothing", holds=0)
def connect_burst(address):
    with ExitStack() as stack:
        for _ in range(1000):
            stack.enter_context(connect(address))
    yield


@case("200 slowloris clients: 1\\n, then a digit each every 50 ms, never ending the line; at the end "
      "70 more digits", "each: fib(1), then ERR request longer than 64 bytes and a close", holds=200)
def slowloris(address):
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(address)) for _ in range(200)]
        for sock in socks:
            sock.sendall(b"1\n")
        for _ in range(10):  # half a second of trickling
            for sock in socks:
                sock.sendall(b"3")
            time.sleep(0.05)
        yield
        for sock in socks:
            sock.sendall(b"3" * 70)
        for sock in socks:  # in order: a one-at-a-time server gets to each in turn
            expect_close(sock, [answer(1), TOO_LONG])


@case(f"{IDLE_CONNECTIONS:,} idle connections, then all closed at once", "the first is still served when it asks 20",
      holds=IDLE_CONNECTIONS, convoy=True)
def idle_connections(address):
    with ExitStack() as stack:
        socks = [stack.enter_context(connect(address)) for _ in range(IDLE_CONNECTIONS)]
        # In place once the server has taken them all in (a thread or a task each): the last one's fib(1)
        # is answered. A server that serves fewer at once (C1, C10) does not answer it: go on after a while.
        socks[-1].sendall(b"1\n")
        try:
            read_lines(socks[-1], 1, TAKEN_IN_S)
        except Misbehaved:
            pass
        yield
        expect(asks(socks[0], b"20\n"), [answer(20)])


class Flood:
    """Send `payload` `count` times on one connection from a thread, without reading, until all is sent,
    `seconds` have passed, or stop(). `started` is set once the first bytes went out."""

    CHUNK = 4096  # payloads per send()

    def __init__(self, address, payload, count, seconds=2.0, rcvbuf=None):
        self.sock = connect(address, rcvbuf)
        self.payload, self.count = payload, count
        self.sent = 0  # bytes
        self.started = threading.Event()
        self.deadline = time.monotonic() + seconds
        self.thread = threading.Thread(target=self.send, daemon=True)
        self.thread.start()

    def send(self):
        self.sock.settimeout(0.05)
        total = len(self.payload) * self.count
        chunk = memoryview(self.payload * self.CHUNK)
        while self.sent < total and time.monotonic() < self.deadline:
            offset = self.sent % len(chunk)  # the chunk is whole payloads: sending goes on where it stopped
            try:
                self.sent += self.sock.send(chunk[offset:offset + total - self.sent])
            except TimeoutError:  # the server stopped reading: back-pressure
                continue
            except OSError:
                return
            self.started.set()

    def replies(self, reply, seconds=0.5):
        """Read replies for `seconds`: each must be `reply`, in order. Returns how many."""
        self.sock.settimeout(seconds)
        data = b""
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline and (chunk := self.sock.recv(65536)):
                data += chunk
        except TimeoutError:
            pass
        lines = data.split(b"\n")[:-1]
        wrong = next((line for line in lines if line != reply), None)
        if wrong is not None:
            raise Misbehaved(f"got {wrong!r} among the replies, not {reply!r}")
        return len(lines)

    def stop(self):
        self.deadline = 0
        self.thread.join()
        reset(self.sock)


def flooding(address, payload, count, reply, rcvbuf=None):
    """A flood case: the flood runs while the fresh client asks; then every reply it reads must be `reply`."""
    flood = Flood(address, payload, count, rcvbuf=rcvbuf)
    try:
        time.sleep(0.2)
        yield
        flood.replies(reply)
    finally:
        flood.stop()


@case("pipelines 200,000 1\\n and does not read its replies (for at most 2 s), then reads for 0.5 s",
      "fib(1) for each request it reads a reply to, in order; it alone waits while it does not read")
def pipeline_flood(address):
    yield from flooding(address, b"1\n", 200_000, answer(1))


@case(f"pipelines 100,000 {SHORT}\\n (fib({SHORT}), the longest short request of the threshold strategies) "
      "without reading (for at most 2 s), then reads for 0.5 s",
      f"fib({SHORT}) for each request it reads a reply to, in order")
def short_request_flood(address):
    yield from flooding(address, b"%d\n" % SHORT, 100_000, answer(SHORT))


@case("pipelines 200,000 1\\n with a 4 KiB receive buffer and does not read (for at most 2 s), then reads "
      "for 0.5 s", "fib(1) for each request it reads a reply to, in order; it alone waits while it does not read")
def no_read_flood(address):
    yield from flooding(address, b"1\n", 200_000, answer(1), rcvbuf=4096)


@case("pipelines 100,000 lines of garbage without reading (for at most 2 s), then reads for 0.5 s",
      "ERR not an integer for each, in order")
def err_flood(address):
    yield from flooding(address, b"x\n", 100_000, NOT_AN_INTEGER)


@case("asks 1 and reads the reply, over and over, as fast as it can (for the case)", "fib(1) every time")
def busy_client(address):
    stop = threading.Event()
    errors = []

    def ask_forever():
        with connect(address) as sock:
            for _ in range(1_000_000):  # bounded; stopped long before
                if stop.is_set():
                    return
                got = asks(sock, b"1\n")
                if got != [answer(1)]:
                    errors.append(got)
                    return

    thread = threading.Thread(target=ask_forever, daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        yield
    finally:
        stop.set()
        thread.join(CONNECT_TIMEOUT_S)
    if errors:
        raise Misbehaved(f"got {errors[0]!r}, not {[answer(1)]!r}")


def asks(sock, request):
    sock.sendall(request)
    return read_lines(sock, request.count(b"\n"))


# ---------------------------------------------------------------- running a case


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
        times = process_memory.machine_times()
        busy = sum(times[name] for name in ("user", "nice", "system", "irq", "softirq", "steal"))
        server = 0
        for pid in process_memory.tree(self.server_pid, process_memory.processes()):
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


BEGIN = "<!-- abuse cases: generated by 'python -m clients.abuse --markdown'; do not edit -->"
END = "<!-- end of abuse cases -->"


def markdown():
    """The docs' table of the cases: what the abusive client does and what it gets."""
    rows = [BEGIN, "| case | the abusive client | it gets |", "|---|---|---|"]
    rows += [f"| `{one.name}` | {one.sends} | {one.gets} |" for one in CASES]
    return "\n".join([*rows, END])


# ---------------------------------------------------------------- the command


def parse_args(argv=None):
    parser = common.make_parser("abuse", DESCRIPTION, OUTPUT_HELP, network=True)
    parser.add_argument("--case", action="append", choices=[one.name for one in CASES], metavar="NAME",
                        help="run only this case (repeatable; default: all): " + ", ".join(one.name for one in CASES))
    parser.add_argument("--strategy", choices=list(strategies.ALL),
                        help="the server's strategy: one that serves a limited number of clients at once "
                        "may serve the fresh client after a case that holds them all")
    parser.add_argument("--workers", type=common.positive_int, default=2,
                        help="the server's --workers, for a strategy that serves that many at once "
                        "(default: %(default)s)")
    parser.add_argument("--server-pid", type=common.positive_int, metavar="PID",
                        help="the server's process (Linux): a late fresh request is measured again while the "
                        "server's threads were starved of CPU by the rest of the machine (default: never again)")
    parser.add_argument("--limit", type=common.positive_float, default=LIMIT_S,
                        help="seconds the fresh client's fib(20) may take (default: %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--markdown", action="store_true", help="print the cases as the docs' table and exit")
    return parser.parse_args(argv)


def check_target(host):
    """Abuse only loopback or a private network (the lab's own): never somebody else's server."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as error:
        raise common.ClientError(common.EXIT_NETWORK, f"cannot resolve {host}: {error.strerror}") from None
    public = sorted(a for a in addresses if not (ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_private))
    if public:
        raise common.ClientError(common.EXIT_BAD_ARGUMENTS,
                                 f"{host} is {public[0]}: the battery runs only against loopback or a private "
                                 "network (the lab's own servers)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list or args.markdown:
        common.print_line(markdown() if args.markdown else "\n".join(f"{c.name}: {c.sends}" for c in CASES))
        return common.EXIT_OK
    check_target(args.host)
    enough_files()
    started_at = common.epoch_now()
    common.connect(args.host, args.port, args.timeout).close()  # a clear error if nothing listens
    others = OtherLoad(args.server_pid) if args.server_pid else None
    outcomes = []
    for one in [c for c in CASES if not args.case or c.name in args.case]:
        outcome = run_case(one, (args.host, args.port), args.limit, args.strategy, args.workers, others)
        outcomes.append(outcome)
        during = "waited " if outcome.waited else ""
        convoy = " (a thread per connection: C13's convoy)" if outcome.convoy else ""
        during += "/".join(f"{s * 1000:.0f}" for s in outcome.during_s) or "-"
        after = "/".join(f"{s * 1000:.0f}" for s in outcome.after_s) or "-"
        common.print_line(f"{one.name:28} {'ok' if outcome.ok else 'FAILED: ' + outcome.why}  "
                          f"fib({FRESH_N}) during {during} ms, after {after} ms{convoy}")
    if args.json:
        common.print_experiment_json("abuse", started_at, host=args.host, port=args.port, strategy=args.strategy,
                                     limit_s=args.limit, cases=[{**vars(o), "ok": o.ok} for o in outcomes])
    return common.EXIT_OK if all(o.ok for o in outcomes) else common.EXIT_FAILED


if __name__ == "__main__":
    common.run_tool("abuse", main)
