"""The live form of an experiment: what the running lab's Locust does to show a claim, and how the
Lab view judges it with the runner's own rule.

An experiment module lists its live forms in LIVE, each a LiveForm:

  roles    the users it runs, each a Role: how many, which server, which fib(n), and whether each
           user asks once (the long request, a late client) or over and over (perf1, perf2)
  stages   the users running in each stage, one after the other; the run stops by itself after
           the last one
  cells    cells(run) -> {cell label: measurements}: the same measurements that the runner's cells
           of that experiment give, made from what the live run has seen so far (a LiveRun); the
           claim's own rule judges them, so a live verdict and a batch verdict are the same code

Nothing here imports Locust: locustfiles/workshop.py turns these into Locust user and shape classes.
"""
import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

from lab.claims import NOT_RUN, Claim, Measured, NotRun
from lab.cpu.cpusets import format_cpuset, parse_cpuset, pinned, usable_cpus
from server import affinity, layouts, placement, strategies
from server.protocol import PORT
from server.strategies import key as strategy_name

SETTLE_S = 1  # whole seconds left out after a stage starts: users connect, the server warms up
TAIL_S = 2.0  # a stage that waits for one-shot requests goes on this long after the last one ends
MAX_WAIT_S = 120.0  # ... but no longer than this past its own seconds
MIN_SECONDS = 2  # whole seconds a window needs before a figure is made from it


# The servers of the compose lab, in the order of their published ports (server.strategies says why).
PUBLISHED = strategies.PUBLISHED


# The lab's three CPU settings as the rules read them (the runner's options) and as compose passes them.
CPU_SETTINGS = {f"{role}_cpus": variable for role, variable in layouts.SETTINGS.items()}
NUMBERS = ("no", "one", "two", "three", "four")


class NotEnough(NotRun):
    """The live run has not seen enough yet for the figure a rule needs."""


def resolved_cpus(environ):
    """({role: CPU set text}, how they were chosen) of compose's three settings as the master's environment
    has them, an empty one (the default) resolved as server.affinity resolves it in each container: by the
    layout for this Docker's CPUs (LAB_CPUS_AVAILABLE, which it exported to the master); 'unknown' when the
    environment does not say."""
    given = {role: environ.get(variable, "") for role, variable in layouts.SETTINGS.items()}
    try:
        return layouts.resolve(given, parse_cpuset(environ.get(affinity.AVAILABLE, "")))
    except ValueError:  # no LAB_CPUS_AVAILABLE: not started by the image's entrypoint
        return {role: cpus or "unknown" for role, cpus in given.items()}, "unknown"


def configured_cpus(environ):
    """compose's three CPU settings, resolved (resolved_cpus): {'pool_cpus': '0-1', ...}."""
    return {f"{role}_cpus": cpus for role, cpus in resolved_cpus(environ)[0].items()}


def cpu_layout(environ, settings=None):
    """The CPU layout the compose lab runs on, for the Lab view: each role's CPUs of this Docker's (as
    lab_settings has them; given settings, those, already read) and how they were chosen: {'server': '0',
    'pool': '0-1', 'load': '1', 'chosen': 'automatic for 2 CPUs'}."""
    settings = settings or lab_settings(environ)
    return {**{role: settings[f"{role}_cpus"] for role in layouts.ROLES}, "chosen": resolved_cpus(environ)[1]}


def lab_settings(environ):
    """The CPUs the compose lab's servers and load run on, from the master's environment: each of compose's
    settings (LAB_POOL_CPUS, ...) on the CPUs this Docker has, as server.affinity pins every container
    (LAB_CPUS_AVAILABLE, which it exported to the master: the master's container's CPUs, which are every
    container's in a compose lab); 'cpus', those ('unknown': not given, each setting as it is); and
    'placement', how the servers place their threads (server.placement: fixed unless LAB_SERVER_ARGS says free)."""
    available = environ.get(affinity.AVAILABLE, "")
    settings = configured_cpus(environ)
    placed = placement.FREE if "--placement free" in environ.get("LAB_SERVER_ARGS", "") else placement.FIXED
    try:
        have = parse_cpuset(available)
    except ValueError:
        return {**settings, "cpus": "unknown", "placement": placed}
    for name, configured in settings.items():
        try:
            settings[name] = format_cpuset(pinned(parse_cpuset(configured), have))
        except ValueError:
            pass  # not a CPU set: shown as it is
    return {**settings, "cpus": format_cpuset(have), "placement": placed}


