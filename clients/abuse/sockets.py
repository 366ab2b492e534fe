"""The abuse battery's socket helpers: connections, resets, reading replies, and what the protocol's
replies look like."""

from __future__ import annotations

import socket
import struct

from server.protocol import MAX_REQUEST, fib_reply

CONNECT_TIMEOUT_S = 10.0


class Misbehaved(Exception):
    """The server did something the protocol does not allow, or the abusive client got no answer."""


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


def asks(sock, request):
    sock.sendall(request)
    return read_lines(sock, request.count(b"\n"))
