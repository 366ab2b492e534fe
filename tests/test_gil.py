"""The GIL made visible: clients.gil_sampler (py-spy in a side container) and the gil_share experiment, on real
containers; its parser on a real py-spy dump taken during a convoy (tests/data/py-spy/)."""
import json
import subprocess
import sys

import pytest

from clients.gil_sampler import parse_dump
from conftest import REPO
from test_runner import lab_run, only_run

DUMP = REPO / "tests" / "data" / "py-spy" / "dump-threaded-convoy.txt"


@pytest.mark.fast
def test_a_py_spy_dump_names_the_gil_holder_and_the_long_requests_depth():
    """py-spy 0.4.3 dumped the threaded server while fib(37) ran beside perf2 (taken for this test)."""
    threads = parse_dump(DUMP.read_text())
    assert [(tid, name, state) for tid, name, state, _ in threads] == [
        ("8", "MainThread", "idle"), ("307", "Thread-15 (handle)", "idle"),
        ("308", "Thread-16 (handle)", "active+gil")]
    depths = {name: depth for _, name, _, depth in threads}
    assert depths["Thread-16 (handle)"] == DUMP.read_text().count("    fib (") > 20
    assert depths["MainThread"] == depths["Thread-15 (handle)"] == 0


@pytest.mark.fast
def test_a_thread_py_spy_names_0_is_left_out_with_its_frames():
    """A thread starting or ending has a thread state and no OS thread: py-spy names it 0 (a CI run's
    gil_share found such a '0' among perf1's two client threads). The same dump with one added."""
    text = DUMP.read_text()
    first = text.index("Thread ")
    starting = 'Thread 0 (idle): "Thread-17 (handle)"\n    fib (server/handlers.py:10)\n'
    threads = parse_dump(text[:first] + starting + text[first:])
    assert threads == parse_dump(text)


@pytest.mark.docker
def test_the_sampler_says_in_one_line_why_it_cannot_sample(lab_image):
    """No server in its PID namespace: exit 1 and one line; a bad rate: argparse's usage, exit 2."""
    def sampler(*args):
        return subprocess.run(["docker", "run", "--rm", "--cap-drop", "ALL", lab_image.name, "python", "-m",
                               "clients.gil_sampler", *args], capture_output=True, text=True, timeout=120)

    alone = sampler("--max-s", "2")
    assert alone.returncode == 1 and alone.stdout == "", alone
    assert alone.stderr.strip().splitlines() == [
        "gil_sampler: no `python -m server` process in the server's container (is the PID namespace shared?)"]
    bad = sampler("--rate", "0")
    assert bad.returncode == 2 and "--rate must be in (0, 200]" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.docker
def test_the_gil_share_cells_show_who_holds_the_gil(lab_image, tmp_path):
    """A quick run of gil_share: in the convoy the long request's thread holds the GIL in most samples
    while it runs and perf2's thread in few; two perf1 clients' threads each hold it part of the time.
    (Bounds that hold on a busy machine: there the hand-overs take longer, and the GIL is free in more
    samples; on two free CPUs the long request's thread holds it in about 95% of them: docs/results.md.)"""
    proc = lab_run("--quick", "--image", lab_image.name, "--experiments", "gil_share", results=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir, record = only_run(tmp_path)
    convoy, perf1 = (record["cells"][f"gil_share/{variant}"] for variant in ("convoy", "perf1"))
    assert convoy["status"] == perf1["status"] == "ok", (convoy.get("error"), perf1.get("error"))
    m = convoy["measurements"]
    roles = {row["role"]: row for row in m["gil_threads"]}
    assert {"accept loop", "long request", "client"} <= set(roles), m["gil_threads"]
    assert m["gil_samples_during_long"] >= 5, m
    long_held, perf2_held = roles["long request"]["held_during_long"], roles["client"]["held_during_long"]
    assert long_held == m["long_thread_held"] >= 0.5 and perf2_held <= 0.25, m
    clients = [row for row in perf1["measurements"]["gil_threads"] if row["role"] == "client"]
    assert len(clients) == 2 and all(row["held"] >= 0.1 for row in clients), clients
    assert sum(row["held"] for row in clients) >= 0.6, clients
    raw = json.loads((run_dir / "raw" / "gil_share" / "convoy" / "gil.json").read_text())
    assert raw["py_spy"] == "0.4.3" and raw["errors"] == 0 and len(raw["samples"]) >= m["gil_samples"]

    report = subprocess.run([sys.executable, "-m", "lab", "report", str(run_dir)], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert report.returncode == 0, report.stderr
    page = (run_dir / "report.md").read_text()
    assert "## Who holds the GIL" in page and "(long request)" in page
    assert (run_dir / "plots" / "gil_share.png").stat().st_size > 10_000
