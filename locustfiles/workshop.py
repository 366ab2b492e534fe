"""workshop: the article's claims as named experiments in Locust's own UI, and the Lab view.

Every live form of an experiment (lab.experiments.live(): C4 in perf1, C6, C8 and C9 in convoy, ...)
becomes a shape class that Locust's UI lists (--class-picker), with one user class per role. The
teacher picks one, presses Start, and the shape runs its stages, chooses the users and their servers,
and stops by itself.

The master serves the Lab view (/lab, also a "Lab" tab in Locust's UI), refreshed every second:
the requests per second per request name, unsmoothed, with the long request's span; latency
percentiles in µs from the HDR histograms merged across workers; the claim, the article's figure,
the figure measured so far and the verdict of the runner's own rule; the servers' CPUs and Python.
Each run's files go to LAB_LIVE_DIR/<time>-<claim>/ and are downloadable from /lab.
With compose's profile gil, lab.gil_sampler posts each second's share of the GIL per server thread to
/lab/gil, and the Lab view draws it under the rates.

Workers outside the compose network reach the servers through their published ports:
--lab-servers HOST (with --lab-port-prefix if the lab's LAB_PORT_PREFIX is not the default).
"""
import collections
import json
import logging
import os
import platform
import socket
import sys
import sysconfig
import time
from pathlib import Path

import gevent
from locust import LoadTestShape, constant, events
from locust.runners import STATE_INIT, STATE_STOPPED, MasterRunner, WorkerRunner

import _latency
from _tcp import FibUser, fib_request, parse_tcp_url

from clients import common
from lab.live import forms
from lab.cpu import wake_up
from lab.experiments import live as live_forms
from lab.records.store import write_atomic

ONCE_MESSAGE = "lab_once"
SPAWN_RATE = 100
IDLE_S = 3600.0
ONCE_TIMEOUT_S = 600.0
CHECK_TIMEOUT_S = 3.0
FLOOR_S = 1.5
GIL_SECONDS = 300  # the Lab view keeps the last five minutes of who held the GIL
WEB = Path(forms.__file__).parent / "web"
# The files of a run, as the Lab view offers them: (file name, what it is).
FILES = (("live.json", "the run: experiment, stages, per-second series, percentiles, verdict"),
         ("timeline.csv", "requests per second per request name, with the one-shot requests' spans"),
         ("locust_hdr.json", "HDR latency summary in µs, with the encoded histograms"),
         ("locust_hdr.hgrm", "HDR percentile distribution (ms), as wrk2 prints it"))


logger = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def add_options(parser):
    # Not in the web UI: where a worker finds the servers is the worker's own business.
    parser.add_argument("--lab-servers", default="", env_var="LOCUST_LAB_SERVERS", include_in_web_ui=False,
                        help="workshop experiments: where a worker finds the lab's servers. Empty (default): by "
                             "compose service name; HOST: through the ports the lab publishes on HOST")
    parser.add_argument("--lab-port-prefix", default="2500", env_var="LAB_PORT_PREFIX", include_in_web_ui=False,
                        help="the lab's LAB_PORT_PREFIX, for --lab-servers (default: %(default)s)")


# This process's own --lab-servers and --lab-port-prefix, kept at init: the master's options, which
# it sends with every spawn message, overwrite a worker's.
REACH = {}


def server_address(role):
    """Where a role's server answers, as this process sees it: 'server-threaded:25000' inside the
    compose network, 'HOST:25002' through the published port."""
    host = REACH.get("servers")
    return forms.published_address(role.strategy, host, REACH["port_prefix"]) if host else role.address()


class LiveUser(FibUser):
    """A user of one role of a live experiment (the class is made per role, below)."""

    abstract = True
    role: forms.Role = None
    asked = False  # a one-shot user's request has gone

    def request_for(self, options):
        _, payload, expected = fib_request(self.role.n)
        return self.role.request_name, payload, expected

    def target(self, options):
        return "tcp://" + server_address(self.role)

    def send_requests(self):
        if not self.role.once:
            return super().send_requests()
        if self.asked:
            return None
        self.asked = True
        gevent.sleep(self.role.once_after_s)
        self.request_reported(ONCE_MESSAGE, role=self.role.key, user=f"{id(self):x}@{socket.gethostname()}")
        if not self.role.hold:  # a prefork child serves one connection until it closes
            self.client.close()
        return None


