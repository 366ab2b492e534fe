"""The lab's raw-TCP client and Locust user, shared by every scenario locustfile.

Not a locustfile itself: the leading underscore keeps `locust -f locustfiles/` from loading it as one,
so it is imported (and its listeners registered) exactly once.

- One request is one send and one reply line, timed with time.perf_counter() and reported through
  Locust's request event with a float response time in milliseconds.
- The target is Locust's host, written tcp://NAME:PORT (NAME:PORT is accepted too), and only one of the
  lab's own (_targets): the client connects to no other, sends nothing, and reports that once.
- An ERR reply, a wrong reply, a timeout, a dropped or refused connection is a failure with a
  message that names it; the connection is then closed and the next request opens a new one.
- Closed loop (default): each user sends its next request as soon as the reply arrives.
  Open loop (--rate R): each user sends R requests per second on a fixed schedule, and a request
  held back by a slow reply runs from the time it was due, so that a stalled server is charged for
  every request it delayed (coordinated omission corrected, as wrk2 does).
- Every response time also goes into an HDR histogram (_latency.py).
- The lab's options (LAB_OPTIONS below) show in the web UI; `locust --help` prints its help before
  it loads any locustfile, so it does not list them.
"""

import logging
import random
import socket
import time
import types

import gevent
from gevent import getcurrent, monkey
from locust import User, events, task
from locust.user.task import LOCUST_STATE_STOPPING

import _latency
import _targets
from lab.targets import parse_tcp_url
from server import limits
from server.protocol import PORT, fib_reply

REQUEST_TYPE = "TCP"
DEFAULT_HOST = f"tcp://127.0.0.1:{PORT}"
# A fib reply is at most a few dozen bytes; an echo reply is what we sent. One recv almost always
# brings the whole line.
RECV_SIZE = 65536
# After a failed connect, wait this long before the next attempt, so that a missing server
# shows as a steady trickle of failures instead of a busy loop.
RECONNECT_PAUSE_S = 0.2
# A user whose target is refused idles in steps this long: it stops within one when Locust stops it.
REFUSED_PAUSE_S = 1.0
# The request event's context: shared and read-only, so that no request allocates one.
NO_CONTEXT = types.MappingProxyType({})
# libev's EV_READ and EV_WRITE, for gevent's io watchers
READ, WRITE = 1, 2
# The socket class as the standard library made it, before gevent.monkey patched it.
StdlibSocket = monkey.get_original("socket", "socket")


# The lab's own options: (flag, default, help). Each is also a LOCUST_* environment variable and a
# field of the web UI's start form, and reaches the workers with the master's start message.
LAB_OPTIONS = (
    ("--perf1-n", 30, "perf1: the fib(n) every request asks for"),
    ("--perf2-n", 1, "perf2, and convoy's short requests: the fib(n) every request asks for"),
    ("--convoy-n", 37, "convoy: the long request's fib(n) (37: about 2 s)"),
    ("--convoy-delay", 5.0, "convoy: seconds from the start until the long request"),
    ("--echo-bytes", 2, "echo: bytes per request, newline included"),
    ("--rate", 0.0, "open loop: requests per second per user, each timed from when it was due; "
                    "0 = closed loop, the next request as soon as the reply is in"),
    ("--request-timeout", 60.0, "seconds to wait for a connection or a reply"),
    ("--hdr-prefix", "", "where the HDR files go (PREFIX_hdr.json, PREFIX_hdr.hgrm); empty: the --csv "
                         f"prefix, else {_latency.DEFAULT_PREFIX}"),
)


@events.init_command_line_parser.add_listener
def add_lab_options(parser):
    for flag, default, help_text in LAB_OPTIONS:
        parser.add_argument(flag, type=type(default), default=default,
                            env_var="LOCUST_" + flag[2:].upper().replace("-", "_"),
                            help=f"{help_text} (default: {default!r})")


@events.init.add_listener
def raise_open_files(environment, **_):
    """Every user holds a connection: Locust raises its soft limit on open files to 10,000 only, and not at
    all when the hard limit is lower; here it goes up to the hard limit, as the lab's servers and clients
    do, with one warning line if the hard limit is below what -u users need."""
    users = getattr(environment.parsed_options, "num_users", None) or 0
    too_few = limits.raise_open_files(users + limits.SPARE if users else 0)
    if too_few:
        logging.getLogger(__name__).warning("%s", too_few)


def fib_request(n):
    """(name, payload, expected reply) of one fib(n) request."""
    if n < 0:
        raise ValueError(f"fib(n) needs n >= 0, got {n}")
    return f"fib({n})", b"%d\n" % n, fib_reply(n)


