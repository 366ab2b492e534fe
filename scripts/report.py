#!/usr/bin/env python3
"""Write a run's report: report.md (plots under plots/) and a self-contained report.html."""
import argparse
import sys
from pathlib import Path

from matrix import claims, report_plots, versions
from matrix.experiments import python_view
from matrix.document import Details, Heading, Image, Paragraph, Table, to_html, to_markdown
from matrix.results import write_atomic
from matrix.run_view import (NOW_NOTE, cell_ids, cell_state, claims_rows, environment_rows, failed_cells,
                             load_run, missing_cells, ok_measurements, one_line_errors, python_build, summary_line,
                             switch_interval_cells, verdict_text)

PROG = "report"


def build(run):
    """The report's blocks, in reading order."""
    record = run.record
    blocks = [Heading(f"Concurrency lab report: run {record['run_id']}", 1), Paragraph(summary_line(record))]
    if record["status"] != "complete":
        missing, failed = missing_cells(record), failed_cells(record)
        blocks.append(Paragraph(
            (f"This run is {record['status']}: " if record["status"] == "incomplete"
             else f"This run did not finish (status: {record['status']}): ")
            + (f"{len(missing)} planned cell(s) did not run ({', '.join(missing)}). " if missing else "")
            + (f"{len(failed)} cell(s) failed (see Failed cells). " if failed else "")
            + f"Claims and plots that need them say 'not run'. scripts/lab run --resume {run.dir} finishes it.",
            warning=True))
    pythons = record["settings"].get("pythons")
    if pythons:  # --python: the answers side by side, then each Python's claims and plots
        blocks += versions_section(record)
        blocks += claims_section(record)
        for python in pythons:
            part = PythonRun(run, python)
            blocks.append(Heading(f"Python {python}: {python_build(part.record['environment']['python'])}"))
            blocks += measurements(part, f"{python}_", level=3)
    else:
        blocks += claims_section(record)
        blocks += measurements(run, "", level=2)
    blocks += [
        Heading("Environment"),
        Table(["", "value"], [list(row) for row in environment_rows(record)]),
    ]
    blocks += failed_section(record)
    return blocks


class PythonRun:
    """One Python's part of a run over several (--python), as the plots read a run: cell ids
    without the Python's prefix, raw files where they are."""

    def __init__(self, run, python):
        self.run, self.python, self.dir = run, python, run.dir
        self.record = python_view(run.record, python)

    def raw_path(self, cell_id, name):
        prefixed = f"{self.python}/{cell_id}"
        return self.run.raw_path(prefixed if prefixed in self.run.record["cells"] else cell_id, name)


def measurements(run, prefix, level):
    """The plots and tables of one run (or one Python's part); image names start with prefix."""
    record = run.record

    return [
        Heading("perf1: latency with 1 vs 2 clients (C4, C7)", level),
        Paragraph("perf1 asks for fib(n) in a loop and times each reply: first alone, then with a second perf1 "
                  "at once. ×ratio is the 2-client mean over the 1-client mean: near 2 when the two share one "
                  "CPU (the GIL), near 1 when they run in parallel."),
        figure(prefix + "perf1", "perf1 mean latency, 1 vs 2 clients, per strategy", report_plots.perf1(run)),
        Heading("perf2 over time, with the long request shaded (C6, C8, C9)", level),
        Paragraph("perf2 sends fib(1) as fast as it can; each bar is one bucket's rate. The shaded band is the "
                  "long fib(n) request from another client. The first bucket is warm-up and is not in the means."),
        figure(prefix + "perf2_over_time", "perf2 rate over time per strategy",
               report_plots.rate_over_time(run, cell_ids(record, "convoy/"),
                                           "perf2 rate over time, per strategy")),
        Heading("perf2 rate next to the loopback floor (C8, C10)", level),
        Paragraph("The floor is a bare socket ping-pong in the same run: no server could answer faster. A convoy "
                  "cell's rate is its mean before the long request."),
        figure(prefix + "perf2_vs_floor", "perf2 rate per strategy next to the loopback floor", report_plots.rate_vs_floor(run)),
        Heading("Switch-interval sweep: why C6 happens", level),
        Paragraph("The threaded convoy again, with sys.setswitchinterval() set on the server. perf2's thread "
                  "lets go of the GIL at every socket call, and to get it back it waits one switch interval "
                  "before it asks the long request's thread to let go: while fib(n) runs, perf2 advances about "
                  "once per interval. Compare the rate during the long request with 1/interval."),
        figure(prefix + "switch_interval", "perf2 before and during the long request against the switch interval",
               report_plots.switch_sweep(run)),
        sweep_table(record),
        figure(prefix + "switch_interval_over_time", "perf2 rate over time at each switch interval",
               report_plots.rate_over_time(run, list(switch_interval_cells(record).values()),
                                           "perf2 rate over time, per switch interval (threaded)")),
        Heading("Server containers (docker stats)", level),
        Paragraph("Sampled about once a second while each server cell ran; 100% CPU is one whole CPU."),
        figure(prefix + "docker_stats", "CPU and memory per server cell", report_plots.docker_stats(run)),
    ]


