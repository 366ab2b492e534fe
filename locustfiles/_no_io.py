"""Locust's own floor per request, for scripts/bench-loadgen: the echo user's request event with no I/O.

Not a scenario (the leading underscore keeps `locust -f locustfiles/` from loading it). Each user runs
the echo user's loop (_tcp.TcpUser) with a client that does no I/O: per request it yields to gevent's
hub once, as a real request does while it waits for the reply, and fires the same request event (same
name, a float response time, the reply's length, no context) to the same listeners: Locust's
statistics and the lab's HDR recorder. Its CPU per request is what a request costs the worker apart
from the socket and the lab's request code.

    locust -f locustfiles/_no_io.py --headless -u 4 -t 10s
"""
import time

import gevent

from _tcp import NO_CONTEXT, REQUEST_TYPE, TcpUser, echo_request


class NoIoClient:
    """TcpClient's request() and close(), with no connection."""

    def __init__(self, request_event):
        self.fire_request = request_event.fire

    def request(self, name, payload, expected_reply, due=None):
        started = time.perf_counter() if due is None else due
        gevent.sleep(0)  # where a real request waits for its reply in the hub
        self.fire_request(request_type=REQUEST_TYPE, name=name, response_time=(time.perf_counter() - started) * 1000.0,
                          response_length=len(expected_reply), exception=None, context=NO_CONTEXT)
        return True

    def close(self):
        pass


class NoIoEchoUser(TcpUser):
    def request_for(self, options):
        return echo_request(options.echo_bytes)

    def on_start(self):
        super().on_start()
        self.client.close()
        self.client = NoIoClient(self.environment.events.request)