def cpus_of(strategy, settings):
    """The CPU setting a strategy's server runs on: the pool's if it could use more than one CPU."""
    return settings.get("pool_cpus" if strategies.load(strategy_name(strategy)).MULTICORE else "server_cpus", "")


def number(n):
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


def service(strategy):
    """The compose service that runs a strategy: 'server-threaded'."""
    return f"server-{strategy_name(strategy)}"


def published_address(strategy, host, prefix):
    """Where a compose server answers from outside the lab's network: 'HOST:25002'."""
    names = [strategy_name(s) for s in PUBLISHED]
    return f"{host}:{prefix}{names.index(strategy_name(strategy)) + 1}"


@dataclass(frozen=True)
class Role:
    """`users` users that each ask fib(n) of one strategy's server.

    once_after_s None: each asks over and over (perf1, perf2). A number: each asks once, that long
    after its stage starts (a long request, a late client), then closes its connection, or with
    hold, keeps it open and idle.
    """
    key: str  # 'perf2', 'long_request': its user class is CLAIM_KEY ('C6_long_request')
    strategy: object  # the server's strategy (module or name)
    n: int
    users: int = 1
    once_after_s: float = None
    per_pool_cpu: bool = False  # `users` for each CPU of the pools (prefork has a child per CPU)
    hold: bool = False

    def count(self, settings):
        """How many users the role runs, given the lab's CPU settings."""
        if not self.per_pool_cpu:
            return self.users
        try:
            return self.users * len(parse_cpuset(settings.get("pool_cpus", "")))
        except ValueError:
            return self.users * len(usable_cpus())  # unknown: as many as this process may use

    @property
    def request_name(self):
        """Locust's name for its requests, the same for every role asking the same of the same server."""
        return f"fib({self.n}) {strategy_name(self.strategy)}"

    @property
    def once(self):
        return self.once_after_s is not None

    @property
    def service(self):
        return service(self.strategy)

    def address(self):
        return f"{self.service}:{PORT}"


@dataclass(frozen=True)
class Stage:
    """Some of the roles, for some seconds; with until_done, also until that one-shot role's
    requests have all ended (then TAIL_S more), so that a long request is seen whole."""
    seconds: float
    roles: tuple
    until_done: str = None
    label: str = ""


