#!/usr/bin/env python3
"""Put two runs side by side: their environments, every shared cell's key figures with the ratio
B/A, and the claims' verdicts, changed ones marked."""
import argparse
import sys

from rich.console import Console
from rich.table import Table as RichTable

from matrix import claims, versions
from matrix.document import Heading, Paragraph, Table, to_markdown
from matrix.results import write_atomic
from matrix.run_view import NOW_NOTE, claims_rows, environment_rows, load_run, one_line_errors, verdict_text

PROG = "compare"
CHANGED = "changed"  # the CSS class (and rich style) of a row that differs between the runs
MARK = "◀"  # and its mark in the text, which Markdown shows
MOVED = 0.10  # a figure whose B/A is off 1 by more than this is marked


def perf1_figures(m):
    return [("1-client mean", m["one_client_mean_s"], "s"), ("2-client mean", m["two_clients_mean_s"], "s"),
            ("2/1 latency ratio", m["ratio"], "x")]


def convoy_figures(m):
    return [("perf2 before", m["rate_before_per_s"], "req/s"), ("perf2 during", m["rate_during_per_s"], "req/s"),
            ("drop", m["drop"], "%"), ("long request", m.get("long_s"), "s")]


def idle_figures(m):
    return [("served", m["served"], ""), ("threads per connection", m["threads_per_connection"], ""),
            ("RSS per connection", m["rss_kib_per_connection"], "KiB")]


def gil_stall_figures(m):
    return [("the C call", m["call_s"], "s"), ("longest tick gap", m["longest_gap_s"], "s"),
            ("control's longest gap", m["control_longest_gap_s"], "s")]


def thread_memory_figures(m):
    figures = []
    for variant in m["variants"]:
        stack = "default stack" if variant["stack_size_kib"] is None else f"{variant['stack_size_kib']} KiB stack"
        figures += [(f"{stack}: virtual per thread", variant["vm_size_per_thread_kib"], "KiB"),
                    (f"{stack}: resident per thread", variant["vm_rss_per_thread_kib"], "KiB")]
    return figures


def recursion_figures(m):
    return [(f"{p['kind']}, {'default' if p['stack_size_kib'] is None else str(p['stack_size_kib']) + ' KiB'} "
             f"stack: {p['outcome']} at depth", p["depth"], "") for p in m["probes"]]


KEY_FIGURES = {
    "perf1": perf1_figures,
    "convoy": convoy_figures,
    "loopback_floor": lambda m: [("rate", m["rate_per_s"], "req/s")],
    "prefork_lockout": lambda m: [("perf2", m["rate_per_s"], "req/s"), ("late client's wait", m["late_wait_s"], "s")],
    "idle_connections": idle_figures,
    "gil_stall": gil_stall_figures,
    "thread_memory": thread_memory_figures,
    "recursion_depth": recursion_figures,
    "one_at_a_time": lambda m: [("2nd client's wait", m["second_wait_s"], "s"),
                                ("2nd reply after 1st close", m["second_reply_after_first_close_s"], "s")],
    "echo_clients": lambda m: [("served", m["served"], ""), ("time to serve all", m["serve_s"], "s")],
    "fib": lambda m: [(f"fib({n})", s, "s") for n, s in sorted(m["seconds"].items(), key=lambda item: int(item[0]))],
}


def key_figures(cell):
    """[(name, value, unit)] of a cell's measurements; an experiment this script does not know shows its
    top-level numbers."""
    figures = KEY_FIGURES.get(cell["experiment"])
    if figures:
        return figures(cell["measurements"])
    return [(key, value, "") for key, value in cell["measurements"].items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)]


def show(value, unit):
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value * 1000:,.1f} ms" if abs(value) < 1 else f"{value:,.2f} s"
    if unit == "%":
        return f"{value:.1%}"
    if unit == "x":
        return f"x{value:.2f}"
    if unit == "req/s":
        return claims.rate(value)
    if isinstance(value, int):
        return f"{value:,}" + (f" {unit}" if unit else "")
    return (f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}") + (f" {unit}" if unit else "")


def ratio(a, b):
    """B/A, or None where it means nothing (a missing figure or A = 0)."""
    if a is None or b is None or a == 0:
        return None
    return b / a


def figures_table(a, b):
    """Every figure of the cells that ran in both runs, with B/A; then the cells that did not."""
    table = Table(["cell", "figure", "A", "B", "B/A", ""], [], [])
    elsewhere = []
    for cell_id in [*a["cells"], *(c for c in b["cells"] if c not in a["cells"])]:
        cell_a, cell_b = a["cells"].get(cell_id), b["cells"].get(cell_id)
        states = [cell["status"] if cell else "not run" for cell in (cell_a, cell_b)]
        if states != ["ok", "ok"]:
            elsewhere.append(f"{cell_id} (A: {states[0]}, B: {states[1]})")
            continue
        name = cell_id + params_note(cell_a, cell_b)
        b_figures = {figure: value for figure, value, _ in key_figures(cell_b)}
        for figure, value_a, unit in key_figures(cell_a):
            value_b = b_figures.get(figure)
            r = ratio(value_a, value_b)
            moved = r is not None and not 1 - MOVED <= r <= 1 + MOVED
            table.rows.append([name, figure, show(value_a, unit), show(value_b, unit),
                               "–" if r is None else f"{r:.2f}", MARK if moved else ""])
            table.classes.append([CHANGED if moved else None] * 6)
            name = ""  # the cell's name once, on its first row
    return table, elsewhere


