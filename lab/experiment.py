"""What an experiment module is made of: its cells, its claims, and the context its measurements run in.

An experiment module (lab/experiments/) uses Cell to say what to measure, @claim to judge it, and the
Context it is given to start servers and run clients in the run's containers.
"""
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable

from server import strategies


@dataclass
class Cell:
    """One measurement of a run: an experiment, on a strategy (and a variant), on a Python.

    Its id is made of these fields for the record's keys and the reader's eye; code asks for the
    fields, never parses the id: '3.13t/perf1/threaded', 'switch_interval/0.001', 'gil_stall'.
    """
    experiment: str = None  # set by the plan: the name of the module that measures it
    strategy: str = None  # the server's strategy (given as its module or its name), if the cell has a server
    variant: str = None  # what else tells an experiment's cells apart (a switch interval): the id shows it
    python: str = None  # the server's Python (--python); None: the lab image's
    params: dict = field(default_factory=dict)
    estimate_s: float = 5.0

    def __post_init__(self):
        self.strategy = strategies.key(self.strategy)

    @property
    def label(self):
        """The id within one Python's part of a run: 'perf1/threaded'."""
        return "/".join(filter(None, (self.experiment, self.variant or self.strategy)))

    @property
    def id(self):
        return "/".join(filter(None, (self.python, self.label)))

    def fields(self):
        return asdict(self)

    @classmethod
    def from_record(cls, record):
        """A cell from its stored fields (a stored cell holds its results beside them)."""
        return cls(**{name: record.get(name) for name in cls.__dataclass_fields__ if name in record})


REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"


class NotRun(Exception):
    """A rule cannot judge: a cell it needs is missing or failed (the message says which)."""


@dataclass
class Claim:
    """One of the article's claims, with the rule that judges a run's measurements of it."""
    id: str  # 'C6'
    text: str  # the claim, in the article's words
    article: str  # the article's figure
    rule_text: str  # the rule, in words
    rule: Callable  # rule(measured) -> (what was measured, in words; whether it reproduces the claim)
    version: int = 1  # raised whenever the rule changes, so that a stored verdict says which rule made it
    experiment: str = None  # set by the registry: the module that backs the claim

    @property
    def order(self):
        return claim_order(self.id)

    def judge(self, measured):
        """The verdict row of this claim, from a Measured view of one Python's cells."""
        try:
            text, ok = self.rule(measured)
            verdict = REPRODUCED if ok else NOT_REPRODUCED
        except NotRun as e:
            text, verdict = str(e), NOT_RUN
        return {"id": self.id, "python": measured.python, "text": self.text, "article": self.article,
                "measured": text, "verdict": verdict, "rule": self.rule_text, "rule_version": self.version,
                "cells": list(dict.fromkeys(measured.read))}


def claim_order(claim_id):
    """The sort key of a claim id: C2 before C10."""
    digits = "".join(c for c in claim_id if c.isdigit())
    return (claim_id.rstrip("0123456789"), int(digits) if digits else 0)


def claim(claim_id, text, *, article, rule, version=1):
    """Decorate a rule function as the claim it judges: the claim's text, the article's figure, the
    rule's text and the rule itself, side by side. The registry finds it in its module."""
    def make(judge):
        return Claim(claim_id, text, article, rule, judge, version)
    return make


def experiment_name(experiment):
    """An experiment's name, given its module, its module's __name__ or its name: 'convoy'."""
    return getattr(experiment, "__name__", experiment).rpartition(".")[2]


class Measured:
    """What a rule reads: the measurements of one Python's cells, asked for by their fields.

    measured(threaded) is the rule's own experiment on that strategy; measured(of=loopback_floor) and
    measured(threaded, of=convoy) another experiment's; measured(variant="0.001") a variant.
    A cell that is missing or failed raises NotRun, and the claim is 'not run'.
    """

    def __init__(self, cells, settings, experiment, python=None):
        self.cells, self.settings, self.experiment, self.python = cells, settings, experiment, python
        self.read = []

    def label(self, strategy=None, *, of=None, variant=None):
        """The label of the cell that measured(...) with the same arguments reads: 'convoy/threaded'."""
        return Cell(experiment_name(of or self.experiment), strategy, variant).label

    def __call__(self, strategy=None, *, of=None, variant=None):
        label = self.label(strategy, of=of, variant=variant)
        self.read.append(label)
        cell = self.cells.get(label)
        if not cell or cell.get("status") != "ok":
            raise NotRun(f"{label} {'failed' if cell else 'was not run'}")
        return cell["measurements"]


