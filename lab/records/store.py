"""The stored record of a run: results/<UTC-timestamp>-<id>/results.json, and its raw files beside it.

The record is what the report and compare read, and all they read:
  run_id, status     'running', 'complete' or 'incomplete'; started_at, ended_at
  settings           what was asked: mode, strategies, experiments, pythons, CPU sets, image, load
  environment        what every figure depends on (lab.runner.environment)
  planned            the cells the run set out to measure, in order, each as its fields (lab.cells.Cell)
  cells              {cell id: its fields, status ('ok' or 'failed'), measurements, figures, error}
  claims             the verdicts, judged each time a cell was saved, each with its rule's text and version

Every file is written atomically (a temporary file, then os.replace), so a run stopped at any
moment leaves either the previous complete version of a file or the new one, never half of one.
"""
import json
import os
import re
import secrets
import tempfile
import time
from pathlib import Path

SCHEMA = "concurrency-lab/results/2"
SCHEMA_1 = "concurrency-lab/results/1"  # before planned cells, figures and rule versions: upgraded on load
UMASK = os.umask(0)
os.umask(UMASK)


def write_atomic(path, data):
    """Write a whole file or nothing: a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; results and reports are for sharing
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, record):
    write_atomic(path, json.dumps(record, indent=1) + "\n")


class Run:
    """One run's directory and its record, saved after every cell."""

    def __init__(self, directory, record):
        self.dir = Path(directory)
        self.record = record

    @classmethod
    def create(cls, root, settings, environment, planned):
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        run = cls(Path(root) / run_id, {
            "schema": SCHEMA, "run_id": run_id, "status": "running",
            "started_at": time.time(), "ended_at": None, "settings": settings, "environment": environment,
            "planned": [cell.fields() for cell in planned], "cells": {}, "claims": [],
        })
        run.save()
        return run

    @classmethod
    def load(cls, directory):
        """The run in directory; ValueError with a one-line message if it holds no readable record."""
        path = Path(directory) / "results.json"
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"{directory}: no results.json (is this a run directory?)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: cannot read it: {e}") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: not a results record (a JSON object)")
        if record.get("schema") == SCHEMA_1:
            record = upgrade(record)
        if record.get("schema") != SCHEMA:
            raise ValueError(f"{path}: schema {record.get('schema')!r}, this lab reads {SCHEMA!r} and {SCHEMA_1!r}")
        for key, kind in (("run_id", str), ("status", str), ("settings", dict), ("environment", dict),
                          ("cells", dict), ("claims", list)):
            if not isinstance(record.get(key), kind):
                raise ValueError(f"{path}: {key!r} is missing or not a {kind.__name__}")
        return cls(directory, record)

    @property
    def id(self):
        return self.record["run_id"]

    def done(self, cell_id):
        return self.record["cells"].get(cell_id, {}).get("status") in ("ok", "failed")

    def save_cell(self, cell, result, judge):
        """Store a cell's result, and the verdicts judge(record) gives with it, in one write."""
        self.record["cells"][cell.id] = {**cell.fields(), **result}
        self.record["claims"] = judge(self.record)
        self.save()

    def raw_path(self, cell_id, name):
        return self.dir / "raw" / cell_id / name

    def save_raw(self, cell_id, name, record):
        path = self.raw_path(cell_id, name)
        write_json(path, record)
        return str(path.relative_to(self.dir))

    def finish(self, status):
        self.record.update(status=status, ended_at=time.time())
        self.save()

    def save(self):
        write_json(self.dir / "results.json", self.record)


PYTHON_PREFIX = re.compile(r"\d+\.\d+t?$")


def upgrade(record):
    """A schema-1 record as schema 2: each cell's Python, experiment and variant come from its id, each
    verdict's Python from its label ('C4 on 3.13t'). What schema 1 never stored stays unknown: the
    planned cells (None), the figures (absent) and the rule versions (None)."""
    cells = {}
    for cell_id, cell in record.get("cells", {}).items():
        parts = cell_id.split("/")
        python = parts.pop(0) if len(parts) > 1 and PYTHON_PREFIX.match(parts[0]) else None
        experiment, rest = parts[0], "/".join(parts[1:]) or None
        strategy = cell.get("strategy")
        cells[cell_id] = {**cell, "experiment": experiment, "python": python,
                          "variant": rest if rest and rest != strategy else None}
    claims = []
    for row in record.get("claims", []):
        claim_id, _, python = row["id"].partition(" on ")
        claims.append({"id": claim_id, "python": python or None, "text": row["claim"], "article": row["article"],
                       "measured": row["measured"], "verdict": row["verdict"], "rule": row["rule"],
                       "rule_version": None, "cells": None})
    return {**record, "schema": SCHEMA, "upgraded_from": SCHEMA_1, "planned": None, "cells": cells,
            "claims": claims}