def params_note(cell_a, cell_b):
    """' (params differ: n 27 -> 30)' when the two runs measured with different sizes, else ''."""
    pa, pb = cell_a.get("params") or {}, cell_b.get("params") or {}
    differ = [f"{key} {pa.get(key)} -> {pb.get(key)}" for key in {**pa, **pb} if pa.get(key) != pb.get(key)]
    return f" (params differ: {', '.join(differ)})" if differ else ""


def environment_table(a, b):
    rows_a, rows_b = dict(environment_rows(a)), dict(environment_rows(b))
    table = Table(["", "A", "B", ""], [], [])
    for label in [*rows_a, *(label for label in rows_b if label not in rows_a)]:
        value_a, value_b = rows_a.get(label, "–"), rows_b.get(label, "–")
        differs = value_a != value_b
        table.rows.append([label, value_a, value_b, MARK if differs else ""])
        table.classes.append([CHANGED if differs else None] * 4)
    return table


def claims_table(a, b):
    rows_a, notes_a = claims_rows(a)
    rows_b, notes_b = claims_rows(b)
    by_id_a, by_id_b = {row["id"]: row for row in rows_a}, {row["id"]: row for row in rows_b}
    claim_text = {row["id"]: row["claim"] for row in rows_a + rows_b}
    table = Table(["", "claim", "A", "B", ""], [], [])
    changed = 0
    for claim_id in claim_text:
        row_a, row_b = by_id_a.get(claim_id), by_id_b.get(claim_id)
        # Changed means the runs' own verdicts differ; today's rules ('now:') are shown, not compared.
        differs = (row_a or {}).get("verdict") != (row_b or {}).get("verdict")
        changed += differs
        table.rows.append([claim_id, claim_text[claim_id], verdict_text(row_a) if row_a else "–",
                           verdict_text(row_b) if row_b else "–", "changed" if differs else ""])
        table.classes.append([CHANGED] * 5 if differs else [None] * 5)
    notes = [f"A: {note}" for note in notes_a] + [f"B: {note}" for note in notes_b]
    if any("current_verdict" in row for row in rows_a + rows_b):
        notes.append(NOW_NOTE)
    return table, changed, notes


def build(a, b):
    figures, elsewhere = figures_table(a, b)
    verdicts, changed, notes = claims_table(a, b)
    blocks = [
        Heading(f"Comparison: A = {a['run_id']}, B = {b['run_id']}", 1),
        Paragraph(f"A: {a['status']}, {a['settings'].get('mode')} mode. B: {b['status']}, "
                  f"{b['settings'].get('mode')} mode. {MARK} marks an environment row that differs and a figure "
                  f"whose B/A is off 1 by more than {MOVED:.0%}."),
        Heading("Environment"), environment_table(a, b),
        Heading("Key figures of the cells that ran in both"), figures,
    ]
    if elsewhere:
        blocks.append(Paragraph("Not in both: " + "; ".join(elsewhere) + "."))
    across = [[label, *row] for label, run in (("A", a), ("B", b)) for row in versions.rows(run)]
    blocks += [Heading("Across Pythons and builds"),
               Table(["run", *versions.HEADER], across, [[None] * len(row) for row in across])]
    blocks += [Heading("Claims"), Paragraph(f"{changed} verdict(s) changed."), verdicts]
    blocks += [Paragraph("Note: " + note) for note in notes]
    return blocks


def print_rich(blocks, console):
    for block in blocks:
        if isinstance(block, Heading):
            console.rule(f"[bold]{block.text}[/bold]")
        elif isinstance(block, Paragraph):
            console.print(block.text, markup=False, highlight=False)
        elif isinstance(block, Table):
            table = RichTable(show_lines=False)
            for column in block.header:
                table.add_column(column, overflow="fold")  # cell ids have no spaces to wrap at
            for row, classes in zip(block.rows, block.classes):
                table.add_row(*map(str, row), style="bold yellow" if CHANGED in classes else None)
            console.print(table)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="scripts/lab compare",
        description="Put two runs side by side (two machines, two Python versions, two pinnings): the "
        "environment, every cell's key figures with the ratio B/A, and the claims' verdicts, changed "
        "ones marked.")
    parser.add_argument("run_a", metavar="RUN_A", help="a run directory, results/<UTC-timestamp>-<id>")
    parser.add_argument("run_b", metavar="RUN_B", help="another run directory")
    parser.add_argument("--out", metavar="FILE", help="also write the comparison as Markdown to FILE")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    def compare():
        blocks = build(load_run(args.run_a).record, load_run(args.run_b).record)
        if args.out:
            write_atomic(args.out, to_markdown(blocks))
        print_rich(blocks, Console())
        return 0

    return one_line_errors(PROG, compare)


if __name__ == "__main__":
    sys.exit(main())