@dataclass
class LiveForm:
    """One claim shown live: its roles, its stages, and its cells as the claim's rule reads them."""
    claim: Claim
    title: str
    roles: tuple
    stages: tuple
    cells: Callable
    about: str = ""  # what the room sees, in one or two sentences
    module: object = None  # set by the registry: the experiment module it lives in
    min_cpus: int = 1  # the CPUs each of its servers needs for the claim to say anything, as its module declares
    min_lab_cpus: int = 1  # the CPUs the whole lab needs (e.g. the load on a CPU apart from the server's)

    def short_of_cpus(self, settings):
        """Why this lab cannot show the claim, in one line (this Docker has fewer than min_lab_cpus or
        min_cpus CPUs, or a server of it has fewer than min_cpus), or None:
        'needs two CPUs: this Docker gives the lab one (CPU 0)'."""
        try:
            fewest = min((parse_cpuset(cpus_of(s, settings)) for s in self.strategies()), key=len)
        except ValueError:
            return None  # unknown: nothing to say
        try:
            docker = parse_cpuset(settings.get("cpus", ""))
        except ValueError:
            docker = None
        most = max(self.min_cpus, self.min_lab_cpus)
        if docker is not None and len(docker) < most:
            return (f"needs {number(most)} CPUs: this Docker gives the lab {number(len(docker))} "
                    f"(CPU {format_cpuset(docker)})")
        if len(fewest) >= self.min_cpus:
            return None
        return (f"needs {number(self.min_cpus)} CPUs: its server runs on {number(len(fewest))} "
                f"(CPU {format_cpuset(fewest)}; LAB_POOL_CPUS in .env)")

    @property
    def key(self):
        return self.claim.id

    @property
    def shape_name(self):
        """The name Locust's UI lists it under: 'C6_the_convoy_on_threaded'."""
        slug = "".join(c if c.isalnum() else "_" for c in self.title.split(":", 1)[-1].strip())
        return f"{self.key}_{'_'.join(filter(None, slug.split('_')))}"

    def role(self, key):
        return next(role for role in self.roles if role.key == key)

    def strategies(self):
        return list(dict.fromkeys(strategy_name(role.strategy) for role in self.roles))

    @property
    def planned_s(self):
        return sum(stage.seconds for stage in self.stages)

    def describe(self, settings=None):
        settings = settings or {}
        return {"key": self.key, "shape": self.shape_name, "title": self.title, "about": self.about,
                "claim": self.claim.text, "article": self.claim.article, "rule": self.claim.rule_text,
                "planned_s": self.planned_s, "servers": [service(s) for s in self.strategies()],
                "min_cpus": self.min_cpus, "short_of_cpus": self.short_of_cpus(settings),
                "stages": [{"label": stage.label, "seconds": stage.seconds,
                            "users": {r: self.role(r).count(settings) for r in stage.roles}}
                           for stage in self.stages]}

    def judge(self, run, settings):
        """The claim's verdict row from what the run has seen so far (verdict 'not run' while there is
        not enough, or too few CPUs to say anything): the runner's own rule, on cells made the runner's way."""
        short = self.short_of_cpus(settings)
        try:
            if short:
                raise NotRun(short)
            cells = {label: {"status": "ok", "measurements": m} for label, m in self.cells(run).items()}
        except NotRun as e:
            cells, early = {}, e
        else:
            early = None
        row = self.claim.judge(Measured(cells, settings, self.module))
        if early is not None:
            row["measured"] = str(early)
        row["short_of_cpus"] = short
        return row


