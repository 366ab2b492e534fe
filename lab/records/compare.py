"""lab compare RUN_A RUN_B: two runs side by side: their environments, every shared cell's key figures
with the ratio B/A, the answers across Pythons, and the claims' verdicts, changed ones marked.

It reads the two stored records only: the figures each cell stored, and the verdicts each run reached.
"""
import argparse
import sys

from rich.console import Console

from lab import experiments
from lab.cpu import wake_up
from lab.perf2 import CLIENT_LIMITED_RULE, rate
from lab.records import across_pythons
from lab.records.document import CHANGED, Heading, Paragraph, Table, to_markdown, to_terminal
from lab.records.record import RunView, environment_rows, load_run, one_line_errors, verdict_label
from lab.records.store import write_atomic

PROG = "lab compare"
MARK = "◀"  # marks, in the text too (Markdown shows no colour), a row that differs between the runs
MOVED = 0.10  # a figure whose B/A is off 1 by more than this is marked


def show(value, unit, ceiling=None):
    """A figure in words; a perf2 rate given its run's perf2 client ceiling says if it is client-limited."""
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if abs(value) < 1 else f"{value:,.2f} s"
    if unit == "%":
        return f"{value:.1%}"
    if unit == "x":
        return f"x{value:.2f}"
    if unit == "req/s":
        return rate(value, ceiling)
    if isinstance(value, int):
        return f"{value:,}" + (f" {unit}" if unit else "")
    return (f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}") + (f" {unit}" if unit else "")


def ratio(a, b):
    """B/A, or None where it means nothing (a missing figure or A = 0)."""
    if a is None or b is None or a == 0:
        return None
    return b / a


def figures_table(a, b, ceilings=(None, None)):
    """Every stored figure of the cells that ran in both runs, with B/A; then the cells that did not.
    ceilings: each run's perf2 client ceiling, against which its perf2 rates are read."""
    table = Table(["cell", "figure", "A", "B", "B/A", ""], [], [])
    elsewhere = []
    for cell_id in [*a["cells"], *(c for c in b["cells"] if c not in a["cells"])]:
        cell_a, cell_b = a["cells"].get(cell_id), b["cells"].get(cell_id)
        states = [cell["status"] if cell else "not run" for cell in (cell_a, cell_b)]
        if states != ["ok", "ok"]:
            elsewhere.append(f"{cell_id} (A: {states[0]}, B: {states[1]})")
            continue
        name = cell_id + params_note(cell_a, cell_b)
        b_figures = {figure: value for figure, value, _ in cell_b.get("figures") or []}
        for figure, value_a, unit in cell_a.get("figures") or []:
            value_b = b_figures.get(figure)
            ceiling_a, ceiling_b = ceilings if experiments.is_perf2_rate(cell_a, unit) else (None, None)
            add_ratio_row(table, [name, figure, show(value_a, unit, ceiling_a), show(value_b, unit, ceiling_b)],
                          value_a, value_b)
            name = ""  # the cell's name once, on its first row
    return table, elsewhere


def add_ratio_row(table, cells, value_a, value_b):
    """A row of cells, then B/A and MARK if it moved by more than MOVED; a moved row's cells are marked."""
    r = ratio(value_a, value_b)
    moved = r is not None and not 1 - MOVED <= r <= 1 + MOVED
    table.rows.append([*cells, "–" if r is None else f"{r:.2f}", MARK if moved else ""])
    table.classes.append([CHANGED if moved else None] * (len(cells) + 2))


def params_note(cell_a, cell_b):
    """' (params differ: n 27 -> 30)' when the two runs measured with different sizes, else ''."""
    pa, pb = cell_a.get("params") or {}, cell_b.get("params") or {}
    differ = [f"{key} {pa.get(key)} -> {pb.get(key)}" for key in {**pa, **pb} if pa.get(key) != pb.get(key)]
    return f" (params differ: {', '.join(differ)})" if differ else ""