def echo_request(size):
    """(name, payload, expected reply) of one echo request of `size` bytes, newline included."""
    if size < 1:
        raise ValueError(f"an echo request needs at least 1 byte (its newline), got {size}")
    payload = b"x" * (size - 1) + b"\n"
    return f"echo {size} B", payload, payload


class RequestFailed(Exception):
    """One failed request. Its text is what Locust's failure table shows, so it carries no timing."""


# A failed request's message, by the first kind of exception that matches the one that ended it.
REPLY_FAILURES = (
    (TimeoutError, "no reply from {where} within {timeout:g} s"),
    (ConnectionAbortedError, "connection to {where} closed by the server before a full reply"),
    ((ConnectionResetError, BrokenPipeError), "connection to {where} reset by the server"),
    (OSError, "network error talking to {where}: {reason}"),
)
CONNECT_FAILURES = (
    (ConnectionRefusedError, "connection refused by {where}"),
    (TimeoutError, "no connection to {where} within {timeout:g} s"),
    (OSError, "cannot connect to {where}: {reason}"),
)


def raise_timeout_in(greenlet):
    """The reply deadline's callback: the request waiting in `greenlet` fails with a TimeoutError."""
    greenlet.throw(TimeoutError())


class TcpClient:
    """One connection to a lab server, opened on first use and after every failure.

    Locust runs on gevent, so no call may block the process. The connection is made with gevent's
    socket (gevent.monkey has patched `socket`), then its descriptor is handed to a plain
    non-blocking stdlib socket, and every wait for the reply goes through gevent's hub on a
    readiness watcher and a timer that are made once and reused by every request. That is what
    gevent's own socket does too, but it first tries each recv() to find it would block, and makes
    a new Timeout per wait; measured per request, the difference is worth having.
    """

    def __init__(self, host, request_event, timeout):
        self.refused = _targets.refusal(host)
        self.address = None if self.refused else parse_tcp_url(host)
        self.where = host if self.refused else "%s:%d" % self.address
        self.timeout = timeout
        self.fire_request = request_event.fire
        self.hub = gevent.get_hub()
        self.sock = self.readable = self.writable = None
        # Restarted for every request: a libev timer costs a fraction of a gevent.Timeout.
        self.reply_deadline = self.hub.loop.timer(timeout)

    def close(self):
        self.reply_deadline.stop()
        if self.sock is not None:
            self.readable.close()
            self.writable.close()
            self.sock.close()
            self.sock = self.readable = self.writable = None

    def request(self, name, payload, expected_reply, due=None):
        """Send payload, read one reply line, and report it to Locust as one request named `name`.

        The time runs from `due` (an open-loop request sent late) or from just before the send.
        Returns True if it succeeded.
        """
        if self.sock is None and not self._connect(name, due):
            return False
        started = time.perf_counter() if due is None else due
        reply = b""
        self.reply_deadline.start(raise_timeout_in, getcurrent(), update=False)
        try:
            self._send(payload)
            reply = self._read_line()
            response_time_ms = (time.perf_counter() - started) * 1000.0
            failure = None if reply == expected_reply else self._wrong_reply(reply, payload)
        except OSError as error:  # TimeoutError included
            response_time_ms = (time.perf_counter() - started) * 1000.0
            failure = self._failure(error, REPLY_FAILURES)
        finally:
            self.reply_deadline.stop()
        if failure is not None:
            self.close()
        self.fire_request(request_type=REQUEST_TYPE, name=name, response_time=response_time_ms,
                          response_length=len(reply), exception=failure, context=NO_CONTEXT)
        return failure is None

    def _send(self, payload):
        sent = self.sock.send(payload)
        while sent < len(payload):  # only a large echo payload can fill the socket's buffer
            self.hub.wait(self.writable)
            try:
                sent += self.sock.send(payload[sent:])
            except BlockingIOError:
                pass

    def _read_line(self):
        reply = b""
        while True:
            self.hub.wait(self.readable)
            try:
                chunk = self.sock.recv(RECV_SIZE)
            except BlockingIOError:  # woken without data: wait again
                continue
            if not chunk:
                raise ConnectionAbortedError("closed")
            reply += chunk
            if reply[-1:] == b"\n":
                return reply

    def _connect(self, name, due):
        if self.refused:
            if _targets.first_report(self.refused):
                self.fire_request(request_type=REQUEST_TYPE, name=name, response_time=0.0, response_length=0,
                                  exception=RequestFailed(self.refused), context=NO_CONTEXT)
            gevent.sleep(REFUSED_PAUSE_S)
            return False
        started = time.perf_counter() if due is None else due
        try:
            connection = socket.create_connection(self.address, timeout=self.timeout)
        except OSError as error:
            self.fire_request(request_type=REQUEST_TYPE, name=name,
                              response_time=(time.perf_counter() - started) * 1000.0, response_length=0,
                              exception=self._failure(error, CONNECT_FAILURES), context=NO_CONTEXT)
            gevent.sleep(RECONNECT_PAUSE_S)
            return False
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = StdlibSocket(fileno=connection.detach())
        self.sock.setblocking(False)
        self.readable = self.hub.loop.io(self.sock.fileno(), READ)
        self.writable = self.hub.loop.io(self.sock.fileno(), WRITE)
        return True

    def _wrong_reply(self, reply, payload):
        text = reply.decode("ascii", "replace").strip()
        if reply.startswith(b"ERR"):
            return RequestFailed(f"server replied: {text}")
        return RequestFailed(f"unexpected reply {text!r} to {payload!r}")

    def _failure(self, error, messages):
        text = next(text for kinds, text in messages if isinstance(error, kinds))
        return RequestFailed(text.format(where=self.where, timeout=self.timeout, reason=error.strerror or error))


