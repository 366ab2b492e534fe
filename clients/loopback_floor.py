"""loopback_floor: the fastest ping-pong a bare socket does here, the floor under every perf2 rate, and
the perf2 client's own ceiling on the same CPUs."""

from __future__ import annotations

import os
import socket
import time

from clients import common, perf2

DESCRIPTION = """\
Two loops in turn, half of --duration each, on one connection to the barest possible server: a
forked process that only echoes, on 127.0.0.1. No protocol, no fib, no threads.

First the article's perf2 loop, bare (send b'1', recv(100)): its rate is the floor, the ceiling that
no strategy can beat on this machine, so that perf2 rates can be read against it. Then the lab's own
perf2 client loop (clients.perf2's, with its reply check and its count), sending b'1\\n', whose echo
is fib(1)'s reply: its rate is the perf2 client's ceiling, the most perf2 can measure on these CPUs.
A perf2 rate near it may be the client's limit rather than the server's.
"""

OUTPUT_HELP = """\
output:
  'N requests/second (bare loop: the floor)' and 'N requests/second (perf2's loop: its ceiling)', at the end
  with --json, a last line with one JSON object:
    tool, python, total, duration_s, rate_per_s (the bare loop's), perf2_total, perf2_duration_s,
    perf2_ceiling_per_s (perf2's loop's), started_at, ended_at
"""


def parse_args(argv=None):
    parser = common.make_parser("loopback_floor", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument("--duration", type=common.positive_float, default=3.0,
                        help="seconds in all, half for each loop (default: %(default)s)")
    return parser.parse_args(argv)


def echo_once(listener):
    """The child: echo one connection until it closes, then leave without the parent's cleanup."""
    try:
        client, _ = listener.accept()
        while data := client.recv(100):
            client.send(data)
    finally:
        os._exit(0)


def bare_loop(sock, seconds):
    """The article's loop with nothing else for `seconds`: (replies, seconds it took)."""
    total, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        sock.send(b"1")
        sock.recv(100)
        total += 1
    return total, time.perf_counter() - start


def perf2_loop(connection, seconds):
    """clients.perf2's own loop for `seconds`, asking fib(1) with a newline, which the echo returns as
    fib(1)'s reply: (replies, seconds it took)."""
    buckets = perf2.Buckets(seconds, 1)  # one bucket, the whole loop: perf2's per-interval count, at no extra cost
    perf2.ask_in_a_loop(connection, common.request_payload(1, newline=True), 1, buckets, seconds)
    return buckets.counts[0], time.perf_counter() - buckets.loop_start


def main(argv=None) -> int:
    args = parse_args(argv)
    started_at = common.epoch_now()
    listener = socket.create_server(("127.0.0.1", 0))
    child = os.fork()
    if child == 0:
        echo_once(listener)
    try:
        with common.FibConnection(*listener.getsockname(), timeout=10) as connection:
            total, duration = bare_loop(connection.sock, args.duration / 2)
            perf2_total, perf2_duration = perf2_loop(connection, args.duration / 2)
    finally:
        os.waitpid(child, 0)
    rate, ceiling = total / duration, perf2_total / perf2_duration
    common.print_line(f"{rate:.0f} requests/second (bare loop: the floor)")
    common.print_line(f"{ceiling:.0f} requests/second (perf2's loop: its ceiling)")
    if args.json:
        common.print_experiment_json("loopback_floor", started_at, total=total, duration_s=duration, rate_per_s=rate,
                                     perf2_total=perf2_total, perf2_duration_s=perf2_duration,
                                     perf2_ceiling_per_s=ceiling)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("loopback_floor", main)
