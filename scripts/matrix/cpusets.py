"""CPU sets as Docker's cpuset and Linux write them: '0', '0-1', '0,2-3'."""


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