class ClosedLoop:
    """The next request goes out as soon as the previous reply is in; time runs from the send."""

    def wait_for_next_start(self):
        return None


class OpenLoop:
    """Requests on a fixed schedule, `rate` per second, whatever the server does.

    When the server falls behind, the requests it held back go out at once, and each one's time
    runs from when it was due: the stall is charged to every request it delayed, not just to the
    one that was waiting (coordinated omission corrected, as in wrk2). A request that goes out on
    time runs from its actual send instead, so that the lateness of gevent's timer (up to a
    millisecond) is not charged to the server.
    """

    def __init__(self, rate):
        self.interval = 1.0 / rate
        # A random phase, so that the users of one worker do not all send at the same instant.
        self.next_start = time.perf_counter() + random.uniform(0.0, self.interval)

    def wait_for_next_start(self):
        """Sleep until the next request is due; return when its time starts (None: at the send)."""
        due = self.next_start
        self.next_start += self.interval
        pause = due - time.perf_counter()
        if pause > 0:
            gevent.sleep(pause)
            return None
        return due


class TcpUser(User):
    """A user with one TcpClient that asks the same request over and over.

    A scenario subclass says what to ask in request_for(options): (name, payload, expected reply).
    The one task loops over the requests itself instead of returning to Locust after each one:
    Locust's task dispatch and wait_time would cost a greenlet switch and more per request, and the
    user cannot starve the others, since every reply is awaited in gevent's hub. Like Locust's own
    task loop, it stops between two requests when Locust stops the user gracefully
    (--stop-timeout); otherwise Locust kills the user wherever it waits, and the request cut short
    is not reported.
    """

    abstract = True
    host = DEFAULT_HOST
    # A user whose request is meant to be long raises this floor under --request-timeout.
    min_request_timeout_s = 0.0

    def request_for(self, options):
        raise NotImplementedError

    def target(self, options):
        """The server this user asks, as tcp://NAME:PORT: Locust's host (the UI's Host field), a compose
        service through its published port on an outside worker (_targets.reach)."""
        return _targets.reach(self.host)

    def on_start(self):
        options = self.environment.parsed_options
        if options.rate < 0:
            raise ValueError(f"--rate must be >= 0, got {options.rate}")
        self.request_name, self.payload, self.expected_reply = self.request_for(options)
        timeout = max(options.request_timeout, self.min_request_timeout_s)
        self.client = TcpClient(self.target(options), self.environment.events.request, timeout)
        self.pacing = OpenLoop(options.rate) if options.rate else ClosedLoop()

    def on_stop(self):
        self.client.close()

    @task
    def keep_sending(self):
        self.send_requests()

    def request_reported(self, message, **fields):
        """One request, its start and its end sent to the master as they happen (custom message
        `message`, with `fields`), for the users that ask once: a long request, a late client.
        Returns whether it succeeded."""
        send = self.environment.runner.send_message
        send(message, {**fields, "started_at": time.time()})
        succeeded = self.client.request(self.request_name, self.payload, self.expected_reply)
        send(message, {**fields, "ended_at": time.time(), "succeeded": succeeded})
        return succeeded

    def send_requests(self):
        """This user's requests, back to back or on the open-loop schedule, until Locust stops it."""
        request, wait_for_next_start = self.client.request, self.pacing.wait_for_next_start
        name, payload, expected_reply = self.request_name, self.payload, self.expected_reply
        while self._state != LOCUST_STATE_STOPPING:  # the flag Locust's own task loop checks
            request(name, payload, expected_reply, wait_for_next_start())


class FibUser(TcpUser):
    """Asks fib(n), n from the option named by fib_n_option."""

    abstract = True
    fib_n_option = ""

    def request_for(self, options):
        return fib_request(getattr(options, self.fib_n_option))
