"""convoy: perf2 users, and one user that sends one long request after a delay (claims C6, C8, C9).

-u N runs N-1 perf2 users (fib(--perf2-n) as fast as possible) and exactly one LongRequestUser,
which waits --convoy-delay seconds, asks fib(--convoy-n) once, and then idles. Against the threaded
server the perf2 rate collapses while the long request runs (C6); against a process pool it is low
but steady (C8); against a threshold pool it stays high (C9).

Besides the lab's HDR files, the master (or a local run) writes the timeline a runner plots:
  PREFIX_convoy.json  the long request (name, started_at, ended_at, succeeded, epoch seconds), the
                      short requests completed in each second, the rate before the long request,
                      the rate while it ran (whole seconds only) and the drop between the two
  PREFIX_convoy.csv   second, t_s (from the first second), short_requests, long_request_running
The per-second counts are Locust's own (they are in PREFIX_stats_history.csv too, there as a
10-second moving average). Workers on several hosts need synchronised clocks for them to line up.

    locust -f locustfiles/convoy.py --host tcp://127.0.0.1:25000 --headless -u 3 -t 20s \\
        --convoy-n 37 --convoy-delay 5 --csv results/convoy
"""
import json

import gevent
from locust import constant, events
from locust.runners import WorkerRunner

import _latency
from _tcp import REQUEST_TYPE, FibUser, fib_request
from perf2 import Perf2User  # noqa: F401  (the short requests: every user but one)

from lab.records.store import write_atomic

LONG_REQUEST_MESSAGE = "lab_convoy_long_request"
# fib(40) may take a minute; the long request must not time out before it ends.
LONG_REQUEST_TIMEOUT_S = 600.0
IDLE_S = 3600.0


class LongRequestUser(FibUser):
    fixed_count = 1
    fib_n_option = "convoy_n"
    min_request_timeout_s = LONG_REQUEST_TIMEOUT_S
    # After its one request the user only waits, where Locust can stop it at once.
    wait_time = constant(IDLE_S)
    long_request_sent = False

    def send_requests(self):
        """One long request after the delay; its start and end go to the master as they happen."""
        if self.long_request_sent:
            return
        self.long_request_sent = True
        gevent.sleep(self.environment.parsed_options.convoy_delay)
        self.request_reported(LONG_REQUEST_MESSAGE, name=self.request_name)


class Timeline:
    """The master's (or a local run's) record of the long request, written with the HDR files."""

    def __init__(self):
        self.long_request = {}

    def reset(self, **_):
        self.long_request = {}

    def on_long_request_message(self, environment, msg, **_):
        self.long_request.update(msg.data)

    def write(self, environment, prefix):
        if "started_at" not in self.long_request:  # no convoy in this run
            return []
        options = environment.parsed_options
        short_name = fib_request(options.perf2_n)[0]
        entry = environment.stats.entries.get((short_name, REQUEST_TYPE))
        counts = sorted(entry.num_reqs_per_sec.items()) if entry else []
        record = self.describe(counts, short_name, options)
        rows = ["second,t_s,short_requests,long_request_running"]
        rows += [f"{row['second']},{row['t_s']},{row['short_requests']},{int(row['long_request_running'])}"
                 for row in record["per_second"]]
        json_path, csv_path = prefix + "_convoy.json", prefix + "_convoy.csv"
        write_atomic(json_path, json.dumps(record, indent=1) + "\n")
        write_atomic(csv_path, "\n".join(rows) + "\n")
        return [json_path, csv_path]

    def describe(self, counts, short_name, options):
        started = self.long_request["started_at"]
        # Still running when the files were written: it has lasted at least until the last second.
        ended = self.long_request.get("ended_at") or (counts[-1][0] + 1 if counts else started)
        per_second = [{"second": second, "t_s": second - counts[0][0], "short_requests": count,
                       "long_request_running": second + 1 > started and second < ended}
                      for second, count in counts]
        # Whole seconds only: the run's first second is partial, and so are the ones the long
        # request starts and ends in.
        before = [count for second, count in counts[1:] if second + 1 <= started]
        during = [count for second, count in counts if second >= started and second + 1 <= ended]
        rate_before = sum(before) / len(before) if before else None
        rate_during = sum(during) / len(during) if during else None
        return {
            "short_requests": short_name,
            "long_request": {"n": options.convoy_n, "delay_s": options.convoy_delay, **self.long_request},
            "rate_before_per_s": rate_before,
            "rate_during_per_s": rate_during,
            "drop": 1 - rate_during / rate_before if rate_before and rate_during is not None else None,
            "per_second": per_second,
        }


timeline = Timeline()
_latency.results_writers.append(timeline.write)


@events.init.add_listener
def install(environment, **_):
    if environment.runner is None or isinstance(environment.runner, WorkerRunner):
        return
    environment.runner.register_message(LONG_REQUEST_MESSAGE, timeline.on_long_request_message)
    environment.events.test_start.add_listener(timeline.reset)
