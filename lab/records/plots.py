"""What the report's plots share: a Plot is drawn only when its PNG is asked for, and says at once which
of its cells lack data. A missing or failed cell never stops a plot: it says "not run" where the
cell's data would be. matplotlib is imported on the first drawing, so that reading a record is fast.
"""
import io
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

from lab.perf2 import rates_per_bucket
from lab.records.document import Image

BEFORE, DURING, FLOOR, LONG = "tab:blue", "tab:red", "tab:gray", "tab:orange"
WIDTH_IN = 9.0


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Plot:
    draw: Callable  # draw() -> a matplotlib figure
    not_run: list  # the cells it would show but which are missing or failed, as lacking() names them

    @cached_property
    def png(self):
        """The figure as PNG bytes; the figure is closed. No metadata, so the same run gives the same bytes."""
        fig = self.draw()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
        pyplot().close(fig)
        return buffer.getvalue()


def plot(view, cells, draw):
    return Plot(draw, lacking(view, cells))


def figure(name, caption, plot):
    """The report's image block of a plot; its caption names the cells the plot lacks."""
    if plot.not_run:
        caption += f" (not run: {', '.join(plot.not_run)})"
    return Image(name, caption, plot)


def lacking(view, cells):
    """The cells without data, each as 'cell' or 'cell (failed)'."""
    return [cell.label + (" (failed)" if view.state(cell) == "failed" else "") for cell in cells
            if view.measurements(cell) is None]


def absent(view, cell):
    """Why a cell has no data: 'not run', 'not run (failed: ...)', or 'n/a' for a figure an ok cell lacks."""
    state = view.state(cell)
    if state == "ok":
        return "n/a"  # the cell ran but has no such figure, e.g. no whole bucket before the long request
    if state == "failed":
        return f"not run (failed: {view.result(cell).get('error') or 'no error recorded'})"
    return "not run"


def say(ax, text):
    """Write text where a plot (or a subplot) would be."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="dimgray", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def say_at(ax, x, text):
    """Write text at x (data) halfway up the axes, where a missing cell's bar or point would be."""
    ax.text(x, 0.5, text, transform=ax.get_xaxis_transform(), ha="center", va="center", color="dimgray",
            fontsize="small", wrap=True)


def short(cell):
    """A cell's name on an axis: its strategy or variant."""
    return cell.variant or cell.strategy or cell.label


def one_axes(view, cells, title, height_in, draw_on, empty=None):
    """The Plot of one axes, WIDTH_IN wide and titled, on which draw_on(ax) draws; with empty (a text for
    when nothing of it was measured), the axes says that instead."""

    def draw():
        fig, ax = pyplot().subplots(figsize=(WIDTH_IN, height_in))
        ax.set_title(title)
        if empty:
            say(ax, empty)
        else:
            draw_on(ax)
        return fig

    return plot(view, cells, draw)


def stacked(view, cells, title, row_in, draw_on, xlabel):
    """The Plot of one subplot per cell, row_in high each, stacked on one x axis under title; draw_on(ax,
    cell) draws a cell's. The first legend any subplot has is shown once, on the top one."""

    def draw():
        plt = pyplot()
        if not cells:
            fig, ax = plt.subplots(figsize=(WIDTH_IN, 2))
            say(ax, f"{title}: not run")
            return fig
        fig, axes = plt.subplots(len(cells), 1, figsize=(WIDTH_IN, row_in * len(cells) + 0.6), sharex=True,
                                 squeeze=False)
        fig.suptitle(title)
        for ax, cell in zip(axes[:, 0], cells):
            draw_on(ax, cell)
        axes[-1, 0].set_xlabel(xlabel)
        handles = next((ax.get_legend_handles_labels() for ax in axes[:, 0] if ax.get_legend_handles_labels()[0]),
                       None)
        if handles:
            axes[0, 0].legend(*handles, loc="upper right", fontsize="small")
        return fig

    return plot(view, cells, draw)


def subtitle(ax, text):
    """A subplot's title, on its left."""
    ax.set_title(text, fontsize="medium", loc="left")


def side_by_side(ax, view, cells, series, notes):
    """Bars side by side for each cell, one per series [(values, colour, label)], the cell's short name
    under them and its note (a text) above the tallest; a cell whose note is None has no data, and says why."""
    x = range(len(cells))
    width = 0.8 / len(series)
    for j, (values, colour, label) in enumerate(series):
        ax.bar([i + (j - (len(series) - 1) / 2) * width for i in x], values, width, color=colour, label=label)
    for i, (cell, note) in enumerate(zip(cells, notes)):
        if note is None:
            say_at(ax, i, absent(view, cell))
        else:
            ax.annotate(note, (i, max(values[i] for values, _, _ in series)), textcoords="offset points",
                        xytext=(0, 4), ha="center")
    ax.set_xticks(list(x), [short(cell) for cell in cells])
    ax.set_xlim(-0.6, len(cells) - 0.4)


def perf2_rate(ax, perf2, start):
    """A perf2 record's rate in each of its buckets, filled, time relative to start."""
    edges, bucket_rates = rates_per_bucket(perf2, start)
    ax.stairs(bucket_rates, edges, color=BEFORE, fill=True, alpha=0.6, label="perf2 rate")


def long_request(ax, m, start, alpha):
    """The long request of a convoy measurement, shaded, time relative to start."""
    ax.axvspan(m["long_started_at"] - start, m["long_ended_at"] - start, color=LONG, alpha=alpha,
               label=f"fib({m['long_n']}) running")


def docker_stats(view):
    """Each server cell's container: mean CPU over the cell and peak memory, from docker stats."""
    stats = {}
    for cell in view.cells():
        samples = (view.raw(cell, "docker_stats.json") or {}).get("samples") or []
        if samples:
            stats[cell.label] = samples

    def draw():
        plt = pyplot()
        fig, (cpu_ax, memory_ax) = plt.subplots(1, 2, figsize=(WIDTH_IN, 0.32 * len(stats) + 1.4), sharey=True)
        fig.suptitle("server containers (docker stats)")
        if not stats:
            say(cpu_ax, "no docker stats")
            say(memory_ax, "no docker stats")
            return fig
        y = list(range(len(stats)))
        cpu = [cpu_percent(samples) for samples in stats.values()]
        cpu_ax.barh(y, [c if c is not None else math.nan for c in cpu], color=BEFORE)
        for i, c in enumerate(cpu):
            cpu_ax.text(c or 0, i, f" {c:.0f}%" if c is not None else " one sample only", va="center",
                        fontsize="small")
        cpu_ax.set_xlabel("CPU %, mean over the cell (100 = one CPU)")
        memory = [max(s["memory_bytes"] for s in samples) / 2**20 for samples in stats.values()]
        memory_ax.barh(y, memory, color=FLOOR)
        for i, mib in enumerate(memory):
            memory_ax.text(mib, i, f" {mib:.0f}", va="center", fontsize="small")
        memory_ax.set_xlabel("peak memory (MiB)")
        cpu_ax.set_yticks(y, list(stats))
        cpu_ax.invert_yaxis()
        for ax in (cpu_ax, memory_ax):
            ax.margins(x=0.2)
        return fig

    return Plot(draw, [])


def cpu_percent(samples):
    """Mean CPU use between the first and the last sample, in % of one CPU; None with one sample."""
    first, last = samples[0], samples[-1]
    if last["t"] <= first["t"]:
        return None
    return (last["cpu_total_ns"] - first["cpu_total_ns"]) / 1e9 / (last["t"] - first["t"]) * 100
