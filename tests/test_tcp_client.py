"""The clients' side of the wire, over real loopback sockets against a tiny scripted responder thread.

clients/common.py (FibConnection, request_payload, check_fib_reply) runs in pytest's own process;
locustfiles/_tcp.py's TcpClient runs in a child process that has imported Locust (tests/locust_child.py:
Locust's import monkey-patches the process it runs in), against the same responder in this process.
"""
import socket
import struct
import threading
import time

import pytest

from clients.common import (EXIT_BAD_REPLY, EXIT_DROPPED, EXIT_ERR_REPLY, EXIT_REFUSED, EXIT_TIMEOUT, ClientError,
                            FibConnection, check_fib_reply, request_payload)
from locust_child import in_locust  # noqa: F401 (the fixture)

pytestmark = pytest.mark.fast

HOST = "127.0.0.1"
# How long a test waits for a reply it is sure to get, and the responder for a client.
IO_TIMEOUT_S = 10.0
# A client's limit in the tests of its timeout: the responder never replies.
SHORT_TIMEOUT_S = 0.2
# Between the chunks of one reply, so that each goes out in a segment of its own.
SPLIT_PAUSE_S = 0.05
ACCEPT_POLL_S = 0.1
# The most bytes the responder reads for one echo request.
MAX_ECHO_BYTES = 64 << 20

# What the responder does instead of sending bytes (see Responder).
CLOSE, RESET, SILENT, ECHO = "close", "reset", "silent", "echo"
FIB_30 = [b"832040\n"]
SPLIT_FIB_30 = [b"83", b"20", b"40\n"]


class Responder:
    """A scripted server on 127.0.0.1 that answers one connection after another, in one thread.

    serve(*connections): each connection is a list of replies, one per request received (one recv);
    a reply is a list of steps: bytes are sent (SPLIT_PAUSE_S apart), CLOSE closes the connection, RESET
    closes it with a reset, SILENT sends nothing and waits for the client to leave, ECHO reads on to the
    request's newline and sends it all back. After its last reply a connection is closed.
    """

    def __init__(self):
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(ACCEPT_POLL_S)
        self.port = self.listener.getsockname()[1]
        self.where = f"{HOST}:{self.port}"
        self.received = []  # for each connection, the requests it received
        self.errors = []
        self.stopping = threading.Event()
        self.thread = None

    def serve(self, *connections):
        self.thread = threading.Thread(target=self.run, args=(connections,), daemon=True)
        self.thread.start()

    def wait(self):
        """The requests received on each connection, once every planned connection is over."""
        self.thread.join(timeout=IO_TIMEOUT_S * 2)
        assert not self.thread.is_alive(), "the responder is still serving"
        assert not self.errors, f"the responder failed: {self.errors!r}"
        return self.received

    def stop(self):
        """Stop waiting for connections; the responder's own failure, if any, fails the test."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=IO_TIMEOUT_S * 2)
        self.listener.close()
        assert not self.errors, f"the responder failed: {self.errors!r}"

    def run(self, connections):
        try:
            for replies in connections:
                connection = self.accept()
                with connection:
                    self.answer(connection, replies)
        except Exception as error:  # reported by wait()
            self.errors.append(error)

    def accept(self):
        deadline = time.monotonic() + IO_TIMEOUT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            connection.settimeout(IO_TIMEOUT_S)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return connection
        raise TimeoutError("no client connected")

    def answer(self, connection, replies):
        requests = []
        self.received.append(requests)
        for reply in replies:
            request = connection.recv(4096)
            if not request:
                return
            requests.append(request)
            if not self.reply(connection, request, reply):
                return

    def reply(self, connection, request, steps):
        """Carry out one reply's steps; False if the connection is to end."""
        sent_before = False
        for step in steps:
            if step == CLOSE:
                return False
            if step == RESET:
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            if step == SILENT:
                for _ in range(100):  # each recv bounded by the socket's timeout
                    if not connection.recv(4096):
                        break
                return False
            if step == ECHO:
                time.sleep(SPLIT_PAUSE_S)  # let the client's send fill the socket's buffers first
                connection.sendall(self.read_line(connection, request))
                continue
            if sent_before:
                time.sleep(SPLIT_PAUSE_S)
            connection.sendall(step)
            sent_before = True
        return True

    def read_line(self, connection, start):
        chunks, size = [start], len(start)
        while not chunks[-1].endswith(b"\n") and size < MAX_ECHO_BYTES:
            chunk = connection.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        line = b"".join(chunks)
        self.received[-1][-1] = line
        return line


