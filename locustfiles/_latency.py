"""True latency for the lab's Locust runs: HDR histograms in every worker, merged on the master.

Locust keeps response times rounded to whole milliseconds below 100 ms, where most of the lab's
requests live. This module keeps every response time to the microsecond:

- every process that runs users records each request event in an HdrHistogram per request name,
  in microseconds (1 µs to 1 hour, 3 significant figures);
- a worker ships what it recorded since its last report, encoded, inside Locust's own stats report
  (events.report_to_master), so Locust's counts and the histograms always travel together;
- the master decodes and adds them (events.worker_report), but only a worker's that every one of
  worker_filters takes (the Lab view's: only the lab's workers count); a local run keeps its own;
- when a run stops (and again, if late reports arrive, and when Locust quits) the master or the
  local process writes, next to Locust's CSV files:
    PREFIX_hdr.json   count, mean, min, p50, p90, p99, p99.9, max in µs, for all requests and per
                      request name; requests per worker; Locust's own totals at the same moment
                      and its requests completed per second; and every histogram in
                      HdrHistogram's base64 encoding
    PREFIX_hdr.hgrm   the percentile distribution of all requests, in milliseconds (HdrHistogram's
                      usual text format, as wrk2 prints it and HdrHistogram's plotter reads it)
  PREFIX is --hdr-prefix, else the --csv prefix, else DEFAULT_PREFIX. Every file is written to a
  temporary file and renamed into place.
"""

import inspect
import json
import logging
import time
from collections import defaultdict

from locust import events
from locust.runners import STATE_STOPPED, STATE_STOPPING, MasterRunner, WorkerRunner

from lab.records.store import write_atomic

try:
    from hdrh.histogram import HdrHistogram
except ImportError:  # the lab image has it on every platform; a Locust of one's own may not (install() says so)
    HdrHistogram = None

DEFAULT_PREFIX = "results/locust"
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_FIGURES = 3
REPORT_KEY = "lab_hdr"
SECONDS_KEY = "lab_seconds"
# Percentiles in the JSON summary: (key, percentile).
SUMMARY_PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p99_9", 99.9))
HGRM_UNIT_RATIO = 1000.0  # recorded in µs, written in ms

logger = logging.getLogger(__name__)
# Other modules (the convoy timeline) add writers here: fn(environment, prefix) -> [paths written].
results_writers = []
# And here: fn(worker id) -> whether that worker's reports are merged (a report it refuses is dropped whole).
worker_filters = []
# The master's (or a local run's) RunResults, once Locust has started: the Lab view reads it live.
run_results = None


def new_histogram():
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


class LatencyRecorder:
    """Response times per request name, and each name's requests in every second.

    The request listener only counts each microsecond value in a dict: a Python record_value()
    costs microseconds, a dict increment tens of nanoseconds, and a run has far fewer distinct
    values than requests. The counts go into the histograms, value by value with their count,
    whenever the histograms are shipped or written.

    per_second: {name: {second (epoch, when the reply came): [requests, sum of their µs, failures]}},
    Locust's own per-second counts, unsmoothed, with the time they took beside them.
    """

    def __init__(self):
        self.pending = defaultdict(lambda: defaultdict(int))
        self.histograms = {}
        self.per_second = defaultdict(lambda: defaultdict(new_second))

    def on_request(self, name, response_time, exception=None, **_):
        value_us = int(response_time * 1000.0 + 0.5)
        self.pending[name][value_us] += 1
        row = self.per_second[name][int(time.time())]
        row[0] += 1
        row[1] += value_us
        if exception is not None:
            row[2] += 1

    def flush(self):
        for name, counts in self.pending.items():
            histogram = self.histograms.get(name)
            if histogram is None:
                histogram = self.histograms[name] = new_histogram()
            for value_us, count in counts.items():
                histogram.record_value(min(value_us, HIGHEST_US), count)
        self.pending.clear()
        return self.histograms

    def reset(self):
        self.pending.clear()
        self.histograms = {}
        self.per_second.clear()

    def take_encoded(self):
        """What was recorded since the last call, encoded per name; the recorder starts afresh."""
        encoded = {name: histogram.encode() for name, histogram in self.flush().items()
                   if histogram.get_total_count()}
        self.histograms = {}
        seconds = {name: [[second, *row] for second, row in rows.items()] for name, rows in self.per_second.items()}
        self.per_second.clear()
        return encoded, seconds

    def add_encoded(self, encoded, seconds=None):
        """Add what take_encoded() shipped; return how many requests its histograms hold."""
        added = 0
        for name, blob in encoded.items():
            histogram = HdrHistogram.decode(blob)
            self.histograms.setdefault(name, new_histogram()).add(histogram)
            added += histogram.get_total_count()
        for name, rows in (seconds or {}).items():
            mine = self.per_second[name]
            for second, *row in rows:
                total = mine[second]
                for i, value in enumerate(row):
                    total[i] += value
        return added


def new_second():
    return [0, 0, 0]