@dataclass
class LiveRun:
    """What the master has seen of one run of an experiment.

    series: {request name: {second (epoch): [requests, sum of their times in µs, failures]}}
    once:   {role key: {user id: {'started_at', 'ended_at', 'succeeded'}}}, one-shot requests
    stage_starts, stage_ends: when each stage began and ended (epoch seconds); ended_at: when the run stopped
    """
    experiment: LiveForm
    started_at: float
    series: dict = field(default_factory=dict)
    once: dict = field(default_factory=dict)
    stage_starts: list = field(default_factory=list)
    stage_ends: list = field(default_factory=list)
    ended_at: float = None
    now: float = None
    settings: dict = field(default_factory=dict)  # the lab's CPU sets, as the rules read them
    load: dict = field(default_factory=dict)  # {experiment: measurements} of the load side (the loopback floor)

    @classmethod
    def from_record(cls, experiment, record):
        """The run a live.json (the Lab view's saved data) holds, to judge it again."""
        run = record["run"]
        once = {}
        for i, request in enumerate(run["once"]):
            request = dict(request)
            once.setdefault(request.pop("role"), {})[i] = request
        series = {name: {row[0]: row[1:] for row in rows} for name, rows in record["series_all"].items()}
        return cls(experiment, run["started_at"], series=series, once=once, stage_starts=run["stage_starts"],
                   stage_ends=run["stage_ends"], ended_at=run["ended_at"], settings=run["settings"],
                   load=run["load"])

    def window(self, stage):
        """(start, end) of a stage: from its start to its end, the run's end, or now."""
        if stage >= len(self.stage_starts):
            raise NotEnough(f"not enough data yet: stage {stage + 1} has not started")
        ends = self.stage_ends[stage:stage + 1] or [self.ended_at or self.now]
        return self.stage_starts[stage], ends[0]

    def seconds(self, name, start, end, settle=SETTLE_S):
        """[(second, requests, sum µs, failures)] of the whole seconds of [start + settle, end)."""
        by_second = self.series.get(name, {})
        first, last = math.ceil(start) + settle, math.floor(end)
        return [(s, *by_second.get(s, (0, 0, 0))) for s in range(first, last)]

    def buckets(self, name, start, end, settle=SETTLE_S):
        """The per-second counts as a perf2 record's buckets, for lab.perf2.rates()."""
        rows = self.seconds(name, start, end, settle)
        if len(rows) < MIN_SECONDS:
            raise NotEnough(f"not enough data yet: {len(rows)} whole seconds of {name}")
        return {"interval_s": 1.0, "buckets": [(s, count) for s, count, *_ in rows]}

    def mean_latency_s(self, name, start, end):
        """(mean seconds per request, requests) over the whole seconds of a window."""
        rows = self.seconds(name, start, end)
        count = sum(r[1] for r in rows)
        if len(rows) < MIN_SECONDS or not count:
            raise NotEnough(f"not enough data yet: {count} requests of {name} in {len(rows)} whole seconds")
        return sum(r[2] for r in rows) / count / 1e6, count

    def in_flight_share(self, stage):
        """The share of a stage's whole seconds in which its looping users had a request in flight: the
        sum of their requests' times over (users x seconds). Near 1 when the clients kept the server
        busy; well below it when the load side was starved (a busy machine), for requests as slow as
        perf1's. None for a stage of one-shot users only."""
        loops = [self.experiment.role(key) for key in self.experiment.stages[stage].roles]
        loops = [role for role in loops if not role.once]
        if not loops:
            return None
        start, end = self.window(stage)
        users = sum(role.count(self.settings) for role in loops)
        by_name = [self.seconds(name, start, end) for name in dict.fromkeys(role.request_name for role in loops)]
        seconds = len(by_name[0])  # one window: every name has the same seconds
        busy_s = sum(row[2] for rows in by_name for row in rows) / 1e6
        return busy_s / (users * seconds) if seconds else None

    def requests(self, role_key):
        """The one-shot requests of a role that have ended: [{'started_at', 'ended_at', 'succeeded'}]."""
        done = [r for r in self.once.get(role_key, {}).values() if "ended_at" in r]
        if not done:
            raise NotEnough(f"not enough data yet: waiting for the {role_key} request to end")
        return done

    def load_side(self, experiment):
        """The measurements of a load-side experiment that the master made (the loopback floor)."""
        if experiment not in self.load:
            raise NotEnough(f"not enough data yet: the master has not measured {experiment}")
        return self.load[experiment]

    def stage_done(self, stage, now):
        """Whether a stage has run its course at `now`."""
        spec = self.experiment.stages[stage]
        start = self.stage_starts[stage]
        if now - start < spec.seconds:
            return False
        if spec.until_done is None:
            return True
        role = self.experiment.role(spec.until_done)
        ends = [r.get("ended_at") for r in self.once.get(role.key, {}).values()]
        if len(ends) >= role.count(self.settings) and all(ends):
            return now >= max(ends) + TAIL_S
        return now - start >= spec.seconds + MAX_WAIT_S

    def failures(self):
        return sum(row[2] for by_second in self.series.values() for row in by_second.values())


def verdict_line(row, state):
    """What the Lab view says of a verdict row in a run that is 'running', 'final' or 'partial':
    a partial run's figures are shown, never its verdict as final."""
    if state == "partial":
        return "partial run: no verdict"
    if row["verdict"] == NOT_RUN:
        waiting = state == "running" and not row.get("short_of_cpus")
        return "not enough data yet" if waiting else "not judged: " + row["measured"]
    return row["verdict"] if state == "final" else f"so far: {row['verdict']}"


def mean(values):
    return statistics.fmean(values) if values else None