class LiveShape(LoadTestShape):
    """An experiment's stages, one after the other (the class is made per experiment, below)."""

    abstract = True
    experiment: forms.LiveForm = None

    def tick(self):
        return LAB.tick(self)


def settings_from_environment():
    """The CPU sets the servers run on: compose's settings (passed to the master) on this Docker's CPUs."""
    return forms.lab_settings(os.environ)


def user_class(experiment, role):
    """The user class of one role: its name is what Locust's UI lists ('C6_long_request')."""
    attributes = {"role": role, "fixed_count": role.count(settings_from_environment()), "abstract": False,
                  "host": f"tcp://{role.address()}", "__module__": __name__}  # what the UI lists beside it
    if role.once:
        attributes.update(wait_time=constant(IDLE_S), min_request_timeout_s=ONCE_TIMEOUT_S)
    return type(f"{experiment.key}_{role.key}", (LiveUser,), attributes)


ROLE_CLASSES = {}  # {claim id: {role key: user class}}


def make_classes():
    for experiment in live_forms().values():
        roles = ROLE_CLASSES[experiment.key] = {role.key: user_class(experiment, role) for role in experiment.roles}
        globals().update({cls.__name__: cls for cls in roles.values()})
        shape = type(experiment.shape_name, (LiveShape,), {
            "experiment": experiment, "abstract": False, "__module__": __name__,
            "__doc__": f"{experiment.title}: {experiment.about}"})
        globals()[shape.__name__] = shape


make_classes()


def python_build():
    """The lab image's Python, which every compose server runs: '3.13.5 (GIL, CPython)'."""
    free = sysconfig.get_config_var("Py_GIL_DISABLED")
    return f"{platform.python_version()} ({'free-threaded' if free else 'GIL'}, {platform.python_implementation()})"


def check_server(address):
    """None if the server at NAME:PORT answers fib(10) right within CHECK_TIMEOUT_S, else why not, in
    the lab's clients' own words (compose's health check, server.healthcheck, asks the same)."""
    try:
        with common.FibConnection(*parse_tcp_url(address), CHECK_TIMEOUT_S) as connection:
            common.check_fib_reply(10, connection.ask(b"10\n"))
    except common.ClientError as error:
        return f"{address} does not answer fib(10): {error}"
    return None


def connected_workers(runner):
    """The ids of the master's workers that are not missing."""
    return {worker.id for worker in runner.clients.all if worker not in runner.clients.missing}


