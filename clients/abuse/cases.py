"""The abuse battery's cases, in the order they run and the docs list them. Each is registered by
@case as a context manager: entering it puts the abuse in place, leaving it checks what the abusive
client got (raising Misbehaved if it got something else) and closes everything."""

from __future__ import annotations

import random
import socket
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable

from clients.abuse.sockets import (CONNECT_TIMEOUT_S, NOT_AN_INTEGER, TOO_LONG, Misbehaved, answer, asks, connect,
                                   err, expect, expect_close, read_lines, read_to_end, reset)
from server.protocol import MAX_REQUEST
from server.service import Service

SHORT = Service().threshold  # the longest request that the threshold strategies compute inline
IDLE_CONNECTIONS = 3000
TAKEN_IN_S = 3.0  # how long a server may take to accept them all and start a thread or task for each


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


# ---------------------------------------------------------------- the docs' table of the cases


BEGIN = "<!-- abuse cases: generated by 'python -m clients.abuse --markdown'; do not edit -->"
END = "<!-- end of abuse cases -->"


def markdown():
    """The docs' table of the cases: what the abusive client does and what it gets."""
    rows = [BEGIN, "| case | the abusive client | it gets |", "|---|---|---|"]
    rows += [f"| `{one.name}` | {one.sends} | {one.gets} |" for one in CASES]
    return "\n".join([*rows, END])
