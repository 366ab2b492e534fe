"""The live controller: what the running lab's Locust master does with a live form (lab.live.forms).

One experiment runs at a time. Its shape's tick asks the controller which users run now: the form's
stages one after the other, each for its seconds (a stage with until_done also until its one-shot
requests have ended, then forms.TAIL_S more), every user stopped between two stages, and the run
stopped after the last one. The controller keeps what the Lab view shows (lab.live.routes serves it):
the run and what happened in it (a server that does not answer, a worker that dropped out, Start
pressed twice), the verdict of the claim's own rule on what the run has seen so far, latency
percentiles in µs from the HDR histograms merged across workers, the servers' CPUs and Python, the
machine's wake-up cost (lab.cpu.wake_up), and the last five minutes of who held the GIL and who waited
(clients.gil_sampler). Each run's files go to LAB_LIVE_DIR/<time>-<claim>/.

Only the lab's workers count (WorkerGate): with LAB_TOKEN set, a worker proves it has the token at connect,
and the reports of one that does not (its requests, its one-shot messages) enter nothing the verdict
reads; the GIL sampler's posts carry the token too (token_ok). With LAB_TOKEN empty, as shipped on
127.0.0.1, every worker counts.

Nothing here imports Locust, so that the controller's logic runs without it (tests/test_live_controller.py):
locustfiles/workshop.py makes the controller with its user classes and what it needs of Locust's side,
and hands it Locust's environment at init.
"""
import collections
import hashlib
import hmac
import json
import logging
import os
import platform
import time
from pathlib import Path

from lab import experiments
from lab.cpu import wake_up
from lab.live import forms
from lab.live.login import loopback
from lab.records.store import write_atomic
from server import build

SPAWN_RATE = 100
FLOOR_S = 1.5
GIL_SECONDS = 300  # the Lab view keeps the last five minutes of who held the GIL and who waited
RECORD, TIMELINE = "live.json", "timeline.csv"
# The files of a run, as the Lab view offers them: (file name, what it is).
FILES = ((RECORD, "the run: experiment, stages, per-second series, percentiles, verdict"),
         (TIMELINE, "requests per second per request name, with the one-shot requests' spans"),
         ("locust_hdr.json", "HDR latency summary in µs, with the encoded histograms"),
         ("locust_hdr.hgrm", "HDR percentile distribution (ms), as wrk2 prints it"))

PROVE_S = 5.0  # a worker proves the token within this long of its connect (it takes milliseconds)
REFUSED_KEPT = 20  # the Lab view lists the last 20 refused workers

logger = logging.getLogger(__name__)


def python_build():
    """The lab image's Python, which every compose server runs: '3.13.5 (GIL, CPython)'."""
    found = build.describe()
    return f"{found['version']} ({'free-threaded' if found['free_threaded'] else 'GIL'}, {platform.python_implementation()})"


def connected_workers(runner):
    """{id: users it runs} of a Locust master's workers that are not missing."""
    return {worker.id: worker.user_count for worker in runner.clients.all if worker not in runner.clients.missing}


def lab_token(environ=os.environ):
    """The lab's LAB_TOKEN (.env, which compose passes to the master, its workers and the GIL sampler); ''
    when none is set."""
    return environ.get("LAB_TOKEN", "").strip()


def token_missing(environ=os.environ):
    """Why the master must not start, in one line, or None.

    LAB_BIND beyond loopback publishes port 5557 to the room with LAB_TOKEN empty: any worker that reaches
    it would count. The master stops with this line rather than make up a token and print it in its log:
    the compose workers and the GIL sampler must have the same token, and compose gives all three only
    what .env says, so .env is the one place it can come from."""
    bind = environ.get("LAB_BIND", "")
    if lab_token(environ) or loopback(bind):
        return None
    return (f"LAB_BIND={bind} opens the lab beyond this machine, but LAB_TOKEN is empty: set LAB_TOKEN in .env "
            f"(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(18))') and run docker compose up -d")


