"""CPU sets as Docker's cpuset and Linux write them: '0', '0-1', '0,2-3'; and which of them a process runs on.

Standard library only: server.affinity pins every container of the lab with it, before anything else
runs (lab.cpu.cpusets re-exports it for the runner and the Lab view). The one place that asks which
CPUs this process may use (usable_cpus) and whether it can pin itself (CAN_PIN): only Linux can, and
macOS and Windows run the lab's host side too (docs/hosts.md).
"""
import os

CAN_PIN = hasattr(os, "sched_setaffinity")
NO_PINNING = "pinning to CPUs needs Linux (os.sched_setaffinity), which this host lacks"


def usable_cpus():
    """The CPUs this process may run on: os.sched_getaffinity(0) where it exists (Linux), else all of the
    machine's, 0 to os.cpu_count() - 1 (macOS and Windows have no CPU set to read)."""
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def parse_cpuset(text):
    """'0-1,3' -> {0, 1, 3}; ValueError with a clear message on anything else."""
    if not text or not text.strip():
        raise ValueError("empty CPU list (expected e.g. 0, 1, 0-1 or 0,2)")
    cpus = set()
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list {text!r}: not a CPU set (write numbers and ranges like 0, 1, 0-1 or 0,2)")
        first, last = int(lo), int(hi) if sep else int(lo)
        if first > last:
            raise ValueError(f"bad CPU range {part!r}: the first CPU is larger than the last")
        if last - first > 4096:
            raise ValueError(f"CPU range {part!r} is implausibly large")
        cpus.update(range(first, last + 1))
    return cpus


def format_cpuset(cpus):
    """{0, 1, 3} -> '0-1,3'."""
    cpus = sorted(cpus)
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(parts)


def pinned(wanted, available):
    """The CPUs a process that wants `wanted` runs on when it may use `available`: the wanted ones that
    exist, or all of `available` when none does (LAB_LOAD_CPUS=1 on a Docker with CPU 0 only)."""
    return set(wanted) & set(available) or set(available)
