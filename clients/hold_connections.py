"""hold_connections: open many connections, have each one served once, and hold them open (C1, C2, C13)."""

from __future__ import annotations

import selectors
import time

from clients import common
from server import limits

DESCRIPTION = """\
Open --connections connections to one server, send fib(1) on every one of them ('1\\n', which an
echo server returns unchanged too), and count the connections whose reply arrives while all of
them are open: a thread-per-connection or coroutine server answers them all at once (C2), a
one-at-a-time server answers only the first (C1). Then hold them open, idle, for --hold seconds, so
that the server's threads and memory per connection can be read meanwhile (C13), and close them.
"""

OUTPUT_HELP = """\
output:
  'opened N connections in S s', 'served K of N in S s', then 'holding N connections for S s'
  (the moment to measure the server), and 'closed'
  with --json, a last line with one JSON object:
    tool, host, port, connections, served, open_s, serve_s, hold_s, held_at (epoch seconds when
    holding began), started_at, ended_at
"""


def parse_args(argv=None):
    parser = common.make_parser("hold_connections", DESCRIPTION, OUTPUT_HELP, network=True)
    common.add_positive(parser, "--connections", common.positive_int, 100, "how many connections to open")
    common.add_positive(parser, "--hold", common.positive_float, 5.0,
                        "seconds to hold them open once every reply is in or --timeout passed")
    parser.set_defaults(timeout=10.0)
    return parser.parse_args(argv)


def serve_all(socks, timeout):
    """Send fib(1) on every connection, then wait up to `timeout` for the replies; return how many came."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.sendall(b"1\n")
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    served, deadline = 0, time.monotonic() + timeout
    while served < len(socks) and (left := deadline - time.monotonic()) > 0:
        for key, _ in selector.select(left):
            selector.unregister(key.fileobj)
            try:
                served += key.fileobj.recv(common.REPLY_RECV_SIZE) == b"1\n"
            except OSError:
                pass  # a connection the server turned away is simply not served
    selector.close()
    return served


def main(argv=None) -> int:
    args = parse_args(argv)
    common.enough_files(args.connections + limits.SPARE)
    started_at = common.epoch_now()
    socks = []
    try:
        start = time.perf_counter()
        for _ in range(args.connections):
            socks.append(common.connect(args.host, args.port, args.timeout))
        open_s = time.perf_counter() - start
        common.print_line(f"opened {len(socks)} connections in {open_s:.2f} s")
        start = time.perf_counter()
        served = serve_all(socks, args.timeout)
        serve_s = time.perf_counter() - start
        common.print_line(f"served {served} of {len(socks)} in {serve_s:.2f} s")
        held_at = common.epoch_now()
        common.print_line(f"holding {len(socks)} connections for {args.hold:g} s")
        time.sleep(args.hold)
    finally:
        for sock in socks:
            sock.close()
    common.print_line("closed")
    if args.json:
        common.print_experiment_json(
            "hold_connections", started_at, host=args.host, port=args.port, connections=len(socks),
            served=served, open_s=open_s, serve_s=serve_s, hold_s=args.hold, held_at=held_at)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("hold_connections", main)
