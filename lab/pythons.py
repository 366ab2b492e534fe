"""The Pythons the lab's servers can run on, as images/pythons.tsv lists them (written once, there)."""
from lab import REPO

TABLE = REPO / "images" / "pythons.tsv"


def versions():
    """('3.11', '3.13', ...): each builds as concurrency-lab-server:VERSION (scripts/build-python-image)."""
    rows = (line.split() for line in TABLE.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return tuple(row[0] for row in rows)


def version_tuple(python):
    """'3.14t' -> (3, 14); '3.13.5' -> (3, 13)."""
    return tuple(int(part) for part in python.rstrip("t").split(".")[:2])


def image(python):
    """The server image of one Python (scripts/build-python-image VERSION builds it)."""
    return f"concurrency-lab-server:{python}"
