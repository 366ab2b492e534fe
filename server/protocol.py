"""The wire protocol, written once for every strategy.

Framing rule (see README, "The wire protocol"):
- A request is a decimal number. It ends at "\\n" (a "\\r" before it is ignored).
- A connection that has never sent a "\\n" is a bare-number client, like the article's perf1/perf2:
  whatever one recv() returned is one whole request.
- Once a connection has sent a "\\n", it is a line client (nc, telnet, pipelining): an unterminated tail
  waits for the rest of its line.
- Every request gets exactly one reply, in order: the result and "\\n", or "ERR <reason>\\n".
- A request longer than MAX_REQUEST bytes gets an ERR and the connection is closed, so that no
  client can make the server buffer without bound.
"""
from typing import NamedTuple

MAX_REQUEST = 64
PORT = 25000  # where a server listens, and a client connects, unless told otherwise


class Refusal(NamedTuple):
    """A request the server answers with an error instead of computing it."""
    reply: bytes
    close: bool = False


def refuse(reason, close=False):
    return Refusal(b"ERR " + reason.encode() + b"\n", close)


TOO_LONG = refuse(f"request longer than {MAX_REQUEST} bytes", close=True)


def fib_reply(n):
    """The reply the server owes to request n: fib(n) in decimal and a newline, fib(0) = 0, fib(1) =
    fib(2) = 1. Computed by iteration, so that a client checks a reply at no cost; the server computes
    the same number the article's slow way (server.handlers)."""
    previous, current = 0, 1
    for _ in range(n):
        previous, current = current, previous + current
    return b"%d\n" % previous


class LineFramer:
    """Turns one connection's byte stream into numbers (requests) and Refusals."""

    def __init__(self, max_n):
        self.max_n = max_n
        self.pending = b""
        self.line_mode = False

    def feed(self, data):
        data = self.pending + data
        if b"\n" in data:
            self.line_mode = True
            *lines, self.pending = data.split(b"\n")
        elif self.line_mode:
            lines, self.pending = [], data
        else:
            lines, self.pending = [data], b""
        requests = [self.parse(line) for line in lines]
        if len(self.pending) > MAX_REQUEST:
            requests.append(TOO_LONG)
        return requests

    def parse(self, line):
        if len(line) > MAX_REQUEST:
            return TOO_LONG
        text = line.strip()
        if text.isdigit():
            n = int(text)
            return n if n <= self.max_n else refuse(f"n={n} is above the limit {self.max_n}")
        if text[:1] == b"-" and text[1:].isdigit():
            return refuse("n must not be negative")
        return refuse("empty request" if not text else "not an integer")


class ChunkFramer:
    """Echo: every chunk received is one request, returned unchanged."""

    def feed(self, data):
        return [data]