def token_ok(value, environ=os.environ):
    """Whether a request's X-Lab-Token header (`value`, None if absent) is the lab's LAB_TOKEN, compared in
    constant time; True when LAB_TOKEN is empty (no token required: the lab listens on loopback only)."""
    token = lab_token(environ)
    return not token or hmac.compare_digest((value or "").encode(), token.encode())


def worker_proof(token, worker_id):
    """What a worker sends at connect: an HMAC-SHA256 of its Locust id under the token, never the token.

    Port 5557 is plain ZMQ, readable by anyone on the path. A proof of the token rather than the token
    itself keeps it from those who only read the traffic (who could otherwise join as the lab's own
    workers and post to /lab/gil), and a proof read there is good only for the id it names. A fresh
    nonce from the master would add nothing: whoever reads a proof on the wire can also send reports
    under that worker's id, since the master takes the sender's id from the message. Against that, only
    a network the room trusts helps (or workers on the lab's machine alone: LAB_BIND=127.0.0.1)."""
    return hmac.new(token.encode(), f"lab worker {worker_id}".encode(), hashlib.sha256).hexdigest()


class WorkerGate:
    """Which of a master's workers count.

    With a token, a worker counts once its proof (worker_proof, Locust's custom message lab_hello, sent at
    its connect) is right. One whose proof is wrong is refused at once; one with none (a worker without
    --lab-token, or not the lab's locustfiles at all) once PROVE_S have passed since the master first saw
    it. Until then it is pending, and counts no more than a refused one. A refusal is final for that id.
    Without a token every worker counts, as before LAB_TOKEN existed."""

    def __init__(self, token):
        self.token = token
        self.accepted = set()
        self.pending = {}  # {id: epoch first seen}
        self.refused = {}  # {id: (epoch, why)}, the last REFUSED_KEPT

    def counts(self, worker_id):
        return not self.token or worker_id in self.accepted

    def seen(self, worker_id, now):
        if self.token and worker_id not in self.accepted and worker_id not in self.refused:
            self.pending.setdefault(worker_id, now)

    def proved(self, worker_id, proof, now):
        """A worker's lab_hello: why it is refused, in a few words, or None."""
        if not self.token or worker_id in self.accepted or worker_id in self.refused:
            return None
        self.pending.pop(worker_id, None)
        if isinstance(proof, str) and hmac.compare_digest(proof.encode(), worker_proof(self.token, worker_id).encode()):
            self.accepted.add(worker_id)
            return None
        return self.refuse(worker_id, now, "its lab token is not this lab's" if proof else
                           "it has no lab token (--lab-token or LOCUST_LAB_TOKEN)")

    def overdue(self, now):
        """The pending workers whose PROVE_S have passed, refused now: [(id, why)]."""
        late = [worker_id for worker_id, since in self.pending.items() if now - since >= PROVE_S]
        for worker_id in late:
            del self.pending[worker_id]
        return [(worker_id, self.refuse(worker_id, now, f"it proved no lab token within {PROVE_S:g} s of its "
                                                        f"connect")) for worker_id in late]

    def refuse(self, worker_id, now, why):
        self.refused[worker_id] = (now, why)
        while len(self.refused) > REFUSED_KEPT:
            del self.refused[next(iter(self.refused))]
        return why


