"""The results store: results/<UTC-timestamp>-<id>/results.json and the raw files beside it.

Every file is written atomically (a temporary file, then os.replace), so a run stopped at any
moment leaves either the previous complete version of a file or the new one, never half of one.
"""
import json
import os
import secrets
import tempfile
import time
from pathlib import Path

SCHEMA = "concurrency-lab/results/1"
UMASK = os.umask(0)
os.umask(UMASK)


def write_atomic(path, data):
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
    write_atomic(path, json.dumps(record, indent=1, sort_keys=False) + "\n")


class Run:
    """One run's directory and its results.json, saved after every cell."""

    def __init__(self, directory, record):
        self.dir = Path(directory)
        self.record = record

    @classmethod
    def create(cls, root, settings, environment):
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        run = cls(Path(root) / run_id, {
            "schema": SCHEMA, "run_id": run_id, "status": "running",
            "started_at": time.time(), "ended_at": None,
            "settings": settings, "environment": environment, "cells": {}, "claims": [],
        })
        run.save()
        return run

    @classmethod
    def load(cls, directory):
        path = Path(directory) / "results.json"
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{directory}: no results.json (is this a run directory?)") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            found = record.get("schema") if isinstance(record, dict) else type(record).__name__
            raise ValueError(f"{path}: schema {found!r}, this lab reads {SCHEMA!r}")
        return cls(directory, record)

    @property
    def id(self):
        return self.record["run_id"]

    def done(self, cell_id):
        return self.record["cells"].get(cell_id, {}).get("status") in ("ok", "failed")

    def save_cell(self, cell_id, cell):
        self.record["cells"][cell_id] = cell
        self.save()

    def raw_path(self, cell_id, name):
        return self.dir / "raw" / cell_id / name

    def save_raw(self, cell_id, name, record):
        path = self.raw_path(cell_id, name)
        write_json(path, record)
        return str(path.relative_to(self.dir))

    def finish(self, status, claims):
        self.record.update(status=status, ended_at=time.time(), claims=claims)
        self.save()

    def save(self):
        write_json(self.dir / "results.json", self.record)
