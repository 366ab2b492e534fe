"""loopback_floor: a bare socket ping-pong in perf2's layout, the fastest any server could answer there,
the same ping-pong on one CPU, and the perf2 client's own ceiling.

perf2's layout (lab.cpu.wake_up): the echo on the first pool CPU, the client on the first load CPU, in a
container of the lab image on those two CPUs. It measures no server's Python, so a run over several
Pythons measures it once. The perf2 rates of C8 and C10 are read next to it, and every perf2 rate
against the ceiling: one near it may be the client's limit.
"""
import math

from clients.loopback_floor import SAME
from lab import experiments
from lab.cells import Cell, experiment_name
from lab.cpu import wake_up
from lab.perf2 import CLIENT_LIMITED_RULE, client_limit_note, rate
from lab.records import plots
from lab.records.document import Heading, Paragraph, Table
from lab.runner import environment

SIZES = {"quick": dict(duration_s=1.5), "full": dict(duration_s=3.0)}
SUPPORTS = ("C8", "C10")
PER_PYTHON = False
PERF2_CEILING = "perf2_ceiling_per_s"


def cells(mode):
    return [Cell(params=SIZES[mode], estimate_s=SIZES[mode]["duration_s"] + 1)]


def measure(ctx, cell):
    """Both floors and the perf2 client's ceiling in perf2's layout, the three loops sharing the cell's duration."""
    record = environment.floors(ctx.lab, ctx.settings, cell.params["duration_s"])
    ctx.run.save_raw(cell.id, "floor.json", record)
    return {"rate_per_s": record["rate_per_s"], PERF2_CEILING: record["perf2_ceiling_per_s"],
            **{key: record.get(key) for key in wake_up.FIELDS}}


def live_measurements(floors):
    """Its cell's measurements as the Lab view's master measures them (lab.cpu.wake_up.here's record): the
    across floor, which C10's live form reads."""
    return {"rate_per_s": floors["rate_per_s"]}


def figures(m):
    """Each floor by its layout, and the perf2 client's ceiling (in perf2's layout) where the cell measured it.
    A cell with no perf2_layout has one floor, 'rate', wherever the scheduler put both ends on the load CPUs
    (on one CPU when those were one): not the across floor, so not named as it."""
    floors = [("floor, same CPU", m.get("same_cpu_per_s")), ("floor, across CPUs", m.get("across_cpus_per_s"))]
    if "perf2_layout" not in m:
        floors = [("rate", m["rate_per_s"])]
    return [(name, value, "req/s") for name, value in [*floors, ("perf2 client ceiling", m.get(PERF2_CEILING))]
            if value]


def report(view):
    blocks = [
        Heading("perf2 rate next to the loopback floor (C8, C10)"),
        Paragraph("The floor is a bare socket ping-pong in the same run: no server could answer faster. A convoy "
                  "cell's rate is its mean before the long request." + layout_text(view)),
        plots.figure("perf2_vs_floor", "perf2 rate per strategy next to the loopback floor", floor_plot(view)),
    ]
    ceiling = view.perf2_ceiling()
    if ceiling:  # nothing to read the rates against in a run that did not measure it
        blocks += [Paragraph(f"The perf2 client's ceiling in this run: {rate(ceiling)}, clients.perf2's own loop "
                             f"against the floor's echo process. {CLIENT_LIMITED_RULE}"),
                   ceiling_table(view, ceiling)]
    return blocks


def layout_text(view):
    """' Its layout: ...', the floor cell's layout and its same-CPU floor; '' for a cell without them."""
    m = view.measurements(next(iter(view.cells(__name__)), None)) or {}
    if m.get("same_cpu_per_s") is None:
        return ""
    same, across = wake_up.floors(m)
    if m.get("perf2_layout") == SAME:
        return f" Its layout: the same CPU, {same} (no second CPU for perf2 in this run)."
    return f" Its layout: across CPUs, {across}; the same ping-pong on one CPU: {same}."


def ceiling_table(view, ceiling):
    """Every perf2 rate of the view's cells, client-limited ones marked."""
    table = Table(["cell", "figure", "perf2 rate"], [])
    for cell in view.cells():
        if view.measurements(cell) is not None:
            result = view.result(cell)
            table.rows += [[cell.label, name, rate(value, ceiling)] for name, value, unit in result.get("figures") or []
                           if experiments.is_perf2_rate(result, unit)]
    return table


def floor_plot(view):
    """Each strategy's perf2 rate (before any long request) next to the bare-socket floor and, where the run
    measured it, the perf2 client's ceiling."""
    floor_cell = next(iter(view.cells(__name__)), Cell(experiment_name(__name__)))  # 'not run' if not planned
    ceiling = view.perf2_ceiling()
    layout = (view.measurements(floor_cell) or {}).get("perf2_layout")  # None in a cell with one floor
    rows = [(f"loopback floor (bare sockets{f', {layout}' if layout else ''})", floor_cell, "rate_per_s", plots.FLOOR)]
    if ceiling:
        rows.append(("perf2 client ceiling (its own loop)", floor_cell, PERF2_CEILING, plots.FLOOR))
    rows += [(label, cell, key, plots.BEFORE) for module in experiments.declaring("perf2_alone").values()
             for label, cell, key in module.perf2_alone(view)]
    rates = [(view.measurements(cell) or {}).get(key) for _, cell, key, _ in rows]

    def draw_on(ax):
        y = range(len(rows))
        ax.barh(list(y), [r if r is not None else math.nan for r in rates], color=[c for *_, c in rows])
        floor = rates[0]
        if floor:
            ax.axvline(floor, color=plots.FLOOR, linestyle="--", linewidth=1)
        for i, ((_, cell, _, _), r) in enumerate(zip(rows, rates)):
            if r is None:
                ax.text(0, i, " " + plots.absent(view, cell), va="center", color="dimgray")
            else:
                share = f" ({r / floor:.0%} of the floor)" if floor and i else ""
                limited = client_limit_note(r, ceiling) if cell is not floor_cell else ""
                ax.text(r, i, f" {rate(r)}{share}{limited}", va="center", fontsize="small")
        ax.set_yticks(list(y), [label for label, *_ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("requests per second")
        ax.margins(x=0.35)

    return plots.one_axes(view, [cell for _, cell, _, _ in rows], "perf2 rate per strategy, next to the loopback floor",
                          0.45 * len(rows) + 1.4, draw_on,
                          empty=None if any(rates) else "perf2 and the loopback floor: not run")
