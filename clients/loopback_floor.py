"""loopback_floor: the fastest ping-pong a bare socket does here, the floor under every perf2 rate."""

from __future__ import annotations

import os
import socket
import time

from clients import common

DESCRIPTION = """\
The article's perf2 loop (send b'1', recv(100)) against the barest possible server: a forked
process that only echoes, on 127.0.0.1. No protocol, no fib, no threads. Its rate is the ceiling
that no strategy can beat on this machine, so that perf2 rates can be read against it.
"""

OUTPUT_HELP = """\
output:
  'N requests/second' once, at the end
  with --json, a last line with one JSON object:
    tool, python, total, duration_s, rate_per_s, started_at, ended_at
"""


def parse_args(argv=None):
    parser = common.make_parser("loopback_floor", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument("--duration", type=common.positive_float, default=3.0,
                        help="seconds of ping-pong (default: %(default)s)")
    return parser.parse_args(argv)


def echo_once(listener):
    """The child: echo one connection until it closes, then leave without the parent's cleanup."""
    try:
        client, _ = listener.accept()
        while data := client.recv(100):
            client.send(data)
    finally:
        os._exit(0)


def main(argv=None) -> int:
    args = parse_args(argv)
    started_at = common.epoch_now()
    listener = socket.create_server(("127.0.0.1", 0))
    child = os.fork()
    if child == 0:
        echo_once(listener)
    try:
        sock = socket.create_connection(listener.getsockname(), timeout=10)
        total, start = 0, time.perf_counter()
        deadline = start + args.duration
        while time.perf_counter() < deadline:
            sock.send(b"1")
            sock.recv(100)
            total += 1
        duration = time.perf_counter() - start
        sock.close()
    finally:
        os.waitpid(child, 0)
    rate = total / duration
    common.print_line(f"{rate:.0f} requests/second")
    if args.json:
        common.print_experiment_json("loopback_floor", started_at, total=total, duration_s=duration, rate_per_s=rate)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("loopback_floor", main)