class Lab:
    """The master's side of the workshop: the running experiment, its notes, its files."""

    def __init__(self):
        self.environment = None
        self.run = None  # the LiveRun of the experiment running or last run
        self.state = "idle"  # idle, running, final, partial
        self.why_partial = ""
        self.notes = []  # (epoch, one line) of what happened: a server down, a worker gone, Start twice
        self.workers_at_start = set()
        self.saved_to = None
        self.live_dir = Path(os.environ.get("LAB_LIVE_DIR", "results/live"))
        self.load = {}  # {experiment: measurements} of the load side, made once by the master
        self.wake_up = None  # both ping-pong floors (lab.cpu.wake_up), made once by the master
        self.gil = collections.deque(maxlen=GIL_SECONDS)  # compose's profile gil: lab.gil_sampler's seconds

    def measure_load_side(self):
        """Both ping-pong floors on the CPUs of perf2's layout (lab.cpu.wake_up), as the runner's loopback floor
        cell measures them: the across one for C10's text, both for the Lab view's wake-up cost."""
        settings = settings_from_environment()
        try:
            record, self.wake_up = wake_up.here(settings, FLOOR_S)
        except wake_up.NotMeasured as error:
            self.wake_up = wake_up.failure(error, wake_up.command(settings, FLOOR_S))
            self.note(f"could not measure the loopback floor: {error}")
            return
        self.load["loopback_floor"] = {"rate_per_s": record["rate_per_s"]}

    def note(self, line):
        logger.warning("lab: %s", line)
        self.notes = [*self.notes[-19:], (time.time(), line)]

    # --- driving the shape ---

    def tick(self, shape):
        """The shape's tick: (users, spawn rate, user classes) of the stage running now, None at the end.
        A shape picked while another runs (Start pressed twice) ticks on for the one running."""
        runner, now = self.environment.runner, time.time()
        if runner.state == STATE_INIT or self.run is None:
            self.begin(shape.experiment, now)
        run = self.run
        if self.state != "running":
            return None
        self.watch_workers()  # every second, whether or not anyone looks at the Lab view
        stage = len(run.stage_starts) - 1
        if len(run.stage_ends) > stage:  # between two stages: the next one starts now
            run.stage_starts.append(now)
            stage += 1
        elif run.stage_done(stage, now):
            run.stage_ends.append(now)
            if stage + 1 == len(run.experiment.stages):
                self.state = "final"
                run.ended_at = now
                return None
            # Every user stops before the next stage's start: Locust's dispatcher starts users of a
            # fixed count only when it starts from none.
            return 0, SPAWN_RATE, None
        roles = [run.experiment.role(key) for key in run.experiment.stages[stage].roles]
        classes = ROLE_CLASSES[run.experiment.key]
        return sum(role.count(run.settings) for role in roles), SPAWN_RATE, [classes[role.key] for role in roles]

    def begin(self, experiment, now):
        self.run = forms.LiveRun(experiment, now, series=_latency.run_results.recorder.per_second
                                if _latency.run_results else {}, stage_starts=[now],
                                settings=settings_from_environment(), load=self.load)
        self.state, self.why_partial, self.saved_to = "running", "", None
        self.notes = [(now, f"started {experiment.title}")]
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            self.workers_at_start = connected_workers(runner)
            if not self.workers_at_start:
                self.note("no worker is connected: nobody sends the experiment's requests")
        gevent.spawn(self.check_servers, experiment)

    def check_servers(self, experiment):
        for address in dict.fromkeys(server_address(role) for role in experiment.roles):
            problem = check_server(address)
            if problem:
                self.note(problem)
                self.mark_partial(problem)

    def mark_partial(self, why):
        if self.state == "running":
            self.why_partial = self.why_partial or why

    def on_once_message(self, environment, msg, **_):
        if self.run is not None:
            data = dict(msg.data)
            self.run.once.setdefault(data.pop("role"), {}).setdefault(data.pop("user"), {}).update(data)

    def on_test_stop(self, **_):
        if self.run is None:
            return
        if self.state == "running":  # stopped before its last stage ended
            self.run.ended_at = time.time()
            elapsed = self.run.ended_at - self.run.started_at
            self.why_partial = self.why_partial or (f"stopped after {elapsed:.0f} s of about "
                                                    f"{self.run.experiment.planned_s:.0f} s")
            self.note(f"{self.run.experiment.key} {self.why_partial}")
        elif self.state == "final" and not self.why_partial and self.saved_to:
            return  # ended by itself: the results writer, a test_stop listener before this one, saved it
        self.state = "partial" if self.why_partial else self.state
        self.save(self.environment, None)

    def on_swarm_request(self):
        runner = self.environment.runner
        if self.state == "running" and runner.state != STATE_STOPPED:
            self.note(f"Start pressed while {self.run.experiment.title} was running: ignored")

    def watch_workers(self):
        runner = self.environment.runner
        if self.state != "running" or not isinstance(runner, MasterRunner):
            return
        present = connected_workers(runner)
        for gone in sorted(self.workers_at_start - present):
            self.note(f"worker {gone} dropped out {time.time() - self.run.started_at:.0f} s into the run")
            self.mark_partial(f"worker {gone} dropped out")
        self.workers_at_start &= present

    # --- what the Lab view shows ---

    def verdict(self):
        if self.run is None:
            return None
        row = self.run.experiment.judge(self.run, self.run.settings)
        failures = self.run.failures()
        if failures and not self.why_partial:  # a failed request is a figure the server did not make
            errors = sorted(self.environment.stats.errors.values(), key=lambda e: -e.occurrences)
            self.why_partial = f"{failures} requests failed" + (f", e.g. {errors[0].error}" if errors else "")
        state = "partial" if self.why_partial else self.state
        return {**row, "state": state, "line": forms.verdict_line(row, state), "why_partial": self.why_partial}

    def data(self):
        self.watch_workers()
        if self.run is not None:
            self.run.now = time.time()
        results = _latency.run_results
        histograms = results.recorder.flush() if results else {}
        stats = self.environment.stats
        settings = settings_from_environment()  # once a request: every experiment and server reads the same
        return {
            "now": time.time(),
            "locust_state": self.environment.runner.state,
            "state": self.state,
            "experiments": [experiment.describe(settings) for experiment in live_forms().values()],
            "run": self.describe_run(),
            "verdict": self.verdict(),
            "series": self.series(),
            "latency": {name: _latency.summary(h) for name, h in sorted(histograms.items())},
            "errors": [{"name": e.name, "error": str(e.error), "count": e.occurrences}
                       for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)[:5]],
            "notes": [{"at": at, "line": line} for at, line in self.notes],
            "servers": self.servers(settings),
            "cpus": settings["cpus"],  # this Docker's CPUs, which the lab's containers may use
            "layout": forms.cpu_layout(os.environ, settings),  # each role's CPUs, and whether they were chosen or set
            "workers": getattr(self.environment.runner, "worker_count", None),
            "requests_per_worker": dict(results.requests_per_worker) if results else {},
            "files": [{"name": name, "about": about} for name, about in FILES] if self.saved_to else [],
            "saved_to": str(self.saved_to) if self.saved_to else None,
            "gil": list(self.gil),
            "wake_up": wake_up.shown(self.wake_up),
        }

    def take_gil_second(self, body):
        """One second of lab.gil_sampler's live mode (SecondPoster); why not, in one line, if it is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("second"), int) or not isinstance(
                body.get("threads"), list):
            return "not a second of lab.gil_sampler: {second, target, samples, free, threads}"
        self.gil.append(body)
        return None

    def describe_run(self):
        run = self.run
        if run is None:
            return None
        stages = run.experiment.stages
        return {"experiment": run.experiment.describe(run.settings), "started_at": run.started_at, "ended_at": run.ended_at,
                "stage_starts": run.stage_starts, "stage_ends": run.stage_ends, "settings": run.settings,
                "load": run.load, "stage": len(run.stage_starts) - 1,
                "in_flight": [run.in_flight_share(i) for i in range(len(run.stage_starts))],
                "stage_labels": [stage.label for stage in stages],
                "once": [{"role": role, **request} for role, by_user in run.once.items()
                         for request in by_user.values()]}

    def series(self):
        """{name: [[second, requests, mean µs, failures]]} of the run (the last 300 seconds)."""
        results = _latency.run_results
        if results is None:
            return {}
        out = {}
        for name, rows in list(results.recorder.per_second.items()):
            seconds = sorted(rows.items())[-300:]
            out[name] = [[s, c, round(us / c, 1) if c else None, f] for s, (c, us, f) in seconds]
        return out

    def servers(self, cpus):
        """Each server's CPUs: those it runs on (`cpus`: its setting, of this Docker's CPUs) and its setting."""
        configured = forms.configured_cpus(os.environ)
        build = python_build()
        return [{"service": forms.service(module), "cpus": forms.cpus_of(module, cpus),
                 "configured": forms.cpus_of(module, configured), "python": build} for module in forms.PUBLISHED]

    # --- files ---

    def save(self, environment, prefix):
        """A results writer (_latency): the run's files in LAB_LIVE_DIR/<time>-<claim>/."""
        if self.run is None or self.state == "running":
            return []
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.run.started_at))
        folder = self.saved_to or self.live_dir / f"{stamp}-{self.run.experiment.key}"
        record = self.data()
        record["series_all"] = {name: sorted([s, *row] for s, row in rows.items())
                                for name, rows in _latency.run_results.recorder.per_second.items()}
        try:
            written = _latency.run_results.write_histograms(str(folder / "locust"),
                                                            _latency.run_results.recorder.flush())
            write_atomic(folder / "forms.json", json.dumps(record, indent=1, default=str) + "\n")
            write_atomic(folder / "timeline.csv", self.timeline_csv(record))
        except OSError as error:
            self.note(f"could not save this run's files in {folder}: {error.strerror or error}")
            return []
        self.saved_to = folder
        return [*written, str(folder / "forms.json"), str(folder / "timeline.csv")]

    def timeline_csv(self, record):
        names = sorted(record["series_all"])
        spans = [(r.get("started_at"), r.get("ended_at")) for r in (record["run"] or {}).get("once", [])]
        seconds = sorted({row[0] for rows in record["series_all"].values() for row in rows})
        by_name = {name: {row[0]: row for row in rows} for name, rows in record["series_all"].items()}
        lines = ["second," + ",".join(f"{name} requests,{name} mean us" for name in names) + ",one_shot_running"]
        for s in seconds:
            cells = []
            for name in names:
                row = by_name[name].get(s)
                cells += [str(row[1]), f"{row[2] / row[1]:.1f}"] if row and row[1] else ["0", ""]
            running = any(a and a < s + 1 and (b is None or b > s) for a, b in spans)
            lines.append(f"{s},{','.join(cells)},{int(running)}")
        return "\n".join(lines) + "\n"

    def file(self, name):
        if self.saved_to is None or name not in dict(FILES):
            return None
        path = self.saved_to / name
        return path if path.is_file() else None


