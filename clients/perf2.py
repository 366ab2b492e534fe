"""perf2: the article's throughput test. fib(1) as fast as possible on one connection, requests per interval."""

from __future__ import annotations

import math
import threading
import time

from clients import common

DESCRIPTION = """\
The article's perf2: one connection sending a trivial request (fib(1)) as fast as the server
answers, and the rate printed at every interval. Run it against a thread-per-connection server, then ask for
a long fib from another client (python -m clients.request 37): the rate collapses by more than 99%
while the long request runs, because a CPU-bound thread keeps the GIL for 5 ms at a time (claim
C6). Against the process pool the rate is lower but steady (C8); with a threshold it stays high (C9).

Faithful to the article by default: the bare number b'1', one send, one recv(100), a monitor
thread that prints once per interval. --interval 0.1 gives buckets fine enough to see the moment
the long request starts and ends. The loop stops after --duration seconds (default 30).
"""

OUTPUT_HELP = """\
output:
  one line per interval: 'RATE requests/second' (the requests completed in that interval divided
  by its length; with an --interval other than 1 the raw count follows in brackets)
  then a summary line: '# TOTAL requests in DURATION s, RATE requests/second overall'
  with --json, a last line with one JSON object:
    tool, host, port, n, payload, interval_s, buckets (a list of [epoch_start, count], one per
    interval, a request counted in the interval its reply arrived in), total (= the sum of the
    counts; after Ctrl-C the last interval is a partial one), duration_s, rate_per_s, started_at,
    ended_at (epoch seconds), stopped_by (duration|interrupt)
"""

DEFAULT_DURATION_S = 30.0


def parse_args(argv=None):
    parser = common.make_parser("perf2", DESCRIPTION, OUTPUT_HELP, network=True)
    common.add_fib_n_argument(parser, default=1)
    parser.add_argument(
        "--duration",
        type=common.positive_float,
        default=DEFAULT_DURATION_S,
        help="stop sending after this many seconds, rounded up to whole intervals (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=common.positive_float,
        default=1.0,
        help="bucket length in seconds, for the printed rate and the JSON buckets (default: %(default)s)",
    )
    return parser.parse_args(argv)


class Buckets:
    """Requests counted per interval, keyed by the interval's index since the start of the run."""

    def __init__(self, interval: float, bucket_count: int):
        self.interval = interval
        self.counts = [0] * bucket_count
        self.loop_start = time.perf_counter()
        self.started_at = common.epoch_now()
        self.printed = 0
        self.lock = threading.Lock()  # between the monitor and the last print; the loop counts without it

    def print_through(self, last_index: int) -> None:
        """Print every bucket up to last_index not printed yet (an empty bucket is a 0 rate, not a gap)."""
        with self.lock:
            while self.printed <= last_index:
                count = self.counts[self.printed]
                rate = count / self.interval
                detail = "" if self.interval == 1.0 else f" ({count} in {self.interval:g} s)"
                common.print_line(f"{rate:.0f} requests/second{detail}")
                self.printed += 1

    def monitor(self, stop: threading.Event) -> None:
        """The article's monitor thread: wake at each interval's end and print that interval
        (all but the last, which main() prints after the last reply)."""
        index = 0
        while index < len(self.counts) - 1:
            boundary = self.loop_start + (index + 1) * self.interval
            if stop.wait(max(0.0, boundary - time.perf_counter())):
                return
            self.print_through(index)
            index += 1

    def as_json_list(self) -> list[list[float]]:
        return [[self.started_at + index * self.interval, count] for index, count in enumerate(self.counts)]


def bare_loop(sock, request, seconds):
    """The article's perf2 loop with nothing else, sock.send(request); sock.recv(100), for `seconds`:
    (replies, seconds it took). The yardstick of every perf2 rate: loopback_floor's floors and the
    benchmarks' bare loops (lab.bench) are this loop."""
    total, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        sock.send(request)
        sock.recv(100)
        total += 1
    return total, time.perf_counter() - start


def ask_in_a_loop(connection, payload, n, buckets, run_length):
    """The article's loop, sock.send(payload); sock.recv(100), with no more per request than one clock
    read and one count: the reply is compared with fib(n)'s, computed once, and only a reply that
    differs takes the slow path (a split line, an ERR, a wrong number: a ClientError). The monitor
    prints an interval at its end without waiting for a count in flight, so a printed line may miss the
    reply timed at its very end; the JSON buckets, read after the loop, count every reply."""
    expected = common.fib_reply(n)
    send, recv, size = connection.sock.send, connection.sock.recv, common.REPLY_RECV_SIZE
    counts, last, start, per_second = buckets.counts, len(buckets.counts) - 1, buckets.loop_start, 1 / buckets.interval
    clock = time.perf_counter
    now = clock()
    try:
        while now - start < run_length:
            send(payload)
            reply = recv(size)
            if reply != expected:
                common.check_fib_reply(n, connection.finish(payload, reply))
            now = clock()
            index = int((now - start) * per_second)
            counts[index if index < last else last] += 1  # the last reply may come just after the end
    except OSError as error:
        raise connection.failure(error) from None


def main(argv=None) -> int:
    args = parse_args(argv)
    payload = common.request_payload(args.n, args.newline)
    stopped_by = "duration"
    exit_code = common.EXIT_OK
    # A whole number of intervals, so that no bucket is a partial one with a misleadingly low rate.
    bucket_count = max(1, math.ceil(args.duration / args.interval - 1e-9))
    run_length = bucket_count * args.interval
    with common.FibConnection(args.host, args.port, args.timeout) as connection:
        buckets = Buckets(args.interval, bucket_count)
        stop_monitor = threading.Event()
        monitor = threading.Thread(target=buckets.monitor, args=(stop_monitor,), daemon=True)
        monitor.start()
        try:
            ask_in_a_loop(connection, payload, args.n, buckets, run_length)
        except KeyboardInterrupt:
            stopped_by = "interrupt"
            exit_code = common.EXIT_INTERRUPTED
        finally:
            stop_monitor.set()
            monitor.join()
        duration_s = time.perf_counter() - buckets.loop_start
        ended_at = common.epoch_now()

    # An interrupted run keeps only the intervals it reached.
    if stopped_by == "interrupt":
        del buckets.counts[max(1, math.ceil(duration_s / args.interval)) :]
    buckets.print_through(len(buckets.counts) - 1)
    total = sum(buckets.counts)
    common.print_line(f"# {total} requests in {duration_s:.2f} s, {total / duration_s:.0f} requests/second overall")
    if args.json:
        common.print_json(
            {
                "tool": "perf2",
                "host": args.host,
                "port": args.port,
                "n": args.n,
                "payload": payload.decode("ascii"),
                "interval_s": args.interval,
                "buckets": buckets.as_json_list(),
                "total": total,
                "duration_s": duration_s,
                "rate_per_s": total / duration_s,
                "started_at": buckets.started_at,
                "ended_at": ended_at,
                "stopped_by": stopped_by,
            }
        )
    return exit_code


if __name__ == "__main__":
    common.run_tool("perf2", main)