@pytest.fixture
def responder():
    responder = Responder()
    yield responder
    responder.stop()


def ask(responder, payload, timeout=IO_TIMEOUT_S):
    """FibConnection.ask(payload) on a new connection to the responder."""
    with FibConnection(HOST, responder.port, timeout) as connection:
        return connection.ask(payload)


def client_error(function, *args):
    """The ClientError that function(*args) raises, as (exit code, message)."""
    with pytest.raises(ClientError) as raised:
        function(*args)
    return raised.value.exit_code, str(raised.value)


# ---------------------------------------------------------------- request_payload, check_fib_reply


@pytest.mark.parametrize("n, newline, payload", [
    (30, False, b"30"), (30, True, b"30\n"), (0, False, b"0"), ("41", True, b"41\n"), ("x", False, b"x")])
def test_request_payload_is_the_bare_number_or_a_line(n, newline, payload):
    assert request_payload(n, newline) == payload


@pytest.mark.parametrize("n, reply", [(30, b"832040"), (0, b"0"), (1, b"1"), (40, b"102334155")])
def test_check_fib_reply_returns_the_number_of_a_right_reply(n, reply):
    assert check_fib_reply(n, reply) == int(reply)


@pytest.mark.parametrize("n, reply, message", [
    (30, b"832041", "wrong reply b'832041' to fib(30): expected 832040"),
    (30, b"0832040", "wrong reply b'0832040' to fib(30): expected 832040"),
    (2, b"2", "wrong reply b'2' to fib(2): expected 1"),
    (30, b"832040\n", "unexpected reply b'832040\\n' to fib(30)"),
    (30, b"", "unexpected reply b'' to fib(30)"),
    (30, b"-832040", "unexpected reply b'-832040' to fib(30)"),
    (30, b"ERR busy", "unexpected reply b'ERR busy' to fib(30)"),
])
def test_check_fib_reply_refuses_anything_but_fib_n(n, reply, message):
    assert client_error(check_fib_reply, n, reply) == (EXIT_BAD_REPLY, message)


# ---------------------------------------------------------------- FibConnection over a real socket


@pytest.mark.parametrize("reply", [FIB_30, SPLIT_FIB_30, [b"832040\r\n"], [b"8", b"3", b"2", b"0", b"4", b"0", b"\n"]],
                         ids=["whole", "in-three-sends", "crlf", "byte-by-byte"])
def test_fib_connection_returns_the_reply_line_without_its_newline(responder, reply):
    responder.serve([reply])
    assert ask(responder, b"30") == b"832040"
    assert responder.wait() == [[b"30"]]


def test_fib_connection_asks_many_times_on_one_connection_in_order(responder):
    responder.serve([[b"1\n"], SPLIT_FIB_30, [b"55\n"]])
    with FibConnection(HOST, responder.port, IO_TIMEOUT_S) as connection:
        replies = [connection.ask(payload) for payload in (b"1\n", b"30\n", b"10\n")]
    assert replies == [b"1", b"832040", b"55"]
    assert responder.wait() == [[b"1\n", b"30\n", b"10\n"]]


def test_finish_reads_the_rest_of_a_line_its_first_recv_cut_short(responder):
    """perf2's path: its own recv(), then finish() only for a reply that is not the expected one."""
    responder.serve([FIB_30])
    with FibConnection(HOST, responder.port, IO_TIMEOUT_S) as connection:
        connection.sock.send(b"30")
        first = connection.sock.recv(2)  # a reply split in transit, made certain
        assert (first, connection.finish(b"30", first)) == (b"83", b"832040")