LAB = Lab()


def extended_rows(data):
    """The Lab tab in Locust's own UI: the running experiment and its verdict, in rows."""
    rows = []
    run, verdict = data["run"], data["verdict"]
    if run:
        rows += [{"what": "experiment", "value": run["experiment"]["title"]},
                 {"what": "claim", "value": run["experiment"]["claim"]},
                 {"what": "article", "value": run["experiment"]["article"]}]
    if verdict:
        rows += [{"what": "measured", "value": verdict["measured"]}, {"what": "verdict", "value": verdict["line"]}]
    for name, figures in data["latency"].items():
        if figures.get("count"):
            rows.append({"what": f"{name} latency (µs)", "value": ", ".join(
                f"{key} {figures[key]:,}" for key in ("p50", "p90", "p99", "p99_9", "max"))})
    rows += [{"what": "note", "value": note["line"]} for note in data["notes"][-3:]]
    rows.append({"what": "more", "value": "the full Lab view, with the per-second chart: /lab"})
    return rows


def install_web(environment):
    from flask import Blueprint, jsonify, request, send_file

    web_ui = environment.web_ui
    view = Blueprint("lab", __name__, static_folder=str(WEB), static_url_path="/lab/static")

    @view.route("/lab")
    def lab_page():
        return send_file(WEB / "lab.html")

    @view.route("/lab/data")
    def lab_data():
        return jsonify(LAB.data())

    @view.route("/lab/files/<name>")
    def lab_file(name):
        path = LAB.file(name)
        if path is None:
            return jsonify({"error": f"no file {name!r} from the last run"}), 404
        return send_file(path, as_attachment=True, download_name=f"{LAB.saved_to.name}-{name}")

    @view.route("/lab/gil", methods=["POST"])
    def lab_gil():
        why_not = LAB.take_gil_second(request.get_json(silent=True))
        return (jsonify({"error": why_not}), 400) if why_not else jsonify({"ok": True})

    web_ui.app.register_blueprint(view)

    @web_ui.app.before_request
    def note_second_start():
        if request.path.endswith("/swarm") and request.method == "POST":
            LAB.on_swarm_request()

    @web_ui.app.after_request
    def add_lab_tab(response):
        if request.path.endswith("/stats/requests") and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": "lab", "data": extended_rows(LAB.data())}]
            response.set_data(json.dumps(body))
        return response

    web_ui.template_args.update(
        extended_tabs=[{"title": "Lab", "key": "lab"}],
        extended_tables=[{"key": "lab", "structure": [{"key": "what", "title": "What"},
                                                      {"key": "value", "title": "Lab view"}]}],
        extended_csv_files=[{"href": f"/lab/files/{name}", "title": f"Lab: last run's {name} ({about})"}
                            for name, about in FILES])


@events.init.add_listener
def install(environment, **_):
    options = environment.parsed_options
    REACH.update(servers=getattr(options, "lab_servers", ""), port_prefix=getattr(options, "lab_port_prefix", ""))
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    LAB.environment = environment
    runner.register_message(ONCE_MESSAGE, LAB.on_once_message)
    environment.events.test_stop.add_listener(LAB.on_test_stop)
    _latency.results_writers.append(LAB.save)
    if environment.web_ui:
        install_web(environment)
    gevent.spawn(LAB.measure_load_side)
    if sys.version_info < (3, 11):
        logger.warning("the Lab view needs Python 3.11 or later")
