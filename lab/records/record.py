"""Read-only views of a stored run, for the report and compare: nothing here plans, measures or judges.

A RunView asks the record for cells by their fields; RunView(run, python) is one Python's part of a
run over several (--python): that Python's cells and the shared ones (the loopback floor).
"""
import json
import sys
import time
from functools import cached_property
from pathlib import Path

from lab import experiments
from lab.cells import Cell, experiment_name
from lab.records.store import SCHEMA_1, Run
from server.strategies import key


class RunError(Exception):
    """A run directory that cannot be read; its message is one line, for the user."""


def one_line_errors(prog, command):
    """Run command() and return its exit status; an unreadable run or a file that cannot be written
    is one line on stderr and exit status 2, never a traceback."""
    try:
        return command()
    except (RunError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2


def load_run(directory):
    path = Path(directory)
    if not path.is_dir():
        raise RunError(f"{directory}: no such directory")
    try:
        run = Run.load(path)
    except ValueError as e:
        raise RunError(str(e)) from None
    if run.record.get("upgraded_from") == SCHEMA_1:  # schema 1 stored no figures: its experiments say which
        for cell in run.record["cells"].values():
            if cell.get("status") == "ok":
                cell["figures"] = experiments.figures(cell)
    return run


class RunView:
    def __init__(self, run, python=None):
        self.run, self.record, self.dir, self.python = run, run.record, run.dir, python

    @property
    def settings(self):
        return self.record["settings"]

    @cached_property
    def environment(self):
        """The run's environment; in one Python's part, environment.python is that Python's."""
        environment = self.record["environment"]
        if self.python is None:
            return environment
        return {**environment, "python": environment.get("pythons", {}).get(self.python, {})}

    def parts(self):
        """{Python: its part} of a run over several Pythons; {the lab image's Python: the whole} otherwise."""
        pythons = self.settings.get("pythons")
        if pythons:
            return {python: RunView(self.run, python) for python in pythons}
        python = self.environment.get("python", {})
        return {f"{python.get('version', '?')}{'t' if python.get('free_threaded') else ''}": self}

    def cells(self, experiment=None):
        """The cells the run planned (in its order), then any it has that it did not plan; only those of
        this Python and the shared ones in a Python's part; only those of an experiment if given."""
        planned = [Cell.from_record(fields) for fields in self.record.get("planned") or []]
        ids = {cell.id for cell in planned}
        recorded = [Cell.from_record(cell) for cell_id, cell in self.record["cells"].items() if cell_id not in ids]
        name = experiment and experiment_name(experiment)
        return [cell for cell in planned + recorded
                if (self.python is None or cell.python in (None, self.python))
                and (name is None or cell.experiment == name)]

    def find(self, experiment, strategy=None, variant=None):
        """The cell of those fields in this view, or None."""
        return next((cell for cell in self.cells(experiment)
                     if cell.strategy == key(strategy) and (variant is None or cell.variant == variant)), None)

    def result(self, cell):
        return self.record["cells"].get(cell.id) if cell else None

    def state(self, cell):
        """'ok', 'failed' or 'not run'."""
        result = self.result(cell)
        return result.get("status", "not run") if result else "not run"

    def measurements(self, cell):
        """The cell's measurements, or None if it is missing or failed."""
        result = self.result(cell)
        return result["measurements"] if result and result.get("status") == "ok" else None

    def perf2_ceiling(self):
        """The perf2 client's own ceiling on the load CPUs, in req/s, from the cell of the experiment that
        declares PERF2_CEILING: measured once per run and so the same in every Python's part; None for a
        run that did not measure it."""
        source = experiments.provider("PERF2_CEILING")
        return (self.measurements(self.find(source)) or {}).get(source.PERF2_CEILING) if source else None

    def raw(self, cell, name):
        """A raw JSON file of the cell, or None if it is absent or unreadable."""
        try:
            return json.loads(self.run.raw_path(cell.id, name).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def missing(self):
        """Planned cells with no result at all ([] for a record that did not store its plan)."""
        return [cell for cell in self.cells() if cell.id not in self.record["cells"]]

    def failed(self):
        return {cell_id: cell for cell_id, cell in self.record["cells"].items() if cell.get("status") == "failed"}

    def verdicts(self):
        """The stored verdicts: the run's own, as it judged them (the rules of a later lab never re-judge them)."""
        return [row for row in self.record["claims"] if self.python is None or row.get("python") == self.python]


def verdict_label(row):
    """'C4', or 'C4 on 3.13t' in a run over several Pythons."""
    return row["id"] + (f" on {row['python']}" if row.get("python") else "")


def python_build(python):
    """'CPython 3.13.5, GIL' or 'CPython 3.13.5 free-threaded, GIL disabled' from environment.python."""
    if not python:
        return "unknown"
    if python.get("error"):  # its image could not be built: its cells say why
        return "image not built"
    name = {"cpython": "CPython"}.get(python.get("implementation"), python.get("implementation") or "Python")
    build = " free-threaded" if python.get("free_threaded") else ""
    gil = "GIL" if python.get("gil_enabled", True) else "GIL disabled"
    if python.get("free_threaded") and python.get("gil_enabled"):
        gil = "GIL re-enabled at run time"
    return f"{name} {python.get('version', '?')}{build}, {gil}"


def utc(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "unknown"


def duration(seconds):
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# The environment as (label, dotted key in the record), in reading order; any other key follows.
ENVIRONMENT_FIELDS = [
    ("status", "status"), ("mode", "settings.mode"), ("started", "started_at"),
    ("Python (in the image)", "environment.python"), ("switch interval (s)", "environment.python.switch_interval_s"),
    ("CPU model", "environment.cpu_model"), ("CPUs (os.cpu_count)", "environment.cpu_count"),
    ("CPUs (Docker host)", "environment.host_cpus"),
    ("server cpuset", "environment.cpusets.server"), ("pool cpuset", "environment.cpusets.pool"),
    ("load cpuset", "environment.cpusets.load"), ("kernel", "environment.kernel"),
    ("Docker", "environment.docker.server_version"), ("Docker OS", "environment.docker.operating_system"),
    ("image", "environment.image.name"), ("image id", "environment.image.id"),
    ("lab commit", "environment.lab_commit"), ("uncommitted changes", "environment.lab_dirty"),
    ("runner Python", "environment.runner_python"),
    ("strategies", "settings.strategies"), ("experiments", "settings.experiments"),
]
# Shown elsewhere (the python dict as its build) or repeated by the cpusets.
_ALREADY_SHOWN = {"environment.python.version", "environment.python.implementation",
                  "environment.python.free_threaded", "environment.python.gil_enabled",
                  "settings.server_cpus", "settings.pool_cpus", "settings.load_cpus", "settings.image"}


def environment_rows(record):
    """[(label, text)] of everything the figures depend on, the known fields first."""
    leaves = dict(_leaves({"environment": record["environment"], "settings": record["settings"]}))
    leaves["status"], leaves["started_at"] = record["status"], record.get("started_at")
    rows, shown = [], set(_ALREADY_SHOWN)
    for label, key in ENVIRONMENT_FIELDS:
        if key == "environment.python":
            rows.append((label, python_build(record["environment"].get("python"))))
        elif key == "started_at":
            rows.append((label, f"{utc(record.get('started_at'))}, took "
                                f"{duration(_elapsed(record))}"))
        else:
            rows.append((label, _text(leaves.get(key))))
        shown.add(key)
    rows += [(key, _text(value)) for key, value in leaves.items() if key not in shown]
    return rows


def _elapsed(record):
    started, ended = record.get("started_at"), record.get("ended_at")
    return ended - started if started and ended else None


def _leaves(value, prefix=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, value


def _text(value):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def summary_line(record):
    env = record["environment"]
    cpusets = env.get("cpusets", {})
    return (f"run {record['run_id']} · {record['status']} · {record['settings'].get('mode', '?')} mode · "
            f"{utc(record.get('started_at'))} · {python_build(env.get('python'))} · "
            f"{env.get('cpu_model', 'unknown CPU')}, {env.get('cpu_count', '?')} CPUs · cpusets: "
            + ", ".join(f"{role} {cpus}" for role, cpus in cpusets.items()))
