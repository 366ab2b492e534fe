"""This machine's cost of waking a CPU, as the lab measures, records and shows it: the bare ping-pong floor
(clients.loopback_floor) with the echo and the client on one CPU and across two, on the CPUs of the
lab's perf2 layout (the server's answering thread on the first pool CPU, the client on the first load CPU).

A run records it under environment.wake_up (lab.runner.environment), the Lab view under wake_up in /lab/data;
the report, compare and the Lab view show it with MEANING, written here once.
"""
import subprocess
import sys

from clients import common
from lab.cpu import layout

MEANING = ("A bare ping-pong on one CPU and across two: their ratio is this machine's cost of waking a CPU; "
           "a perf2 rate is comparable only with the floor of its own layout.")
DURATION_S = 1.0  # the three loops of a run's start: a third of a second each
TIMEOUT_S = 30
NOT_MEASURED = "not measured"
ENVIRONMENT_KEY = "environment.wake_up"  # its leaves' labels in lab.records.record.environment_rows
# What a run or the Lab view keeps of clients.loopback_floor's record.
FIELDS = ("same_cpu", "same_cpu_per_s", "echo_cpu", "client_cpu", "across_cpus_per_s", "across_cpus_not_measurable",
          "perf2_layout", "cpuset")


class NotMeasured(Exception):
    """The floors could not be measured: one line, recorded in their place."""


def command(settings, duration_s=DURATION_S):
    """`python -m clients.loopback_floor ...` measuring both floors on the perf2 layout's CPUs, the same-CPU
    one on the client's CPU; with CPU settings that are no CPU sets ('unknown'), on the client's defaults."""
    try:
        echo, client = layout.cpus(settings)
        cpus = ["--same-cpu", client, "--across", f"{echo},{client}"]
    except (KeyError, ValueError):
        cpus = []
    return ["python", "-m", "clients.loopback_floor", "--duration", f"{duration_s:g}", *map(str, cpus), "--json"]


def summary(record, argv):
    """What a run's environment and the Lab view keep of a loopback_floor record, and the command that made it."""
    return {**{key: record.get(key) for key in FIELDS}, "command": " ".join(argv)}


def failure(error, argv):
    """The entry that stands for floors that could not be measured."""
    return {"error": str(error), "command": " ".join(argv)}


def here(settings, duration_s=DURATION_S):
    """Both floors measured by a child process of this one (the Lab view's master, whose container may use
    every CPU of the lab: only its affinity pins it): (the client's record, its summary). NotMeasured if the
    client fails."""
    argv = command(settings, duration_s)
    try:
        proc = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, timeout=TIMEOUT_S)
        if proc.returncode != 0:
            raise NotMeasured((proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])
        record = common.last_json_line(proc.stdout)
    except (OSError, ValueError, subprocess.SubprocessError) as error:
        raise NotMeasured(f"{type(error).__name__}: {error}") from None
    return record, summary(record, argv)


def ratio(entry):
    """same CPU / across CPUs, or None where either is missing."""
    same, across = (entry or {}).get("same_cpu_per_s"), (entry or {}).get("across_cpus_per_s")
    return same / across if same and across else None


def floors(entry):
    """(same CPU, across CPUs) in words: '48,215 req/s (echo and client on CPU 1)', 'not measured: why'."""
    if not entry or entry.get("error"):
        why = (entry or {}).get("error")
        return (f"{NOT_MEASURED}: {why}" if why else NOT_MEASURED,) * 2
    same = f"{entry['same_cpu_per_s']:,.0f} req/s (echo and client on CPU {entry['same_cpu']})"
    if entry.get("across_cpus_per_s") is None:
        return same, f"not measurable: {entry.get('across_cpus_not_measurable')}"
    return same, f"{entry['across_cpus_per_s']:,.0f} req/s (echo on CPU {entry['echo_cpu']}, client on CPU " \
                 f"{entry['client_cpu']})"


def line(entry):
    """The two floors and their ratio in one line, for the Lab view."""
    same, across = floors(entry)
    if same == across:
        return f"ping-pong floor: {same}"
    cost = ratio(entry)
    return f"ping-pong floor on one CPU: {same}; across two: {across}" + (f"; x{cost:.1f}" if cost else "")


def figures(entry):
    """[(label, value or None, text)] of an entry's two floors (req/s) and their ratio."""
    same, across = floors(entry)
    cost = ratio(entry)
    return [("ping-pong floor, same CPU", (entry or {}).get("same_cpu_per_s"), same),
            ("ping-pong floor, across CPUs", (entry or {}).get("across_cpus_per_s"), across),
            ("wake-up cost (same CPU / across CPUs)", cost, f"x{cost:.2f}" if cost else "–")]


def rows(environment):
    """[(label, text)] of a run's environment.wake_up, for the report's environment table."""
    entry = environment.get("wake_up") or {}
    where = f" (in a container of the lab image on CPUs {entry['cpuset']})" if entry.get("cpuset") else ""
    return [(label, text) for label, _, text in figures(entry)] + [
        ("wake-up measured by", entry["command"] + where if entry.get("command") else "–")]


def without(environment_rows):
    """lab.records.record.environment_rows without environment.wake_up's raw leaves: rows() shows them."""
    return [(label, text) for label, text in environment_rows if not label.startswith(ENVIRONMENT_KEY + ".")]


def shown(entry):
    """The Lab view's wake_up: the entry (None while it is measured), its line and MEANING."""
    return {**(entry or {}), "line": line(entry) if entry else "ping-pong floor: measuring", "meaning": MEANING}