class LiveController:
    """The master's side of the live view: the experiment running or last run, its notes, its files.

    user_classes  {claim id: {role key: user class}}: what tick() gives Locust for a stage's roles
    spawn         spawn(function, *args) runs a function beside the shape's ticks (gevent.spawn)
    address       address(role): where the role's server answers, as this process sees it ('NAME:PORT')
    check         check(address): why the server at that address does not answer, or None
    latency       locustfiles/_latency, whose run_results are the master's merged histograms and
                  per-second counts, and whose summary() gives their percentiles; None: no results yet
    environ       the master's environment: the lab's CPU settings and LAB_LIVE_DIR
    clock         the time, in epoch seconds

    On a master, attach() also gets workers() and refuse(); the master's workers pass its WorkerGate (one
    refused or not yet accepted is left out of "no worker is connected" and "dropped out", and
    locustfiles/_latency asks counts() before it merges a report).
    """

    def __init__(self, user_classes, *, spawn, address, check, latency=None, environ=os.environ, clock=time.time):
        self.user_classes = user_classes
        self.spawn, self.address, self.check, self.latency = spawn, address, check, latency
        self.environ, self.clock = environ, clock
        self.environment = None  # Locust's, once attached
        self.workers = None  # on a master: workers() -> {id: users it runs} of the workers connected now
        self.refuse_worker = None  # on a master: refuse_worker(id, why) asks a refused worker to stop
        self.gate = WorkerGate(lab_token(environ))
        self.run = None  # the LiveRun of the experiment running or last run
        self.state = "idle"  # idle, running, final, partial
        self.why_partial = ""
        self.notes = []  # (epoch, one line) of what happened: a server down, a worker gone, Start twice
        self.workers_at_start = set()
        self.saved_to = None
        self.live_dir = Path(environ.get("LAB_LIVE_DIR", "results/live"))
        self.load = {}  # {experiment: measurements} of the load side, made once by the master
        self.wake_up = None  # both ping-pong floors (lab.cpu.wake_up), made once by the master
        self.gil = collections.deque(maxlen=GIL_SECONDS)  # compose's profile gil: clients.gil_sampler's seconds

    def attach(self, environment, workers=None, refuse=None):
        """Locust's environment (its runner's state, its statistics), and on a master, workers() and
        refuse(id, why)."""
        self.environment, self.workers, self.refuse_worker = environment, workers, refuse

    @property
    def results(self):
        """The master's RunResults (locustfiles/_latency), or None."""
        return self.latency.run_results if self.latency else None

    def settings(self):
        """The CPU sets the servers run on: compose's settings (passed to the master) on this Docker's CPUs."""
        return forms.lab_settings(self.environ)

    def measure_load_side(self):
        """Both ping-pong floors on the CPUs of perf2's layout (lab.cpu.wake_up), as the runner's loopback floor
        cell measures them: the across one for C10's text, both for the Lab view's wake-up cost."""
        settings = self.settings()
        try:
            record, self.wake_up = wake_up.here(settings, FLOOR_S)
        except wake_up.NotMeasured as error:
            self.wake_up = wake_up.failure(error, wake_up.command(settings, FLOOR_S))
            self.note(f"could not measure the loopback floor: {error}")
            return
        for name, experiment in experiments.declaring("live_measurements").items():
            self.load[name] = experiment.live_measurements(record)

    def note(self, line):
        logger.warning("lab: %s", line)
        self.notes = [*self.notes[-19:], (self.clock(), line)]

    # --- driving the shape ---

    def tick(self, experiment, starting=False):
        """A shape's tick: (users, spawn rate, user classes) of the stage running now, None at the end.
        `experiment` is the shape's live form, `starting` whether Locust is starting a run with it. A
        shape picked while another runs (Start pressed twice) ticks on for the one running."""
        now = self.clock()
        if starting or self.run is None:
            self.begin(experiment, now)
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
        classes = self.user_classes[run.experiment.key]
        return sum(role.count(run.settings) for role in roles), SPAWN_RATE, [classes[role.key] for role in roles]

    def begin(self, experiment, now):
        results = self.results
        self.run = forms.LiveRun(experiment, now, series=results.recorder.per_second if results else {},
                                 stage_starts=[now], settings=self.settings(), load=self.load)
        self.state, self.why_partial, self.saved_to = "running", "", None
        self.notes = [(now, f"started {experiment.title}")]
        if self.workers is not None:
            self.workers_at_start = self.counted_workers()
            if not self.workers_at_start:
                self.note("no worker is connected: nobody sends the experiment's requests")
            for worker_id in sorted(set(self.workers()) & self.gate.refused.keys()):
                self.note(f"worker {worker_id} is refused ({self.gate.refused[worker_id][1]}): its requests are "
                          f"not counted")
        self.spawn(self.check_servers, experiment)

    def check_servers(self, experiment):
        for address in dict.fromkeys(self.address(role) for role in experiment.roles):
            problem = self.check(address)
            if problem:
                self.note(problem)
                self.mark_partial(problem)

    def mark_partial(self, why):
        if self.state == "running":
            self.why_partial = self.why_partial or why

    def on_once_message(self, environment, msg, **_):
        """Locust's message from a one-shot user: its request started, or ended (a refused worker's: dropped)."""
        if self.run is not None and self.counts(getattr(msg, "node_id", None)):
            data = dict(msg.data)
            self.run.once.setdefault(data.pop("role"), {}).setdefault(data.pop("user"), {}).update(data)

    def on_test_stop(self, **_):
        if self.run is None:
            return
        if self.state == "running":  # stopped before its last stage ended
            self.run.ended_at = self.clock()
            elapsed = self.run.ended_at - self.run.started_at
            self.why_partial = self.why_partial or (f"stopped after {elapsed:.0f} s of about "
                                                    f"{self.run.experiment.planned_s:.0f} s")
            self.note(f"{self.run.experiment.key} {self.why_partial}")
        elif self.state == "final" and not self.why_partial and self.saved_to:
            return  # ended by itself: the results writer, a test_stop listener before this one, saved it
        self.state = "partial" if self.why_partial else self.state
        self.save(self.environment, None)

    def on_swarm_request(self, locust_stopped):
        """Start pressed (Locust's /swarm), while Locust has stopped its run or not."""
        if self.state == "running" and not locust_stopped:
            self.note(f"Start pressed while {self.run.experiment.title} was running: ignored")

    def watch_workers(self):
        self.check_workers()
        if self.state != "running" or self.workers is None:
            return
        present = self.workers()
        counted = {worker_id for worker_id in present if self.counts(worker_id)}
        for gone in sorted(self.workers_at_start - counted):
            self.note(f"worker {gone} dropped out {self.clock() - self.run.started_at:.0f} s into the run")
            self.mark_partial(f"worker {gone} dropped out")
        self.workers_at_start &= counted
        # Locust gives a refused worker that stays (one that ignores lab_refused) its share of the users
        # like any other: their requests are not counted, so the run is short of them.
        for worker_id in sorted(set(present) & self.gate.refused.keys()):
            if present[worker_id]:
                self.mark_partial(f"refused worker {worker_id} was given {present[worker_id]} of the users")

    # --- which workers count ---

    def counts(self, worker_id):
        """Whether a worker's reports count (locustfiles/_latency asks it of every report); a local run's
        own messages always do."""
        return self.workers is None or self.gate.counts(worker_id)

    def counted_workers(self):
        return {worker_id for worker_id in self.workers() if self.counts(worker_id)}

    def on_worker_connect(self, client_id, **_):
        """Locust's worker_connect (again after every run: a worker says it is ready)."""
        self.gate.seen(client_id, self.clock())

    def on_hello(self, environment, msg, **_):
        """A worker's lab_hello: {proof} (worker_proof, or None without a token)."""
        proof = msg.data.get("proof") if isinstance(msg.data, dict) else None
        why = self.gate.proved(msg.node_id, proof, self.clock())
        if why:
            self.note_refused(msg.node_id, why)

    def check_workers(self):
        """Refuse the workers that have not proved the token in time (every tick, every /lab/data, and
        PROVE_S after each connect). A worker connected before install() registered the listeners is
        seen here first."""
        if self.workers is None or not self.gate.token:
            return
        now = self.clock()
        for worker_id in self.workers():
            self.gate.seen(worker_id, now)
        for worker_id, why in self.gate.overdue(now):
            self.note_refused(worker_id, why)

    def note_refused(self, worker_id, why):
        """Noted once in what happened, and asked to stop: the lab's worker without the token stops;
        any other ignores it, and its reports are dropped all the same."""
        self.note(f"worker {worker_id} refused: {why}; its requests are not counted")
        if self.refuse_worker is not None:
            self.refuse_worker(worker_id, why)

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
            self.run.now = self.clock()
        results = self.results
        histograms = results.recorder.flush() if results else {}
        stats = self.environment.stats
        settings = self.settings()  # once a request: every experiment and server reads the same
        return {
            "now": self.clock(),
            "locust_state": self.environment.runner.state,
            "state": self.state,
            "experiments": [experiment.describe(settings) for experiment in experiments.live().values()],
            "run": self.describe_run(),
            "verdict": self.verdict(),
            "series": self.series(),
            "latency": {name: self.latency.summary(h) for name, h in sorted(histograms.items())},
            "errors": [{"name": e.name, "error": str(e.error), "count": e.occurrences}
                       for e in sorted(stats.errors.values(), key=lambda e: -e.occurrences)[:5]],
            "notes": [{"at": at, "line": line} for at, line in self.notes],
            "servers": self.servers(settings),
            "cpus": settings["cpus"],  # this Docker's CPUs, which the lab's containers may use
            "layout": forms.cpu_layout(self.environ, settings),  # each role's CPUs, and whether they were chosen or set
            "workers": len(self.counted_workers()) if self.workers is not None else None,
            "refused_workers": self.refused_workers(),
            "requests_per_worker": dict(results.requests_per_worker) if results else {},
            "files": [{"name": name, "about": about} for name, about in FILES] if self.saved_to else [],
            "saved_to": str(self.saved_to) if self.saved_to else None,
            "gil": list(self.gil),
            "wake_up": wake_up.shown(self.wake_up),
        }

    def refused_workers(self):
        """[{id, why, at, connected}] of the workers refused, the last REFUSED_KEPT."""
        present = set(self.workers()) if self.workers is not None else set()
        return [{"id": worker_id, "why": why, "at": at, "connected": worker_id in present}
                for worker_id, (at, why) in self.gate.refused.items()]

    def take_gil_second(self, body):
        """One second of clients.gil_sampler's live mode (SecondPoster); why not, in one line, if it is not one."""
        if not isinstance(body, dict) or not isinstance(body.get("second"), int) or not isinstance(
                body.get("threads"), list) or not isinstance(body.get("windows", []), list) or not isinstance(
                body.get("handoffs"), (int, float, type(None))):
            return "not a second of clients.gil_sampler: {second, target, samples, free, handoffs, threads, windows}"
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
        results = self.results
        if results is None:
            return {}
        out = {}
        for name, rows in list(results.recorder.per_second.items()):
            seconds = sorted(rows.items())[-300:]
            out[name] = [[s, c, round(us / c, 1) if c else None, f] for s, (c, us, f) in seconds]
        return out

    def servers(self, cpus):
        """Each server's CPUs: those it runs on (`cpus`: its setting, of this Docker's CPUs) and its setting."""
        configured = forms.configured_cpus(self.environ)
        python = python_build()
        return [{"service": forms.service(module), "cpus": forms.cpus_of(module, cpus),
                 "configured": forms.cpus_of(module, configured), "python": python} for module in forms.PUBLISHED]

    # --- files ---

    def save(self, environment, prefix):
        """A results writer (locustfiles/_latency): the run's files in LAB_LIVE_DIR/<time>-<claim>/."""
        if self.run is None or self.state == "running":
            return []
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.run.started_at))
        folder = self.saved_to or self.live_dir / f"{stamp}-{self.run.experiment.key}"
        record = self.data()
        results = self.results
        record["series_all"] = {name: sorted([s, *row] for s, row in rows.items())
                                for name, rows in results.recorder.per_second.items()}
        try:
            written = results.write_histograms(str(folder / "locust"), results.recorder.flush())
            write_atomic(folder / RECORD, json.dumps(record, indent=1, default=str) + "\n")
            write_atomic(folder / TIMELINE, self.timeline_csv(record))
        except OSError as error:
            self.note(f"could not save this run's files in {folder}: {error.strerror or error}")
            return []
        self.saved_to = folder
        return [*written, str(folder / RECORD), str(folder / TIMELINE)]

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
