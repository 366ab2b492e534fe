"""The report and compare, on stored fixture records, with no Docker: what they show comes from the
record alone. The CLI tests run `python -m lab` as the user runs it."""
import base64
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from lab import experiments
from lab.cpu import wake_up
from lab.perf2 import client_limit_note, client_limited
from lab.records import compare
from lab.records import report
from lab.records.document import Image, to_html, to_markdown
from lab.records.record import RunView, load_run
from test_claims import BEFORE, NOW, OLDER

pytestmark = pytest.mark.fast
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EMBEDDED_PNG = '<img src="data:image/png;base64,'
CLAIMS_HEADER = "|  | claim | the article |"


def lab(*args):
    return subprocess.run([sys.executable, "-m", "lab", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, "COLUMNS": "200"})


def copy_of(run_dir, tmp_path, name="run"):
    return shutil.copytree(run_dir, tmp_path / name)


def edit_record(run_dir, change):
    path = run_dir / "results.json"
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))
    return record


def markdown_of(run_dir):
    """report.md's text, without drawing a plot (a plot is drawn when its PNG is written)."""
    return to_markdown(report.build(load_run(run_dir)))


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


def captions(markdown):
    return {plot: caption for caption, plot in re.findall(r"!\[([^\]]*)\]\(plots/([^)]+)\.png\)", markdown)}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The NOW fixture's report, written as `lab report` writes it, plots and all."""
    out = tmp_path_factory.mktemp("report")
    proc = lab("report", NOW, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out, (out / "report.md").read_text(), (out / "report.html").read_text()


def test_the_report_writes_markdown_html_and_plots_elsewhere_with_out(written):
    out, markdown, _ = written
    assert markdown.startswith(f"# Concurrency lab report: run {NOW.name}")
    assert "complete · quick mode" in markdown and "CPython 3.13.5, GIL" in markdown
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Claims"  # the claims table comes first
    assert "incomplete" not in markdown
    assert not list(out.rglob("*.tmp")), "a temporary file was left behind"
    assert not (NOW / "report.md").exists()


def test_report_html_embeds_every_plot_and_nothing_external(written):
    out, markdown, page = written
    plots = sorted((out / "plots").glob("*.png"))
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert len(plots) == len(links) == 6
    assert sorted(out / link for link in links) == plots
    embedded = re.findall(re.escape(EMBEDDED_PNG) + r'([A-Za-z0-9+/=]+)"', page)
    images = [base64.b64decode(data, validate=True) for data in embedded]
    assert all(image.startswith(PNG_SIGNATURE) for image in images)
    assert sorted(images) == sorted(path.read_bytes() for path in plots)  # the very plots report.md links
    assert not re.search(r"https?:|<script|<link|src=\"(?!data:)", page)


def test_the_claims_table_shows_the_verdicts_the_run_stored_with_their_rules(written):
    _, markdown, page = written
    record = json.loads((NOW / "results.json").read_text())
    rows = markdown_table(markdown, CLAIMS_HEADER)
    assert [row[0] for row in rows] == [f"C{i}" for i in range(1, 14)]
    for row, claim in zip(rows, record["claims"]):
        assert row[3] == claim["measured"].replace("|", "\\|")
        assert row[4] == claim["verdict"] and row[5] == f"{claim['rule']} (rule v1)"
    for verdict, css_class in (("reproduced", "reproduced"), ("not reproduced", "not-reproduced")):
        assert page.count(f'<td class="{css_class}">') == sum(c["verdict"] == verdict for c in record["claims"])


def test_an_old_record_shows_its_own_verdicts_even_where_todays_rules_differ():
    markdown = markdown_of(OLDER)
    stored = json.loads((OLDER / "results.json").read_text())["claims"]
    by_rules_now = json.loads((OLDER / "verdicts-839e45e.json").read_text())["claims"]
    c4 = markdown_table(markdown, CLAIMS_HEADER)[3]
    assert c4[4] == stored[3]["verdict"] == "not reproduced" != by_rules_now[3]["verdict"]
    # an old record's cells are the ones it has: a strategy planned only today is not shown as 'not run'
    assert "not run" not in captions(markdown)["perf2_vs_floor"]
    assert "asyncio-pool" not in markdown.split("## Environment")[0]


def test_an_incomplete_run_names_the_planned_cells_that_did_not_run(tmp_path):
    run_dir = copy_of(NOW, tmp_path)
    dropped = ["perf1/process-pool", "convoy/threshold-pool", "loopback_floor", "switch_interval/0.1"]

    def interrupt(record):
        for cell_id in dropped:
            del record["cells"][cell_id]
        record["status"] = "incomplete"

    for cell_id in dropped:
        shutil.rmtree(run_dir / "raw" / cell_id)
    edit_record(run_dir, interrupt)
    markdown = markdown_of(run_dir)
    banner = markdown.split("## Claims")[0]
    assert "This run is incomplete: 4 planned cell(s) did not run" in banner
    assert all(cell_id in banner for cell_id in dropped) and f"--resume {run_dir}" in banner
    by_plot = captions(markdown)
    assert "not run: perf1/process-pool" in by_plot["perf1"]
    assert "convoy/threshold-pool" in by_plot["perf2_over_time"]
    assert "loopback_floor" in by_plot["perf2_vs_floor"]
    sweep = {row[0]: row for row in markdown_table(markdown, "| switch interval (s) |")}
    assert sweep["0.005"][2] == "convoy/threaded" and sweep["0.005"][3].endswith("req/s")  # the default's point
    assert sweep["0.1"][3:] == ["not run"] * 3


def test_a_failed_cell_is_listed_with_its_error_and_its_plot_says_not_run(tmp_path):
    run_dir = copy_of(NOW, tmp_path)

    def fail(record):
        record["cells"]["perf1/threaded"].update(status="failed", measurements=None, figures=None,
                                                 error="RuntimeError: the server never answered",
                                                 traceback="Traceback (most recent call last):\n  ...")

    edit_record(run_dir, fail)
    blocks = report.build(load_run(run_dir))
    markdown, page = to_markdown(blocks), to_html([b for b in blocks if not isinstance(b, Image)], "")
    assert markdown_table(markdown, "| cell |") == [["perf1/threaded", "RuntimeError: the server never answered"]]
    assert "not run: perf1/threaded (failed)" in captions(markdown)["perf1"]
    assert "<summary>perf1/threaded: traceback</summary>" in page


def over_two_pythons(run_dir):
    """Make the run in run_dir a run over 3.13 and 3.13t, the same cells on each, the loopback floor shared."""

    def two_pythons(record):
        cells = {}
        for cell_id, cell in record["cells"].items():
            for python in ("3.13", "3.13t"):
                if cell["experiment"] != "loopback_floor":
                    cells[f"{python}/{cell_id}"] = {**cell, "python": python}
                    shutil.copytree(run_dir / "raw" / cell_id, run_dir / "raw" / python / cell_id)
        cells["loopback_floor"] = record["cells"]["loopback_floor"]
        record["cells"] = cells
        record["planned"] = None
        record["settings"]["pythons"] = ["3.13", "3.13t"]
        record["environment"]["pythons"] = {
            "3.13": record["environment"]["python"],
            "3.13t": {**record["environment"]["python"], "free_threaded": True, "gil_enabled": False}}
        record["claims"] = [{**row, "python": python} for python in ("3.13", "3.13t") for row in record["claims"]]

    edit_record(run_dir, two_pythons)


def test_a_run_over_several_pythons_has_the_table_across_them_and_a_section_each(tmp_path):
    run_dir = copy_of(NOW, tmp_path)
    over_two_pythons(run_dir)
    markdown = markdown_of(run_dir)
    across = markdown_table(markdown, "| Python | build |")
    assert [row[:2] for row in across] == [["3.13", "CPython 3.13.5, GIL"],
                                           ["3.13t", "CPython 3.13.5 free-threaded, GIL disabled"]]
    assert across[0][2].endswith(": doubles") and ", x1.00 of 3.13's" in across[1][3]
    assert "## Python 3.13t: CPython 3.13.5 free-threaded, GIL disabled" in markdown
    assert "3.13t_perf1" in captions(markdown) and "C4 on 3.13t" in markdown


CLIENT_LIMITED = "client-limited"
CEILING_TABLE = "| cell | figure | perf2 rate |"


def with_ceiling(tmp_path, ceiling, name="run"):
    """A copy of the NOW fixture whose loopback floor cell measured the perf2 client's ceiling too, as a
    run does now (NOW's convoy/threaded rate before the long request is 5,906 req/s, process-pool's 1,305)."""
    run_dir = copy_of(NOW, tmp_path, name)

    def measured(record):
        floor = record["cells"]["loopback_floor"]
        floor["measurements"]["perf2_ceiling_per_s"] = ceiling
        floor["figures"] = experiments.figures(floor)

    edit_record(run_dir, measured)
    return run_dir


def ceiling_rows(markdown):
    """{(cell, figure): perf2 rate} of the report's table of perf2 rates against the client's ceiling."""
    return {(cell, figure): shown for cell, figure, shown in markdown_table(markdown, CEILING_TABLE)}


def test_a_perf2_rate_within_20_percent_of_the_client_ceiling_is_marked_client_limited(tmp_path):
    run_dir = with_ceiling(tmp_path, 7000.0)  # threaded's 5,906 is 84% of it; process-pool's 1,305 is 19%
    markdown = markdown_of(run_dir)
    rows = ceiling_rows(markdown)
    assert rows[("convoy/threaded", "perf2 before")] == (
        "5,906 req/s (client-limited: 84% of the perf2 client's ceiling)")
    assert rows[("convoy/process-pool", "perf2 before")] == "1,305 req/s"
    assert rows[("prefork_lockout/prefork", "perf2")] == "5,104 req/s"  # 73%: not within 20%
    assert not any(cell == "loopback_floor" for cell, _ in rows)  # the floor and the ceiling are no perf2 rates
    assert "The perf2 client's ceiling in this run: 7,000 req/s" in markdown
    sweep = {row[0]: row for row in markdown_table(markdown, "| switch interval (s) |")}
    assert sweep["0.005"][3] == rows[("convoy/threaded", "perf2 before")] and sweep["0.1"][4] == "8 req/s"
    figures = figure_rows(compared(NOW, run_dir))
    assert figures[("convoy/threaded", "perf2 before")][:2] == (
        "5,906 req/s", "5,906 req/s (client-limited: 84% of the perf2 client's ceiling)")  # A measured no ceiling
    assert figures[("convoy/process-pool", "perf2 before")][:2] == ("1,305 req/s", "1,305 req/s")
    assert figures[("loopback_floor", "rate")][1] == "38,569 req/s"


def test_a_perf2_rate_well_below_the_client_ceiling_is_not_marked(tmp_path):
    run_dir = with_ceiling(tmp_path, 30000.0)  # threaded's 5,906 is 20% of it; the highest perf2 rate, 45%
    rows = ceiling_rows(markdown_of(run_dir))
    assert rows[("convoy/threaded", "perf2 before")] == "5,906 req/s"
    assert not any(CLIENT_LIMITED in shown for shown in rows.values())
    assert not any(CLIENT_LIMITED in shown for row in figure_rows(compared(run_dir, run_dir)).values() for shown in row)


def test_a_record_without_the_client_ceiling_marks_nothing():
    for run_dir in (NOW, BEFORE, OLDER):
        markdown = markdown_of(run_dir)
        assert CLIENT_LIMITED not in markdown and CEILING_TABLE not in markdown, run_dir
    assert CLIENT_LIMITED not in compared(BEFORE, NOW)


def test_every_python_of_a_run_reads_its_one_client_ceiling(tmp_path):
    run_dir = with_ceiling(tmp_path, 7000.0)
    over_two_pythons(run_dir)
    markdown = markdown_of(run_dir)
    for python in ("3.13", "3.13t"):
        assert RunView(load_run(run_dir), python).perf2_ceiling() == 7000.0
        part = markdown.split(f"## Python {python}:")[1]
        assert ceiling_rows(part)[("convoy/threaded", "perf2 before")].endswith(
            "(client-limited: 84% of the perf2 client's ceiling)")


@pytest.mark.parametrize("rate, ceiling, limited", [(8000, 10000, True), (7999, 10000, False), (12000, 10000, True),
                                                    (8000, None, False), (None, 10000, False)])
def test_client_limited_is_within_20_percent_of_the_ceiling_or_above(rate, ceiling, limited):
    assert client_limited(rate, ceiling) is limited
    assert (CLIENT_LIMITED in client_limit_note(rate, ceiling)) is limited


def test_report_help_explains():
    proc = lab("report", "--help")
    assert proc.returncode == 0
    assert "RUN_DIR" in proc.stdout and "--out" in proc.stdout and "report.html" in proc.stdout


def bad_run_dirs(tmp_path):
    """(description, directory) of run directories no report can be made from."""
    cases = [("missing", tmp_path / "no-such-run")]
    for name, content in (("empty", None), ("not JSON", "{not json"), ("a list", "[]"),
                          ("another schema", json.dumps({"schema": "something-else/9"})),
                          ("no cells", json.dumps({**json.loads((NOW / "results.json").read_text()), "cells": None}))):
        directory = tmp_path / name.replace(" ", "-")
        directory.mkdir()
        if content is not None:
            (directory / "results.json").write_text(content)
        cases.append((name, directory))
    return cases


@pytest.mark.parametrize("command", [report, compare])
def test_a_bad_run_directory_is_one_clear_line_and_exit_2(tmp_path, capsys, command):
    for description, directory in bad_run_dirs(tmp_path):
        args = [str(directory)] if command is report else [str(NOW), str(directory)]
        assert command.main(args) == 2, description
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{command.PROG}: "), (description, lines)
        assert str(directory) in lines[0], (description, lines)


def test_a_bad_run_directory_from_the_command_line():
    proc = lab("report", "/nonexistent/run")
    assert proc.returncode == 2 and proc.stderr == "lab report: /nonexistent/run: no such directory\n"


def compared(run_a, run_b):
    return to_markdown(compare.build(load_run(run_a), load_run(run_b)))


def figure_rows(markdown):
    """{(cell, figure): (A, B, B/A, mark)} of the key-figures table."""
    figures, cell = {}, None
    for row in markdown_table(markdown, "| cell |"):
        cell = row[0] or cell  # a cell's name is on its first row only
        figures[(cell, row[1])] = tuple(row[2:])
    return figures


def test_compare_a_run_with_itself_gives_ratios_of_one_and_no_changed_verdict():
    markdown = compared(NOW, NOW)
    figures = figure_rows(markdown)
    record = json.loads((NOW / "results.json").read_text())
    assert {cell for cell, _ in figures} == set(record["cells"])
    assert {ratio for _, _, ratio, _ in figures.values()} == {"1.00", "–"}  # – where A is 0
    assert figures[("convoy/threaded", "perf2 before")] == ("5,906 req/s", "5,906 req/s", "1.00", "")
    assert not any(mark for *_, mark in figures.values())
    assert not any(mark for *_, mark in markdown_table(markdown, "|  | A | B |"))
    assert "0 verdict(s) changed." in markdown


def test_compare_two_runs_gives_the_right_ratios_and_marks_what_changed(tmp_path):
    run_b = copy_of(NOW, tmp_path, "b")

    def other_machine(record):
        perf1 = record["cells"]["perf1/threaded"]
        for figure in perf1["figures"]:
            if figure[0] in ("2-client mean", "2/1 latency ratio"):
                figure[1] *= 2
        convoy = record["cells"]["convoy/threaded"]
        next(f for f in convoy["figures"] if f[0] == "perf2 during")[1] = 37.5
        record["cells"]["perf1/process-pool"]["params"]["n"] = 30
        del record["cells"]["gil_stall"]
        record["environment"]["python"].update(version="3.14.0", free_threaded=True, gil_enabled=False)
        next(row for row in record["claims"] if row["id"] == "C4")["verdict"] = "not reproduced"

    edit_record(run_b, other_machine)
    markdown = compared(NOW, run_b)
    figures = figure_rows(markdown)
    assert figures[("perf1/threaded", "2-client mean")] == ("46.7 ms", "93.3 ms", "2.00", "◀")
    assert figures[("perf1/threaded", "2/1 latency ratio")][2:] == ("2.00", "◀")
    assert figures[("perf1/threaded", "1-client mean")][2:] == ("1.00", "")
    assert figures[("convoy/threaded", "perf2 during")] == ("150 req/s", "38 req/s", "0.25", "◀")
    assert ("perf1/process-pool (params differ: n 27 -> 30)", "2/1 latency ratio") in figures
    assert not any(cell == "gil_stall" for cell, _ in figures)
    assert "gil_stall (A: ok, B: not run)" in markdown
    environment = {row[0]: row[1:] for row in markdown_table(markdown, "|  | A | B |")}
    assert environment["Python (in the image)"] == ["CPython 3.13.5, GIL", "CPython 3.14.0 free-threaded, GIL disabled",
                                                    "◀"]
    verdicts = {row[0]: row for row in markdown_table(markdown, "|  | claim | A | B |")}
    assert verdicts["C4"][2:] == ["reproduced (rule v1)", "not reproduced (rule v1)", "changed"]
    assert [claim_id for claim_id, row in verdicts.items() if row[4] == "changed"] == ["C4"]
    assert "1 verdict(s) changed." in markdown


def test_compare_reads_an_old_record_beside_a_new_one(tmp_path):
    out = tmp_path / "compare.md"
    proc = lab("compare", BEFORE, NOW, "--out", out)
    assert proc.returncode == 0, proc.stderr
    markdown = out.read_text()
    figures = figure_rows(markdown)
    assert figures[("convoy/threaded", "perf2 before")][:2] == ("5,024 req/s", "5,906 req/s")
    assert "perf1/threaded (A: failed, B: ok)" in markdown
    verdicts = {row[0]: row for row in markdown_table(markdown, "|  | claim | A | B |")}
    assert verdicts["C4"][2:] == ["not run", "reproduced (rule v1)", "changed"]
    assert "Key figures" in proc.stdout and "C13" in proc.stdout  # and on the terminal


# What the runner records under environment.wake_up (lab.cpu.wake_up), as a run on this 2-CPU machine did.
WAKE_UP = {"same_cpu": 1, "same_cpu_per_s": 48215.2, "echo_cpu": 0, "client_cpu": 1, "across_cpus_per_s": 13410.1,
           "across_cpus_not_measurable": None, "perf2_layout": "across CPUs", "cpuset": "0-1",
           "command": "python -m clients.loopback_floor --duration 1 --same-cpu 1 --across 0,1 --json"}
SAME_ROW, ACROSS_ROW, COST_ROW = ("ping-pong floor, same CPU", "ping-pong floor, across CPUs",
                                  "wake-up cost (same CPU / across CPUs)")


def with_wake_up(tmp_path, entry, name="run"):
    """A copy of the NOW fixture whose environment holds `entry` as its wake_up, and whose loopback floor cell
    measured both floors, as a run does now."""
    run_dir = copy_of(NOW, tmp_path, name)

    def measured(record):
        record["environment"]["wake_up"] = entry
        floor = record["cells"]["loopback_floor"]
        floor["measurements"].update({key: value for key, value in entry.items() if key != "command"},
                                     rate_per_s=entry.get("across_cpus_per_s") or floor["measurements"]["rate_per_s"])
        floor["figures"] = experiments.figures(floor)

    edit_record(run_dir, measured)
    return run_dir


def environment_table(markdown):
    return {row[0]: row[1] for row in markdown_table(markdown, "|  | value |")}


def test_the_report_shows_both_floors_and_what_they_mean_once(tmp_path):
    markdown = markdown_of(with_wake_up(tmp_path, WAKE_UP))
    environment = environment_table(markdown)
    assert environment[SAME_ROW] == "48,215 req/s (echo and client on CPU 1)"
    assert environment[ACROSS_ROW] == "13,410 req/s (echo on CPU 0, client on CPU 1)"
    assert environment[COST_ROW] == "x3.60"
    assert environment["wake-up measured by"] == WAKE_UP["command"] + " (in a container of the lab image on CPUs 0-1)"
    assert not any(label.startswith("environment.wake_up") for label in environment)  # no raw leaves beside them
    assert markdown.count(wake_up.MEANING) == 1
    # the loopback floor cell: its layout, and the same-CPU floor as a key figure
    assert ("Its layout: across CPUs, 13,410 req/s (echo on CPU 0, client on CPU 1); the same ping-pong on one CPU: "
            "48,215 req/s (echo and client on CPU 1).") in markdown


def test_a_record_without_the_floors_says_not_measured():
    for run_dir in (NOW, BEFORE, OLDER):
        environment = environment_table(markdown_of(run_dir))
        assert (environment[SAME_ROW], environment[ACROSS_ROW], environment[COST_ROW]) == (
            "not measured", "not measured", "–"), run_dir
    figures = figure_rows(compared(BEFORE, NOW))
    assert ("loopback_floor", "rate") in figures and ("loopback_floor", "floor, same CPU") not in figures


def test_floors_that_could_not_be_measured_say_why(tmp_path):
    failed = {"command": WAKE_UP["command"],
              "error": "RuntimeError: clients.loopback_floor exited 2: --across: CPU 1 is not one this process may use"}
    environment = environment_table(markdown_of(with_wake_up(tmp_path, failed)))
    assert environment[SAME_ROW] == environment[ACROSS_ROW] == "not measured: " + failed["error"]
    one_cpu = {**WAKE_UP, "across_cpus_per_s": None, "perf2_layout": "same CPU",
               "across_cpus_not_measurable": "--across gives the echo and the client the same CPU (0)"}
    markdown = markdown_of(with_wake_up(tmp_path, one_cpu, "one-cpu"))
    environment = environment_table(markdown)
    assert environment[ACROSS_ROW] == "not measurable: --across gives the echo and the client the same CPU (0)"
    assert environment[COST_ROW] == "–"
    assert "Its layout: the same CPU, 48,215 req/s (echo and client on CPU 1)" in markdown


def test_compare_puts_both_runs_floors_side_by_side(tmp_path):
    slower = {**WAKE_UP, "same_cpu_per_s": 96430.4}
    markdown = compared(with_wake_up(tmp_path, WAKE_UP, "a"), with_wake_up(tmp_path, slower, "b"))
    table = {row[0]: row[1:] for row in markdown_table(markdown, "|  | A | B | B/A |")}
    assert table[SAME_ROW] == ["48,215 req/s (echo and client on CPU 1)", "96,430 req/s (echo and client on CPU 1)",
                               "2.00", "◀"]
    assert table[ACROSS_ROW] == ["13,410 req/s (echo on CPU 0, client on CPU 1)"] * 2 + ["1.00", ""]
    assert table[COST_ROW] == ["x3.60", "x7.19", "2.00", "◀"]
    assert markdown.count(wake_up.MEANING) == 1
    environment = {row[0] for row in markdown_table(markdown, "|  | A | B |  |")}
    assert not any(label.startswith("environment.wake_up") for label in environment)
    figures = figure_rows(markdown)  # the loopback floor cell's, each floor named by its layout
    assert figures[("loopback_floor", "floor, same CPU")][:3] == ("48,215 req/s", "96,430 req/s", "2.00")
    assert figures[("loopback_floor", "floor, across CPUs")][:3] == ("13,410 req/s", "13,410 req/s", "1.00")
    old = {row[0]: row[1:] for row in markdown_table(compared(NOW, with_wake_up(tmp_path, WAKE_UP, "c")),
                                                     "|  | A | B | B/A |")}
    assert old[SAME_ROW][:3] == ["not measured", "48,215 req/s (echo and client on CPU 1)", "–"]
