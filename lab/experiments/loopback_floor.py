"""loopback_floor: a bare socket ping-pong in the load container, the fastest any server could answer.

It measures the load side, so a run over several Pythons measures it once. The perf2 rates of C8 and
C10 are read next to it.
"""
import math

from lab import plots
from lab.document import Heading, Paragraph
from lab.experiment import Cell, experiment_name, rate
from lab.experiments import convoy, prefork_lockout

SIZES = {"quick": dict(duration_s=1.5), "full": dict(duration_s=3.0)}
SUPPORTS = ("C8", "C10")
PER_PYTHON = False


def cells(mode):
    return [Cell(params=SIZES[mode], estimate_s=SIZES[mode]["duration_s"] + 1)]


def measure(ctx, cell):
    record = ctx.client(cell, "floor", "loopback_floor", "--duration", cell.params["duration_s"], timeout=60)
    return {"rate_per_s": record["rate_per_s"]}


def figures(m):
    return [("rate", m["rate_per_s"], "req/s")]


def report(view):
    return [
        Heading("perf2 rate next to the loopback floor (C8, C10)"),
        Paragraph("The floor is a bare socket ping-pong in the same run: no server could answer faster. A convoy "
                  "cell's rate is its mean before the long request."),
        plots.figure("perf2_vs_floor", "perf2 rate per strategy next to the loopback floor", floor_plot(view)),
    ]


def floor_plot(view):
    """Each strategy's perf2 rate (before any long request) next to the bare-socket floor."""
    floor_cell = next(iter(view.cells(__name__)), Cell(experiment_name(__name__)))  # 'not run' if not planned
    rows = [("loopback floor (bare sockets)", floor_cell, "rate_per_s", plots.FLOOR)]
    rows += [(plots.short(cell), cell, "rate_before_per_s", plots.BEFORE) for cell in view.cells(convoy)]
    rows += [(f"{plots.short(cell)} (lockout cell)", cell, "rate_per_s", plots.BEFORE)
             for cell in view.cells(prefork_lockout)]
    rates = [(view.measurements(cell) or {}).get(key) for _, cell, key, _ in rows]

    def draw():
        fig, ax = plots.pyplot().subplots(figsize=(plots.WIDTH_IN, 0.45 * len(rows) + 1.4))
        ax.set_title("perf2 rate per strategy, next to the loopback floor")
        if not any(rates):
            plots.say(ax, "perf2 and the loopback floor: not run")
            return fig
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
                ax.text(r, i, f" {rate(r)}{share}", va="center", fontsize="small")
        ax.set_yticks(list(y), [label for label, *_ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("requests per second")
        ax.margins(x=0.35)
        return fig

    return plots.plot(view, [cell for _, cell, _, _ in rows], draw)