def versions_section(record):
    return [
        Heading("Across Pythons and builds"),
        Paragraph("The same experiments on each Python's server image (--python); the load generator is the "
                  "same for all. A 't' build is free-threaded, compiled from source without PGO or LTO, so "
                  "its 1-thread cost against the GIL build of the same version includes that difference."),
        Table(versions.HEADER, versions.rows(record)),
    ]


def figure(name, caption, plot):
    """An image block whose caption names the cells the plot lacks."""
    if plot.not_run:
        caption += f" (not run: {', '.join(plot.not_run)})"
    return Image(name, caption, plot.png)


def sweep_table(record):
    table = Table(["switch interval (s)", "1/interval", "cell", "perf2 before", "during the long request", "drop"],
                  [])
    for interval, cell_id in switch_interval_cells(record).items():
        m = ok_measurements(record, cell_id)
        figures = ([claims.rate(m["rate_before_per_s"]), claims.rate(m["rate_during_per_s"]),
                    "n/a" if m["drop"] is None else claims.pct(m["drop"])] if m else [cell_state(record, cell_id)] * 3)
        table.rows.append([f"{interval:g}", f"{1 / interval:,.0f} /s", cell_id, *figures])
    return table


VERDICT_CLASS = {claims.REPRODUCED: "reproduced", claims.NOT_REPRODUCED: "not-reproduced",
                 claims.NOT_RUN: "not-run"}


def claims_section(record):
    rows, notes = claims_rows(record)
    blocks = [Heading("Claims")]
    if not rows:
        return blocks + [Paragraph("No claims table: " + "; ".join(notes), warning=True)]
    counts = {verdict: sum(row["verdict"] == verdict for row in rows) for verdict in VERDICT_CLASS}
    blocks.append(Paragraph(", ".join(f"{n} {verdict}" for verdict, n in counts.items()) + "."))
    table = Table(["", "claim", "the article", "this run", "verdict", "rule"], [], [])
    for row in rows:
        table.rows.append([row["id"], row["claim"], row["article"], row["measured"], verdict_text(row), row["rule"]])
        table.classes.append([None, None, None, None, VERDICT_CLASS.get(row["verdict"]), "rule"])
    blocks.append(table)
    if any("current_verdict" in row for row in rows):
        notes.append(NOW_NOTE)
    blocks += [Paragraph("Note: " + note) for note in notes]
    return blocks


def failed_section(record):
    failed = failed_cells(record)
    blocks = [Heading("Failed cells")]
    if not failed:
        return blocks + [Paragraph("None.")]
    blocks.append(Table(["cell", "error"], [[cell_id, cell.get("error") or ""] for cell_id, cell in failed.items()]))
    blocks += [Details(f"{cell_id}: traceback", cell["traceback"]) for cell_id, cell in failed.items()
               if cell.get("traceback")]
    return blocks


def write_report(run, out_dir):
    blocks = build(run)
    for image in (b for b in blocks if isinstance(b, Image)):
        write_atomic(out_dir / image.path, image.png)
    write_atomic(out_dir / "report.md", to_markdown(blocks))
    write_atomic(out_dir / "report.html", to_html(blocks, f"Concurrency lab report: run {run.id}"))


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="scripts/lab report",
        description="Write a run's report: report.md (with its plots under plots/) and a self-contained "
        "report.html (plots embedded, no external files). It starts with the claims table C1-C13: the "
        "article's figure, this run's measurement and the verdict with its rule.",
        epilog="An incomplete run renders too: its missing cells say 'not run'.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, results/<UTC-timestamp>-<id>")
    parser.add_argument("--out", metavar="DIR", help="where to write the report (default: RUN_DIR)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = Path(args.out or args.run_dir)

    def report():
        write_report(load_run(args.run_dir), out_dir)
        print(f"{out_dir / 'report.html'}\n{out_dir / 'report.md'}")
        return 0

    return one_line_errors(PROG, report)


if __name__ == "__main__":
    sys.exit(main())
