"""perf1: the article's latency test. fib(n) requests in a loop on one connection, one latency per line."""

from __future__ import annotations

import time

from clients import common

DESCRIPTION = """\
The article's perf1: one connection, a CPU-heavy request (fib(30)) sent again and again, and the
latency of each request printed as it arrives. Start a second perf1 against a thread-per-connection
server while the first runs: both clients' latencies roughly double, because the server's threads
share one GIL (claim C4). Against a server that computes in a process pool they do not (C7).

Faithful to the article by default: the bare number b'30' with no newline, one send, one recv(100).
The loop stops after --duration seconds (default 30) or after --count requests, whichever you give.
"""

OUTPUT_HELP = """\
output:
  one line per request: its latency in seconds (send to reply, time.perf_counter)
  then a summary line: '# COUNT requests, mean ..., p50 ..., p99 ...' (p = nearest-rank percentile)
  with --json, a last line with one JSON object:
    tool, host, port, n, payload, count, latencies_s (every sample, in order), sent_at (when each
    was sent, epoch seconds), mean_s, p50_s, p99_s, min_s, max_s, started_at, ended_at (epoch
    seconds), stopped_by (count|duration|interrupt)
"""

DEFAULT_DURATION_S = 30.0


def parse_args(argv=None):
    parser = common.make_parser("perf1", DESCRIPTION, OUTPUT_HELP, network=True)
    common.add_fib_n_argument(parser, default=30)
    bound = parser.add_mutually_exclusive_group()
    bound.add_argument(
        "--duration",
        type=common.positive_float,
        help=f"stop starting new requests after this many seconds (default: {DEFAULT_DURATION_S:g})",
    )
    bound.add_argument("--count", type=common.positive_int, help="stop after this many requests")
    args = parser.parse_args(argv)
    if args.count is None and args.duration is None:
        args.duration = DEFAULT_DURATION_S
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    payload = common.request_payload(args.n, args.newline)
    latencies: list[float] = []
    sent_at: list[float] = []  # epoch seconds, to line samples up with another tool's timeline
    stopped_by = "count" if args.count else "duration"
    exit_code = common.EXIT_OK
    with common.FibConnection(args.host, args.port, args.timeout) as connection:
        started_at = common.epoch_now()
        loop_start = time.perf_counter()
        try:
            while True:
                if args.count is not None and len(latencies) >= args.count:
                    break
                if args.duration is not None and time.perf_counter() - loop_start >= args.duration:
                    break
                sent = time.perf_counter()
                reply = connection.ask(payload)
                latency = time.perf_counter() - sent
                common.check_fib_reply(args.n, reply)
                latencies.append(latency)
                sent_at.append(started_at + (sent - loop_start))
                common.print_line(f"{latency:.6f}")
        except KeyboardInterrupt:
            # Ctrl-C ends the run early; the samples so far are still worth a summary.
            stopped_by = "interrupt"
            exit_code = common.EXIT_INTERRUPTED
        ended_at = common.epoch_now()

    summary = common.latency_summary(latencies)
    if latencies:
        common.print_line(
            f"# {len(latencies)} requests of fib({args.n}), mean {summary['mean_s']:.4f} s, "
            f"p50 {summary['p50_s']:.4f} s, p99 {summary['p99_s']:.4f} s"
        )
    else:
        common.print_line("# no request completed")
    if args.json:
        common.print_json(
            {
                "tool": "perf1",
                "host": args.host,
                "port": args.port,
                "n": args.n,
                "payload": payload.decode("ascii"),
                "count": len(latencies),
                "latencies_s": latencies,
                "sent_at": sent_at,
                **summary,
                "started_at": started_at,
                "ended_at": ended_at,
                "stopped_by": stopped_by,
            }
        )
    return exit_code


if __name__ == "__main__":
    common.run_tool("perf1", main)
