"""The experiments: one module each in this package, found here rather than listed by hand.

An experiment module reads like a strategy module: its docstring names the claims it backs, and it
declares, at module level:

  SIZES                {mode: params}: its sizes in each mode, quick and full
  cells(mode)          the cells it measures in that mode (lab.cells.Cell); the plan names the
                       experiment and the Python, runs it on each Python of the run, and drops the
                       cells of a strategy that Python cannot run
  measure(ctx, cell)   the measurements of one cell: a small dict for the record (raw files go
                       beside it through ctx)
  figures(m)           the key figures of a cell's measurements, [(name, value, unit)]: stored with
                       the cell for the report and compare (default: its top-level numbers)
  report(view)         its section of the report: document blocks, plots among them (optional)
  ACROSS_PYTHONS       [(header, column(view, python, views))]: its columns in the table across
                       Pythons (optional)
  claims               the claims it backs, each a rule function decorated with @claim
  SUPPORTS             the claims it explains without judging them (optional), e.g. ("C6",)
  PER_PYTHON = False   for an experiment of the load side, measured once in a run over several Pythons
  LIVE                 its live forms for the running lab's Locust (lab.live.forms.LiveForm), judged by
                       the same claims (optional)

and, optionally, what code shared by every experiment (the report, compare, the table across Pythons)
reads of it, found here and never by the experiment's name:

  PERF2_RATES = True   its req/s figures are rates clients.perf2 measured: each is read against the run's
                       perf2 client ceiling, and marked client-limited near it (lab.perf2)
  perf2_alone(view)    [(label, cell, measurement key)] of its perf2 rates with no long request running:
                       the loopback floor's plot shows them next to the floor
  PERF2_CEILING        the measurement of its cell that is the perf2 client's own ceiling in the run,
                       which every perf2 rate of the run is read against (one experiment measures it)
  live_measurements(floors)  its cell's measurements from the ping-pong floors the Lab view's master
                       measures (lab.cpu.wake_up.here), for the live forms that read the load side
  one_thread_s(view)   the mean latency of one request computed on one thread of the view's Python, or
                       None: the table across Pythons compares builds by it (one experiment measures it)
  RATE_HZ, DUMP_RATE_HZ  the GIL sampler's samples and py-spy dumps a second in its cells (one experiment
                       samples the GIL): scripts/bench-gil-sampler measures what the sampler costs at them

Experiments run, and their sections read, in the order of the claims they back or support.
"""
import pkgutil
from importlib import import_module

from lab.cells import Cell, experiment_name
from lab.claims import Claim, claim_order
from lab.pythons import version_tuple
from server import strategies as server_strategies

MODES = ("quick", "full")
REQUIRED = ("SIZES", "cells", "measure")
_registry = {}
_found = []


def modules():
    """{name: module} of every experiment, in the order of their claims."""
    if not _found:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                register(import_module(f"{__name__}.{info.name}"))
        _found.append(True)
    return dict(sorted(_registry.items(), key=lambda item: rank(item[1])))


def register(module):
    """Add an experiment module (the registry does so for each module of this package)."""
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise TypeError(f"experiment {module.__name__} lacks {', '.join(missing)}")
    name = experiment_name(module)
    for claim in claims_of(module):
        claim.experiment = name
    _registry[name] = module
    return module


def unregister(module):
    _registry.pop(experiment_name(module), None)


def claims_of(module):
    return [value for value in vars(module).values() if isinstance(value, Claim)]


def claims():
    """Every claim that an experiment backs, C1 first."""
    return sorted((claim for module in modules().values() for claim in claims_of(module)),
                  key=lambda claim: claim.order)


def live():
    """{claim id: live form} of every experiment that shows its claims live, C2 first."""
    found = []
    for module in modules().values():
        for form in getattr(module, "LIVE", ()):
            form.module = module
            found.append(form)
    return {form.key: form for form in sorted(found, key=lambda form: form.claim.order)}


def declaring(name):
    """{experiment name: module} of the experiments that declare name (PERF2_RATES, perf2_alone), in their order."""
    return {key: module for key, module in modules().items() if hasattr(module, name)}


def provider(name):
    """The experiment that declares name, a figure one experiment measures for all (PERF2_CEILING,
    one_thread_s), or None if none does."""
    found = declaring(name)
    if len(found) > 1:
        raise TypeError(f"experiments {', '.join(found)} each declare {name}: one experiment measures it")
    return next(iter(found.values()), None)


def is_perf2_rate(cell_record, unit):
    """Whether a key figure of that unit, of that stored cell, is a rate clients.perf2 measured: a req/s
    figure of an experiment that declares PERF2_RATES."""
    module = modules().get(cell_record.get("experiment"))
    return unit == "req/s" and getattr(module, "PERF2_RATES", False)


def rank(module):
    """Where an experiment goes: after the first claim it backs, or else after the first it supports."""
    own = sorted(claim.order for claim in claims_of(module))
    supported = sorted(claim_order(claim_id) for claim_id in getattr(module, "SUPPORTS", ()))
    return (own or supported or [("~", 0)])[0], not own, experiment_name(module)


def figures(cell_record):
    """[(name, value, unit)] of a stored cell's measurements: its experiment's key figures, or its
    top-level numbers for an experiment that does not say which (or that this lab does not know)."""
    module = modules().get(cell_record.get("experiment"))
    measurements = cell_record.get("measurements") or {}
    if module is not None and hasattr(module, "figures"):
        return [list(figure) for figure in module.figures(measurements)]
    return [[key, value, ""] for key, value in measurements.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def plan(mode, strategies=None, experiments=None, pythons=None, versions=None):
    """The cells of one run, in order.

    strategies, experiments: keep only those (a cell of no strategy always stays).
    pythons: run the experiments once per Python, the cell ids prefixed ('3.14t/perf1/threaded');
    an experiment with PER_PYTHON = False runs once, first.
    versions: {python: (major, minor)} of the servers' Pythons (None: the lab image's). A cell of a
    strategy that its Python cannot run is left out; a Python of unknown version keeps every cell.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    versions = dict(versions or {})
    for python in pythons or []:
        versions.setdefault(python, version_tuple(python))

    def cells(python, per_python=None):
        for name, module in modules().items():
            if experiments and name not in experiments:
                continue
            if per_python is not None and getattr(module, "PER_PYTHON", True) != per_python:
                continue
            for cell in module.cells(mode):
                cell.experiment, cell.python = name, python
                if strategies and cell.strategy and cell.strategy not in strategies:
                    continue
                if cell.strategy and not server_strategies.runs_on(cell.strategy, versions.get(python)):
                    continue
                yield cell

    if not pythons:
        return list(cells(None))
    return [*cells(None, False), *(cell for python in pythons for cell in cells(python, True))]


__all__ = ["Cell", "MODES", "claims", "declaring", "figures", "is_perf2_rate", "live", "modules", "plan", "provider",
           "register", "unregister"]