def test_a_wrong_reply_over_the_socket_is_detected(responder):
    responder.serve([[b"832041\n"]])
    assert client_error(check_fib_reply, 30, ask(responder, b"30\n")) == (
        EXIT_BAD_REPLY, "wrong reply b'832041' to fib(30): expected 832040")


@pytest.mark.parametrize("reply", [[b"ERR n=41 is above the limit 40\n"], [b"ERR n=41 is ab", b"ove the limit 40\n"]],
                         ids=["whole", "split"])
def test_an_err_reply_is_the_lab_s_client_error_with_the_server_s_reason(responder, reply):
    responder.serve([reply])
    assert client_error(ask, responder, b"41\n") == (
        EXIT_ERR_REPLY, "server replied: ERR n=41 is above the limit 40 (request was b'41\\n')")


@pytest.mark.parametrize("reply, got", [([CLOSE], b""), ([b"8320", CLOSE], b"8320"), ([b"83", b"20", CLOSE], b"8320")],
                         ids=["nothing", "part", "parts"])
def test_a_connection_closed_before_a_full_reply_is_reported_as_dropped(responder, reply, got):
    responder.serve([reply])
    assert client_error(ask, responder, b"30") == (
        EXIT_DROPPED, f"connection to {responder.where} closed by the server before a full reply (got {got!r})")


@pytest.mark.parametrize("reply", [[RESET], [b"83", RESET]], ids=["at-once", "after-part"])
def test_a_connection_reset_before_the_reply_is_reported_as_dropped(responder, reply):
    responder.serve([reply])
    assert client_error(ask, responder, b"30") == (
        EXIT_DROPPED, f"connection to {responder.where} was reset by the server before its reply")


@pytest.mark.parametrize("reply", [[SILENT], [b"83", SILENT]], ids=["nothing", "after-part"])
def test_no_reply_within_the_timeout_is_reported_as_a_timeout(responder, reply):
    responder.serve([reply])
    assert client_error(ask, responder, b"30", SHORT_TIMEOUT_S) == (
        EXIT_TIMEOUT, f"no reply from {responder.where} within {SHORT_TIMEOUT_S:g} s")


def test_a_port_where_nothing_listens_is_reported_as_refused():
    with socket.socket() as bound_only:  # bound and not listening: a connection to it is refused
        bound_only.bind((HOST, 0))
        port = bound_only.getsockname()[1]
        assert client_error(FibConnection, HOST, port, IO_TIMEOUT_S) == (
            EXIT_REFUSED, f"connection refused by {HOST}:{port} (is a server running there?)")


# ---------------------------------------------------------------- locustfiles/_tcp.py's TcpClient


def tcp_requests(port, requests, timeout):
    """Runs in the Locust child: one TcpClient asks each request in turn, ("fib", n) or ("echo", bytes); the
    result is, for each, whether request() said it succeeded and what it reported to Locust's request event."""
    import _tcp
    from locust.event import Events

    events = Events()
    reported = []
    events.request.add_listener(lambda **fields: reported.append(fields))
    client = _tcp.TcpClient(f"tcp://127.0.0.1:{port}", events.request, timeout)
    make = {"fib": _tcp.fib_request, "echo": _tcp.echo_request}
    try:
        succeeded = [client.request(*make[kind](argument)) for kind, argument in requests]
    finally:
        client.close()
    return [{"succeeded": ok, "name": event["name"], "request_type": event["request_type"],
             "response_length": event["response_length"],
             "exception": event["exception"] and f"{type(event['exception']).__name__}: {event['exception']}",
             "response_time_is_float_ms": isinstance(event["response_time"], float),
             "context_is_shared": event["context"] is _tcp.NO_CONTEXT}
            for ok, event in zip(succeeded, reported, strict=True)]


