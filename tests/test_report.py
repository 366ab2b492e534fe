"""scripts/report.py and scripts/compare.py, run as the user runs them, on a real quick run's output.

tests/data/20261124T222621Z-ead345 is a copy of a real run (quick mode, 2 CPUs): its results.json
and the raw files the report reads (perf2 buckets and docker stats). Tests that need a different
run change a copy of it.
"""
import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
from matrix import claims  # noqa: E402 (after the path)

SAMPLE = REPO / "tests" / "data" / "20261124T222621Z-ead345"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMBEDDED_PNG = '<img src="data:image/png;base64,'
CLAIMS_HEADER = "|  | claim | the article |"


def script(name, *args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def copy_of_sample(tmp_path, name="run"):
    return shutil.copytree(SAMPLE, tmp_path / name)


def edit_record(run_dir, change):
    path = run_dir / "results.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    return record


def rendered(run_dir):
    proc = script("report.py", run_dir)
    assert proc.returncode == 0, proc.stderr
    return (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()


def markdown_table(markdown, header):
    """The rows (lists of cells) of the first Markdown table whose header line starts with header."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory):
    run_dir = copy_of_sample(tmp_path_factory.mktemp("report"))
    markdown, page = rendered(run_dir)
    return run_dir, markdown, page


def test_the_report_renders_markdown_html_and_plots(sample_report):
    run_dir, markdown, page = sample_report
    assert markdown.startswith("# Concurrency lab report: run 20261124T222621Z-ead345")
    assert "complete · quick mode" in markdown and "CPython 3.13.5, GIL" in markdown
    assert "AMD EPYC, 2 CPUs" in markdown and "server 0, pool 0-1, load 1" in markdown
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Claims"  # the claims table comes first
    assert "incomplete" not in markdown
    assert not list(run_dir.rglob("*.tmp")), "a temporary file was left behind"


def test_report_html_embeds_every_plot_and_nothing_external(sample_report):
    run_dir, _, page = sample_report
    plots = sorted((run_dir / "plots").glob("*.png"))
    assert len(plots) == 6
    embedded = re.findall(re.escape(EMBEDDED_PNG) + r'([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == page.count(EMBEDDED_PNG) == len(plots)
    images = [base64.b64decode(data, validate=True) for data in embedded]
    assert all(image.startswith(PNG_SIGNATURE) for image in images)
    # the HTML shows the very plots that report.md links
    assert sorted(images) == sorted(path.read_bytes() for path in plots)
    assert not re.search(r"https?:|<script|<link|src=\"(?!data:)", page)


def test_report_markdown_links_images_that_exist(sample_report):
    run_dir, markdown, _ = sample_report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(links) == 6
    for link in links:
        assert (run_dir / link).read_bytes().startswith(PNG_SIGNATURE), link


def test_the_claims_table_has_c1_to_c13_with_the_records_verdicts(sample_report):
    run_dir, markdown, page = sample_report
    record = json.loads((run_dir / "results.json").read_text())
    rows = markdown_table(markdown, CLAIMS_HEADER)
    assert [row[0] for row in rows] == [f"C{i}" for i in range(1, 14)]
    for row, claim in zip(rows, record["claims"]):
        assert row[4].startswith(claim["verdict"]), (row, claim)
        assert row[3] == claim["measured"].replace("|", "\\|") and row[5] == claim["rule"]
    # the rules changed since this run: today's verdict is shown beside the run's own
    c4 = rows[3]
    assert c4[4] == "not reproduced (now: reproduced)"
    for verdict, css_class in (("reproduced", "reproduced"), ("not reproduced", "not-reproduced")):
        expected = sum(claim["verdict"] == verdict for claim in record["claims"])
        assert page.count(f'<td class="{css_class}">') == expected


def test_an_incomplete_run_renders_with_not_run_cells(tmp_path):
    run_dir = copy_of_sample(tmp_path)
    dropped = ["perf1/process-pool", "convoy/threshold-pool", "loopback_floor", "switch_interval/0.1",
               "switch_interval/0.005"]

    def interrupt(record):
        for cell_id in dropped:
            del record["cells"][cell_id]
        record["status"] = "incomplete"
        record["claims"] = claims.verdicts(record)  # as the runner does when it stops

    for cell_id in dropped:
        shutil.rmtree(run_dir / "raw" / cell_id, ignore_errors=True)
    record = edit_record(run_dir, interrupt)
    markdown, page = rendered(run_dir)

    assert "This run is incomplete" in markdown and "This run is incomplete" in page
    assert "perf1/process-pool" in markdown.split("## Claims")[0]  # the banner names what did not run
    verdicts = {row[0]: row[4] for row in markdown_table(markdown, CLAIMS_HEADER)}
    assert verdicts["C7"] == verdicts["C9"] == verdicts["C10"] == "not run"
    assert [c["verdict"] for c in record["claims"]] == [v.partition(" (now")[0] for v in verdicts.values()]
    # every plot is still there; those that lack a cell say which
    assert page.count(EMBEDDED_PNG) == 6
    by_plot = {plot: caption for caption, plot in re.findall(r"!\[([^\]]*)\]\(plots/([^)]+)\.png\)", markdown)}
    assert "not run: perf1/process-pool" in by_plot["perf1"]
    assert "convoy/threshold-pool" in by_plot["perf2_over_time"]
    assert "loopback_floor" in by_plot["perf2_vs_floor"]
    # the sweep's cell at the default interval was dropped: convoy/threaded stands in for it
    sweep = {row[0]: row for row in markdown_table(markdown, "| switch interval (s) |")}
    assert sweep["0.005"][2] == "convoy/threaded" and sweep["0.005"][3].endswith("req/s")
    assert sweep["0.1"][3:] == ["not run"] * 3


def test_a_failed_cell_is_listed_with_its_error_and_its_plot_says_not_run(tmp_path):
    run_dir = copy_of_sample(tmp_path)

    def fail(record):
        record["cells"]["perf1/threaded"].update(status="failed", measurements=None,
                                                  error="RuntimeError: the server never answered",
                                                  traceback="Traceback (most recent call last):\n  ...")

    edit_record(run_dir, fail)
    markdown, page = rendered(run_dir)
    assert markdown_table(markdown, "| cell |") == [["perf1/threaded", "RuntimeError: the server never answered"]]
    assert "not run: perf1/threaded" in markdown
    assert "<summary>perf1/threaded: traceback</summary>" in page


def test_report_writes_elsewhere_with_out(tmp_path):
    out = tmp_path / "elsewhere"
    proc = script("report.py", SAMPLE, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.html").is_file() and len(list((out / "plots").glob("*.png"))) == 6
    assert not (SAMPLE / "report.md").exists()


def test_report_help_explains():
    proc = script("report.py", "--help")
    assert proc.returncode == 0
    assert "RUN_DIR" in proc.stdout and "--out" in proc.stdout and "report.html" in proc.stdout


def bad_run_dirs(tmp_path):
    """(description, directory) of run directories no report can be made from."""
    cases = [("missing", tmp_path / "no-such-run")]
    for name, content in (("empty", None), ("not JSON", "{not json"), ("a list", "[]"),
                          ("another schema", json.dumps({"schema": "something-else/9"})),
                          ("no cells", json.dumps({**json.loads((SAMPLE / "results.json").read_text()),
                                                   "cells": None}))):
        directory = tmp_path / name.replace(" ", "-")
        directory.mkdir()
        if content is not None:
            (directory / "results.json").write_text(content)
        cases.append((name, directory))
    return cases


@pytest.mark.parametrize("name", ["report.py", "compare.py"])
def test_a_bad_run_directory_is_one_clear_line_and_exit_2(tmp_path, name):
    for description, directory in bad_run_dirs(tmp_path):
        args = [directory] if name == "report.py" else [SAMPLE, directory]
        proc = script(name, *args)
        assert proc.returncode == 2, (description, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(name.removesuffix(".py") + ": "), (description, lines)
        assert str(directory) in lines[0], (description, lines)


def compared(tmp_path, run_a, run_b):
    out = tmp_path / "compare.md"
    proc = script("compare.py", run_a, run_b, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out.read_text(), proc.stdout


def figure_rows(markdown):
    """{(cell, figure): (A, B, B/A)} of the key-figures table."""
    figures, cell = {}, None
    for row in markdown_table(markdown, "| cell |"):
        cell = row[0] or cell  # a cell's name is on its first row only
        figures[(cell, row[1])] = tuple(row[2:])  # A, B, B/A and the mark
    return figures


def test_compare_a_run_with_itself_gives_ratios_of_one_and_no_changed_verdict(tmp_path):
    markdown, terminal = compared(tmp_path, SAMPLE, SAMPLE)
    figures = figure_rows(markdown)
    record = json.loads((SAMPLE / "results.json").read_text())
    assert {cell for cell, _ in figures} == set(record["cells"])
    ratios = {ratio for _, _, ratio, _ in figures.values()}
    assert ratios == {"1.00", "–"}  # – where A is 0 (nothing to divide by)
    assert figures[("convoy/threaded", "perf2 before")] == ("2,035 req/s", "2,035 req/s", "1.00", "")
    assert not any(mark for *_, mark in figures.values())
    environment = markdown_table(markdown, "|  | A | B |")
    assert environment and not any(mark for *_, mark in environment)
    assert "0 verdict(s) changed." in markdown
    assert all(row[4] == "" for row in markdown_table(markdown, "|  | claim | A | B |"))
    assert "Key figures" in terminal and "C13" in terminal


def test_compare_two_runs_gives_the_right_ratios_and_marks_what_changed(tmp_path):
    run_b = copy_of_sample(tmp_path, "b")

    def other_machine(record):
        perf1 = record["cells"]["perf1/threaded"]["measurements"]
        perf1["two_clients_mean_s"] *= 2
        perf1["ratio"] *= 2
        record["cells"]["convoy/threaded"]["measurements"]["rate_during_per_s"] = 40.0
        record["cells"]["idle_connections/threaded"]["measurements"]["threads_per_connection"] = 1.0
        record["cells"]["perf1/process-pool"]["params"]["n"] = 30
        del record["cells"]["gil_stall"]
        record["environment"]["python"].update(version="3.14.0", free_threaded=True, gil_enabled=False)
        c4 = next(row for row in record["claims"] if row["id"] == "C4")
        c4["verdict"] = "reproduced"

    edit_record(run_b, other_machine)
    markdown, _ = compared(tmp_path, SAMPLE, run_b)
    figures = figure_rows(markdown)
    assert figures[("perf1/threaded", "2-client mean")] == ("90.4 ms", "180.7 ms", "2.00", "◀")
    assert figures[("perf1/threaded", "2/1 latency ratio")][2:] == ("2.00", "◀")
    assert figures[("perf1/threaded", "1-client mean")][2:] == ("1.00", "")
    assert figures[("convoy/threaded", "perf2 during")] == ("160 req/s", "40 req/s", "0.25", "◀")
    assert figures[("idle_connections/threaded", "threads per connection")][2] == "–"  # A is 0
    assert ("perf1/process-pool (params differ: n 27 -> 30)", "2/1 latency ratio") in figures
    assert not any(cell == "gil_stall" for cell, _ in figures)
    assert "gil_stall (A: ok, B: not run)" in markdown
    environment = {row[0]: row[1:] for row in markdown_table(markdown, "|  | A | B |")}
    assert environment["Python (in the image)"] == ["CPython 3.13.5, GIL", "CPython 3.14.0 free-threaded, GIL disabled",
                                                    "◀"]
    assert environment["CPU model"] == ["AMD EPYC", "AMD EPYC", ""]
    verdicts = {row[0]: row for row in markdown_table(markdown, "|  | claim | A | B |")}
    assert verdicts["C4"][2:] == ["not reproduced (now: reproduced)", "reproduced", "changed"]
    assert [claim_id for claim_id, row in verdicts.items() if row[4] == "changed"] == ["C4"]
    assert "1 verdict(s) changed." in markdown
