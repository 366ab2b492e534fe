"""Read-only views of a run's record, shared by report.py and compare.py.

Nothing here measures or judges: the verdicts come from matrix.claims, the cells from
matrix.experiments, and the loading from matrix.results.
"""
import json
import sys
import time
from pathlib import Path

from matrix import claims, experiments
from matrix.results import Run


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
    except AttributeError:  # Run.load calls .get() on the JSON: a list or a number ends up here
        raise RunError(f"{path / 'results.json'}: not a results record (a JSON object)") from None
    for key, kind in (("run_id", str), ("status", str), ("settings", dict), ("environment", dict),
                      ("cells", dict), ("claims", list)):
        if not isinstance(run.record.get(key), kind):
            raise RunError(f"{path / 'results.json'}: {key!r} is missing or not a {kind.__name__}")
    return run


def ok_measurements(record, cell_id):
    """The cell's measurements, or None if it is missing or failed."""
    cell = record["cells"].get(cell_id)
    return cell["measurements"] if cell and cell.get("status") == "ok" else None


def cell_state(record, cell_id):
    """'ok', 'failed' or 'not run'."""
    cell = record["cells"].get(cell_id)
    return cell.get("status", "not run") if cell else "not run"


def planned_cell_ids(record):
    """Every cell today's runner plans for the run's settings, in its order; [] if it cannot plan them.
    (A run made by an older runner may have had other cells.)"""
    settings = record["settings"]
    try:
        if settings.get("python"):  # one Python's view of a run over several (experiments.python_view)
            cells = experiments.plan_for(settings["mode"], settings.get("strategies"), settings.get("experiments"),
                                         settings["python"])
        else:
            cells = experiments.plan(settings["mode"], settings.get("strategies"), settings.get("experiments"),
                                     settings.get("pythons"))
    except (KeyError, TypeError):
        return []
    return [cell.id for cell in cells]


def cell_ids(record, prefix):
    """The cells whose id starts with prefix: those of the run in its order, then those planned but not run."""
    ids = list(record["cells"])
    ids += [cell_id for cell_id in planned_cell_ids(record) if cell_id not in record["cells"]]
    return [cell_id for cell_id in ids if cell_id.startswith(prefix)]


def missing_cells(record):
    """Planned cells with no result at all."""
    return [cell_id for cell_id in planned_cell_ids(record) if cell_id not in record["cells"]]


def failed_cells(record):
    return {cell_id: cell for cell_id, cell in record["cells"].items() if cell.get("status") == "failed"}


def read_raw(run, cell_id, name):
    """A raw JSON file of the cell, or None if it is absent or unreadable."""
    try:
        return json.loads(run.raw_path(cell_id, name).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def switch_interval_cells(record):
    """{switch interval in seconds: cell id} of the sweep, ascending.

    The sweep's cell at the image's default interval may have been left out as a duplicate of
    convoy/threaded (the same experiment at the default): then convoy/threaded stands in for it.
    """
    sweep = {}
    for cell_id in cell_ids(record, "switch_interval/"):
        interval = _float_or_none(cell_id.partition("/")[2])
        if interval is not None:
            sweep[interval] = cell_id
    default = record["environment"].get("python", {}).get("switch_interval_s")
    if default is not None and default not in sweep and "convoy/threaded" in cell_ids(record, "convoy/"):
        sweep[default] = "convoy/threaded"
    return dict(sorted(sweep.items()))


def _float_or_none(text):
    try:
        return float(text)
    except ValueError:
        return None


def claims_rows(record):
    """The claims table: the run's own verdicts, each with the verdict today's rules give if different
    (as row["current_verdict"]; they differ when the rules changed after the run).

    A run stopped before it finished has no verdicts of its own: then today's rules make them.
    Returns (rows, notes); notes are sentences for the reader.
    """
    notes = []
    try:
        current = claims.verdicts(record)
    except Exception as e:  # a rule that cannot read an older record must not hide the stored table
        current, notes = None, [f"today's claim rules could not be applied to this run ({type(e).__name__}: {e})"]
    if record["claims"]:
        rows = [dict(row) for row in record["claims"]]
        by_id = {row["id"]: row for row in current or []}
        for row in rows:
            now = by_id.get(row["id"])
            if now and now["verdict"] != row["verdict"]:
                row["current_verdict"] = now["verdict"]
        return rows, notes
    if current is None:
        return [], notes
    notes.append("this run has no verdicts of its own (it never finished): today's rules made these.")
    return current, notes


NOW_NOTE = ("'now:' is the verdict today's rules (scripts/matrix/claims.py) give this run's measurements, "
            "where it differs from the verdict of the rules the run was judged by.")


def verdict_text(row):
    """The run's verdict, and today's where it differs: 'not reproduced (now: reproduced)'."""
    return row["verdict"] + (f" (now: {row['current_verdict']})" if "current_verdict" in row else "")


def python_build(python):
    """'CPython 3.13.5, GIL' or 'CPython 3.13.5 free-threaded, GIL disabled' from environment.python."""
    if not python:
        return "unknown"
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