def reported(name, response_length=0, exception=None):
    """What tcp_requests() returns for one request."""
    return {"succeeded": exception is None, "name": name, "request_type": "TCP", "response_length": response_length,
            "exception": exception, "response_time_is_float_ms": True, "context_is_shared": True}


def test_tcp_client_reads_a_reply_split_across_sends(responder, in_locust):
    responder.serve([FIB_30, SPLIT_FIB_30, [b"1\n"]])
    assert in_locust(tcp_requests, responder.port, [("fib", 30), ("fib", 30), ("fib", 1)], IO_TIMEOUT_S) == [
        reported("fib(30)", 7), reported("fib(30)", 7), reported("fib(1)", 2)]
    assert responder.wait() == [[b"30\n", b"30\n", b"1\n"]]


def test_tcp_client_reports_a_wrong_reply_and_asks_the_next_on_a_new_connection(responder, in_locust):
    responder.serve([[b"832041\n"]], [FIB_30])
    assert in_locust(tcp_requests, responder.port, [("fib", 30), ("fib", 30)], IO_TIMEOUT_S) == [
        reported("fib(30)", 7, "RequestFailed: unexpected reply '832041' to b'30\\n'"), reported("fib(30)", 7)]
    assert responder.wait() == [[b"30\n"], [b"30\n"]]


@pytest.mark.parametrize("reply, length, message", [
    ([b"ERR n=41 is above the limit 40\n"], 31, "server replied: ERR n=41 is above the limit 40"),
    ([b"8320", CLOSE], 0, "connection to {where} closed by the server before a full reply"),
    ([CLOSE], 0, "connection to {where} closed by the server before a full reply"),
    ([RESET], 0, "connection to {where} reset by the server"),
    ([b"83", SILENT], 0, f"no reply from {{where}} within {SHORT_TIMEOUT_S:g} s"),
], ids=["err", "closed-after-part", "closed", "reset", "timeout"])
def test_tcp_client_reports_a_failed_request_by_what_ended_it(responder, in_locust, reply, length, message):
    responder.serve([reply])
    failure = "RequestFailed: " + message.format(where=responder.where)
    assert in_locust(tcp_requests, responder.port, [("fib", 41)], SHORT_TIMEOUT_S) == [
        reported("fib(41)", length, failure)]
    assert responder.wait() == [[b"41\n"]]


def test_tcp_client_reports_a_refused_connection_and_tries_again_next_time(in_locust):
    with socket.socket() as bound_only:
        bound_only.bind((HOST, 0))
        port = bound_only.getsockname()[1]
        refused = reported("fib(1)", 0, f"RequestFailed: connection refused by {HOST}:{port}")
        assert in_locust(tcp_requests, port, [("fib", 1), ("fib", 1)], IO_TIMEOUT_S) == [refused, refused]


def test_tcp_client_sends_an_echo_payload_larger_than_the_socket_buffers(responder, in_locust):
    size = 4 << 20
    responder.serve([[ECHO]])
    assert in_locust(tcp_requests, responder.port, [("echo", size)], IO_TIMEOUT_S) == [
        reported(f"echo {size} B", size)]
    assert responder.wait() == [[b"x" * (size - 1) + b"\n"]]


def parsed_tcp_urls(urls):
    """Runs in the Locust child: _tcp.parse_tcp_url() of each URL, or its error."""
    import _tcp

    results = []
    for url in urls:
        try:
            results.append(list(_tcp.parse_tcp_url(url)))
        except ValueError as error:
            results.append(str(error))
    return results


def test_tcp_client_targets_are_tcp_urls_or_name_and_port(in_locust):
    good = ["tcp://127.0.0.1:25000", "server:25001", " tcp://fib-server:1 "]
    bad = ["http://x:1", "tcp://x", "x:port", "tcp://:25000", "", None]
    assert in_locust(parsed_tcp_urls, good + bad) == [["127.0.0.1", 25000], ["server", 25001], ["fib-server", 1]] + [
        f"the host must be tcp://NAME:PORT, got {url!r}" for url in bad]