def summary(histogram):
    """count, mean, min, percentiles and max of one histogram, in µs."""
    figures = {"count": histogram.get_total_count()}
    if not figures["count"]:
        return figures
    figures["mean"] = round(histogram.get_mean_value(), 1)
    figures["min"] = histogram.get_min_value()
    for key, percentile in SUMMARY_PERCENTILES:
        figures[key] = histogram.get_value_at_percentile(percentile)
    figures["max"] = histogram.get_max_value()
    return figures


def results_prefix(options):
    return getattr(options, "hdr_prefix", "") or getattr(options, "csv_prefix", None) or DEFAULT_PREFIX


def hgrm_text(histogram):
    lines = []

    class TextSink:  # output_percentile_distribution writes bytes to a file-like object
        @staticmethod
        def write(data):
            lines.append(data.decode("ascii"))

    histogram.output_percentile_distribution(TextSink, HGRM_UNIT_RATIO)
    return "".join(lines)


class RunResults:
    """The master's (or a local run's) side: merge what arrives, write the files."""

    def __init__(self, environment, recorder):
        self.environment = environment
        self.recorder = recorder
        self.started_at = None
        self.requests_per_worker = defaultdict(int)
        self.last_written = None

    def on_test_start(self, **_):
        self.recorder.reset()
        self.requests_per_worker.clear()
        self.started_at = time.time()
        self.last_written = None

    def on_worker_report(self, client_id, data):
        if REPORT_KEY not in data or not all(counts(client_id) for counts in worker_filters):
            return
        self.requests_per_worker[client_id] += self.recorder.add_encoded(data[REPORT_KEY], data.get(SECONDS_KEY))
        # Reports that come in after the stop (a worker's last samples) update the files.
        if self.started_at is not None and self.environment.runner.state in (STATE_STOPPING, STATE_STOPPED):
            self.write()

    def write(self, **_):
        if self.started_at is None:  # no run yet: nothing to say
            return
        histograms = self.recorder.flush()
        locust_total = self.environment.stats.total
        # The stop and the quit of a headless run often come with nothing new in between.
        news = (sum(h.get_total_count() for h in histograms.values()), locust_total.num_requests)
        if news == self.last_written:
            return
        prefix = results_prefix(self.environment.parsed_options)
        try:
            written = self.write_histograms(prefix, histograms)
            for writer in results_writers:
                written += writer(self.environment, prefix)
        except OSError as error:
            logger.error("could not write the lab's results at %s: %s", prefix, error)
            return
        self.last_written = news
        logger.info("wrote %s", ", ".join(written))

    def write_histograms(self, prefix, histograms):
        total = new_histogram()
        for histogram in histograms.values():
            total.add(histogram)
        locust_total = self.environment.stats.total
        record = {
            "unit": "us",
            "started_at": self.started_at,
            "written_at": time.time(),
            "open_loop_rate_per_user": getattr(self.environment.parsed_options, "rate", 0.0) or None,
            "total": summary(total),
            "requests": {name: summary(histogram) for name, histogram in sorted(histograms.items())},
            "requests_per_worker": dict(self.requests_per_worker),
            "locust": {
                "num_requests": locust_total.num_requests,
                "num_failures": locust_total.num_failures,
                "avg_response_time_ms": locust_total.avg_response_time,
            },
            # Locust's own count of requests completed in each second (epoch), all requests.
            "per_second": sorted(locust_total.num_reqs_per_sec.items()),
            "encoded": {name: histogram.encode().decode("ascii") for name, histogram in sorted(histograms.items())},
        }
        json_path, hgrm_path = prefix + "_hdr.json", prefix + "_hdr.hgrm"
        write_atomic(json_path, json.dumps(record, indent=1) + "\n")
        write_atomic(hgrm_path, hgrm_text(total))
        return [json_path, hgrm_path]


def ship_recorded(recorder, data):
    encoded, seconds = recorder.take_encoded()
    if encoded:  # most reports of an idle worker carry nothing
        data[REPORT_KEY] = encoded
        data[SECONDS_KEY] = seconds


@events.init.add_listener
def install(environment, **_):
    # Locust's Runner.stop() names its caller with inspect.stack(), whose first call looks up the file
    # of every loaded module: 1.4 s in the lab's container. A worker told to quit takes that long to
    # stop and send its last report, and the master, which waits 0.5 s for it, loses that report's
    # requests. Looking the files up now, at start, makes the stop take milliseconds.
    inspect.getframeinfo(inspect.currentframe())
    if HdrHistogram is None:
        logger.warning("the hdrhistogram package is not installed (pip install -r requirements/lab.txt): this run "
                       "writes no HDR or convoy files, only Locust's own statistics")
        return
    recorder = LatencyRecorder()
    environment.events.request.add_listener(recorder.on_request)
    runner = environment.runner
    if runner is None:  # locust --list and the like: no run
        return
    if isinstance(runner, WorkerRunner):
        environment.events.test_start.add_listener(lambda **_: recorder.reset())
        environment.events.report_to_master.add_listener(
            lambda client_id, data: ship_recorded(recorder, data))
        return
    global run_results
    results = run_results = RunResults(environment, recorder)
    environment.events.test_start.add_listener(results.on_test_start)
    environment.events.test_stop.add_listener(results.write)
    environment.events.quitting.add_listener(results.write)
    if isinstance(runner, MasterRunner):
        environment.events.worker_report.add_listener(results.on_worker_report)