def target(server):
    """A client's arguments that aim it at the server."""
    return ["--host", server.host, "--port", server.port]


class Context:
    """What a measurement needs: the run's containers, its raw files, its CPU settings and its load."""

    def __init__(self, lab, run, settings, locust=None):
        self.lab, self.run, self.settings = lab, run, settings
        self.locust = locust  # None: the perf1 cells use clients.perf1

    @contextmanager
    def server(self, cell, *args):
        """The cell's strategy in its pinned container; its docker stats are saved with the cell.
        A strategy that could use several CPUs gets the pool's: whether it does is what is measured."""
        multicore = strategies.load(cell.strategy).MULTICORE
        cpus = self.settings["pool_cpus"] if multicore else self.settings["server_cpus"]
        with self.lab.server(cell.strategy, *args, cpus=cpus, python=cell.python) as server:
            yield server
        self.run.save_raw(cell.id, "docker_stats.json", {"strategy": cell.strategy, "cpus": cpus,
                                                         "python": cell.python, "samples": server.stats})

    def client(self, cell, name, module, *args, timeout, on_line=None, python=None, on=None):
        """clients.MODULE in the load container, its JSON record saved as the cell's raw file NAME.json;
        with python, in a container of that Python's image (the GIL and memory experiments measure
        the interpreter itself); with on=server, in that server's container, on its CPUs."""
        if on is not None:
            record = on.run_client(module, *args, "--json", timeout=timeout)
        else:
            record = self.lab.run_client(module, *args, "--json", timeout=timeout, on_line=on_line, python=python)
        self.run.save_raw(cell.id, f"{name}.json", record)
        return record

    def in_background(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) in a thread; join() returns its result or raises its error."""
        return Background(fn, *args, **kwargs)


class Background(threading.Thread):
    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs, self.result, self.error = fn, args, kwargs, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as e:
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.error:
            raise self.error
        return self.result


# A perf2 rate within 20% of what the perf2 client itself can do on the load CPUs (its loop against a
# trivially fast server, measured by the loopback floor cell) may be the client's limit, not the server's.
CLIENT_LIMITED = 0.8
CLIENT_LIMITED_RULE = (f"A perf2 rate at {CLIENT_LIMITED:.0%} or more of the perf2 client's ceiling (its own loop "
                       "against a trivially fast server on the load CPUs, measured in the same run) is marked "
                       "client-limited: the client may have set it, not the server.")


def client_limited(rate_per_s, ceiling_per_s):
    """Whether a perf2 rate is client-limited: CLIENT_LIMITED of its run's perf2 client ceiling or more.
    Never without a ceiling: a run that did not measure one (older runs) marks nothing."""
    return bool(rate_per_s and ceiling_per_s) and rate_per_s >= CLIENT_LIMITED * ceiling_per_s


def client_limit_note(rate_per_s, ceiling_per_s):
    """' (client-limited: 93% of the perf2 client's ceiling)' after a client-limited perf2 rate, else ''."""
    if not client_limited(rate_per_s, ceiling_per_s):
        return ""
    return f" (client-limited: {rate_per_s / ceiling_per_s:.0%} of the perf2 client's ceiling)"


def rate(x, ceiling=None):
    """A request rate in words: '2,035 req/s', 'n/a'. A perf2 rate given its run's perf2 client ceiling
    says so if it is client-limited."""
    return "n/a" if x is None else f"{x:,.0f} req/s" + client_limit_note(x, ceiling)


def pct(x):
    return f"{x * 100:.1f}%"