def environment_table(a, b):
    rows_a, rows_b = dict(wake_up.without(environment_rows(a))), dict(wake_up.without(environment_rows(b)))
    table = Table(["", "A", "B", ""], [], [])
    for label in [*rows_a, *(label for label in rows_b if label not in rows_a)]:
        value_a, value_b = rows_a.get(label, "–"), rows_b.get(label, "–")
        differs = value_a != value_b
        table.rows.append([label, value_a, value_b, MARK if differs else ""])
        table.classes.append([CHANGED if differs else None] * 4)
    return table


def wake_up_table(a, b):
    """Both runs' ping-pong floors (environment.wake_up) side by side, with B/A; 'not measured' in a record
    without them."""
    table = Table(["", "A", "B", "B/A", ""], [], [])
    for (label, value_a, text_a), (_, value_b, text_b) in zip(
            *(wake_up.figures(record["environment"].get("wake_up")) for record in (a, b))):
        add_ratio_row(table, [label, text_a, text_b], value_a, value_b)
    return table


def claims_table(a, b):
    """Each claim's verdict in A and in B, as each run reached it; changed ones marked."""
    by_label_a = {verdict_label(row): row for row in a["claims"]}
    by_label_b = {verdict_label(row): row for row in b["claims"]}
    table = Table(["", "claim", "A", "B", ""], [], [])
    changed = 0
    for label in [*by_label_a, *(label for label in by_label_b if label not in by_label_a)]:
        row_a, row_b = by_label_a.get(label), by_label_b.get(label)
        differs = (row_a or {}).get("verdict") != (row_b or {}).get("verdict")
        changed += differs
        table.rows.append([label, (row_a or row_b)["text"], verdict_text(row_a), verdict_text(row_b),
                           "changed" if differs else ""])
        table.classes.append([CHANGED] * 5 if differs else [None] * 5)
    return table, changed


def verdict_text(row):
    """'reproduced', with the rule's version where the run stored it: 'reproduced (rule v2)'."""
    if not row:
        return "–"
    return row["verdict"] + (f" (rule v{row['rule_version']})" if row.get("rule_version") else "")


def build(run_a, run_b):
    a, b = run_a.record, run_b.record
    ceilings = (RunView(run_a).perf2_ceiling(), RunView(run_b).perf2_ceiling())
    figures, elsewhere = figures_table(a, b, ceilings)
    verdicts, changed = claims_table(a, b)
    blocks = [
        Heading(f"Comparison: A = {a['run_id']}, B = {b['run_id']}", 1),
        Paragraph(f"A: {a['status']}, {a['settings'].get('mode')} mode. B: {b['status']}, "
                  f"{b['settings'].get('mode')} mode. {MARK} marks an environment row that differs and a figure "
                  f"whose B/A is off 1 by more than {MOVED:.0%}."
                  + (f" {CLIENT_LIMITED_RULE}" if any(ceilings) else "")),
        Heading("Environment"), environment_table(a, b),
        Heading("The machine's wake-up cost"), Paragraph(wake_up.MEANING), wake_up_table(a, b),
        Heading("Key figures of the cells that ran in both"), figures,
    ]
    if elsewhere:
        blocks.append(Paragraph("Not in both: " + "; ".join(elsewhere) + "."))
    blocks += [Heading("Across Pythons and builds"), across_pythons.side_by_side([("A", run_a), ("B", run_b)])]
    blocks += [Heading("Claims"), Paragraph(f"{changed} verdict(s) changed."), verdicts]
    return blocks


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Put two runs side by side (two machines, two Python versions, two pinnings): the "
        "environment, every cell's key figures with the ratio B/A, the answers across Pythons, and the "
        "claims' verdicts as each run reached them, changed ones marked.")
    parser.add_argument("run_a", metavar="RUN_A", help="a run directory, results/<UTC-timestamp>-<id>")
    parser.add_argument("run_b", metavar="RUN_B", help="another run directory")
    parser.add_argument("--out", metavar="FILE", help="also write the comparison as Markdown to FILE")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def compare():
        blocks = build(load_run(args.run_a), load_run(args.run_b))
        if args.out:
            write_atomic(args.out, to_markdown(blocks))
        to_terminal(blocks, Console())
        return 0

    return one_line_errors(PROG, compare)


if __name__ == "__main__":
    sys.exit(main())
