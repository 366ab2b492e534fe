"""Small raw-socket helpers for tests: the article's client code, with timeouts so no test hangs."""
import socket

from clients.abuse import reset  # noqa: F401 - the tests' RST close is the battery's

TIMEOUT_S = 20


def connect(server, timeout=TIMEOUT_S):
    sock = socket.create_connection(server.address, timeout=timeout)
    return sock


def read_lines(sock, count):
    """Read until `count` newline-terminated replies have arrived; return them joined."""
    data = b""
    while data.count(b"\n") < count:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def ask(sock, request, replies=1):
    sock.sendall(request)
    return read_lines(sock, replies)



def no_reply_within(sock, seconds):
    sock.settimeout(seconds)
    try:
        data = sock.recv(100)
    except TimeoutError:
        return True
    finally:
        sock.settimeout(TIMEOUT_S)
    raise AssertionError(f"expected no reply within {seconds} s, got {data!r}")
