"""The Pythons the lab's servers can run on, as images/pythons.tsv lists them (written once, there).

A name is X.Y (the distribution's build), X.Yt (free-threaded, compiled) or X.Yg (X.Yt's twin: the
same source and configure flags, with the GIL).
"""
import re
import subprocess
from functools import cache

from lab import REPO

TABLE = REPO / "images" / "pythons.tsv"
OFFLINE_BASE = REPO / "scripts" / "build-offline-base"
FREE_THREADED, TWIN = "t", "g"


def versions():
    """('3.11', '3.13', ...): each builds as concurrency-lab-server:VERSION (scripts/build-python-image)."""
    rows = (line.split() for line in TABLE.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#"))
    return tuple(row[0] for row in rows)


def version_tuple(python):
    """'3.14t' -> (3, 14); '3.13g' -> (3, 13); '3.13.5' -> (3, 13)."""
    return tuple(int(part) for part in re.sub(r"[a-z]+$", "", python).split(".")[:2])


def distribution(python):
    """'3.13t' -> '3.13' (so for X.Yg): the distribution's build of the same version."""
    return re.sub(r"[a-z]+$", "", python)


def free_threaded(python):
    """Whether the name is a free-threaded build's: '3.13t'. None (the lab image's Python) is not."""
    return bool(python) and python.endswith(FREE_THREADED)


def with_twins(names):
    """The names, each free-threaded X.Yt followed by its twin X.Yg when the table lists one and it was
    not named: the cross-version table splits X.Yt's cost into free-threading and the build only then."""
    listed = versions()
    out = []
    for name in names:
        out.append(name)
        if (pair := twin(name)) and pair in listed and pair not in names:
            out.append(pair)
    return out


def twin(python):
    """'3.13t' -> '3.13g': the GIL build from the same source and flags; None for any other name."""
    return distribution(python) + TWIN if python.endswith(FREE_THREADED) else None


def image(python):
    """The server image of one Python (scripts/build-python-image VERSION builds it)."""
    return f"concurrency-lab-server:{python}"


@cache
def offline_base(suite=None):
    """The offline base image that scripts/build-offline-base makes, as it names it (--print-tag):
    'concurrency-lab-base:trixie' for its default suite on this machine's architecture, or for `suite`;
    None where it cannot name one (not a Debian machine: no dpkg), as no offline base is made there."""
    try:
        proc = subprocess.run([OFFLINE_BASE, *(["--suite", suite] if suite else []), "--print-tag"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None
