"""lab report RUN_DIR: a run's report, report.md (plots under plots/) and a self-contained report.html.

It reads the stored record only: the cells the run planned, their measurements and raw files, and
the verdicts the run reached. Each experiment writes its own section (lab.experiments).
"""
import argparse
import sys
from pathlib import Path

from lab import experiments
from lab.cpu import wake_up
from lab.records import across_pythons
from lab.records import verdicts
from lab.records import plots
from lab.records.document import Details, Heading, Image, Paragraph, Table, to_html, to_markdown
from lab.records.record import RunView, environment_rows, load_run, one_line_errors, python_build, summary_line
from lab.records.store import write_atomic

PROG = "lab report"


def build(run):
    """The report's blocks, in reading order."""
    whole = RunView(run)
    record = run.record
    blocks = [Heading(f"Concurrency lab report: run {record['run_id']}", 1), Paragraph(summary_line(record))]
    if record["status"] != "complete":
        blocks.append(unfinished(run, whole))
    if record["settings"].get("pythons"):  # --python: the answers side by side first
        blocks += [Heading("Across Pythons and builds"),
                   Paragraph("The same experiments on each Python's server image (--python); the load generator "
                             "is the same for all. A 't' build is free-threaded and a 'g' build its twin with the "
                             "GIL, both compiled from the same source with the same flags, without PGO or LTO: "
                             "'t' against 'g' is what free-threading costs, 'g' against the distribution's "
                             "build of the same version what the build lacks."),
                   across_pythons.table(run)]
    blocks += [Heading("Claims"), *verdicts.section(whole.verdicts())]
    if record["settings"].get("pythons"):
        for python, part in whole.parts().items():
            blocks.append(Heading(f"Python {python}: {python_build(part.environment.get('python'))}"))
            blocks += measurements(part, f"{python}_", level=3)
    else:
        blocks += measurements(whole, "", level=2)
    rows = wake_up.without(environment_rows(record)) + wake_up.rows(record["environment"])
    blocks += [Heading("Environment"), Table(["", "value"], [list(row) for row in rows]), Paragraph(wake_up.MEANING)]
    blocks += failed_section(whole)
    return blocks


def unfinished(run, view):
    status = run.record["status"]
    missing, failed = view.missing(), view.failed()
    if run.record.get("planned") is None:
        planned = "This record did not store its plan, so the cells that did not run are not named. "
    else:
        planned = (f"{len(missing)} planned cell(s) did not run ({', '.join(cell.id for cell in missing)}). "
                   if missing else "")
    return Paragraph(
        (f"This run is {status}: " if status == "incomplete" else f"This run did not finish (status: {status}): ")
        + planned + (f"{len(failed)} cell(s) failed (see Failed cells). " if failed else "")
        + f"Claims and plots that need them say 'not run'. scripts/lab run --resume {run.dir} finishes it.",
        warning=True)


def measurements(view, prefix, level):
    """The section of every experiment the run planned or has cells of (one it has no cells of has nothing
    to say of it), then the server containers' docker stats; image names start with prefix."""
    blocks = []
    for module in experiments.modules().values():
        if hasattr(module, "report") and view.cells(module):
            blocks += module.report(view)
    blocks += [
        Heading("Server containers (docker stats)"),
        Paragraph("Sampled about once a second while each server cell ran; 100% CPU is one whole CPU."),
        plots.figure("docker_stats", "CPU and memory per server cell", plots.docker_stats(view)),
    ]
    for block in blocks:
        if isinstance(block, Heading):
            block.level = level
        elif isinstance(block, Image):
            block.name = prefix + block.name
    return blocks


def failed_section(view):
    failed = view.failed()
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
        prog=PROG,
        description="Write a run's report: report.md (with its plots under plots/) and a self-contained "
        "report.html (plots embedded, no external files). It starts with the claims table C1-C13: the "
        "article's figure, this run's measurement and the verdict the run reached, with its rule. It "
        "reads only the run's stored record: a later lab never re-plans or re-judges an old run.",
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
