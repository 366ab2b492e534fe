"""request: one request and its elapsed time. The article's `nc 127.0.0.1 25000` step, made scriptable."""

from __future__ import annotations

import time

from clients import common

DESCRIPTION = """\
One request on a new connection, the way the article uses nc: type 40, wait, see 102334155.
It sends 'N\\n' (a line, like nc) unless --bare is given, prints the reply and the elapsed time,
and exits. Use it to start the long request that makes perf2's rate collapse (C6), or to see how
long one fib(n) takes (C3). N is sent as given, so a non-number shows the server's ERR reply.
"""

OUTPUT_HELP = """\
output:
  line 1: the server's reply, for example 102334155
  line 2: 'elapsed S s', from just before connecting to the reply (time.perf_counter)
  with --json, a last line with one JSON object:
    tool, host, port, n (as sent), reply, elapsed_s, started_at (before connecting), sent_at (connected,
    just before the send), ended_at (epoch seconds)
"""


def parse_args(argv=None):
    parser = common.make_parser("request", DESCRIPTION, OUTPUT_HELP, network=True)
    parser.add_argument("n", help="the number to send, for example 40 (sent as given)")
    parser.add_argument("--bare", action="store_true", help="send the bare number without '\\n', as perf1/perf2 do")
    parser.add_argument(
        "--no-check", action="store_true", help="print any reply as is, without checking it is fib(N) (echo handler)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    payload = common.request_payload(args.n, newline=not args.bare)
    started_at = common.epoch_now()
    start = time.perf_counter()
    with common.FibConnection(args.host, args.port, args.timeout) as connection:
        sent_at = common.epoch_now()  # connected: the request leaves now (on a busy CPU, well after started_at)
        reply = connection.ask(payload)
    elapsed = time.perf_counter() - start
    ended_at = common.epoch_now()
    n = args.n.strip()
    if n.isdigit() and not args.no_check:
        common.check_fib_reply(int(n), reply)
    reply_text = reply.decode("ascii", "replace")
    common.print_line(reply_text)
    common.print_line(f"elapsed {elapsed:.3f} s")
    if args.json:
        common.print_json(
            {
                "tool": "request",
                "host": args.host,
                "port": args.port,
                "n": args.n,
                "reply": reply_text,
                "elapsed_s": elapsed,
                "started_at": started_at,
                "sent_at": sent_at,
                "ended_at": ended_at,
            }
        )
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("request", main)
