"""switch_interval: the threaded convoy again at other sys.setswitchinterval() values: why C6 happens.

perf2's thread lets go of the GIL at every socket call, and to get it back it waits one switch
interval before it asks the long request's thread to let go: while fib(n) runs, perf2 advances about
once per interval. The rate during the long request follows 1/interval.
"""
from lab.cells import Cell
from lab.claims import pct
from lab.experiments import convoy
from lab.perf2 import rate
from lab.records import plots
from lab.records.document import Heading, Paragraph, Table
from server.strategies import threaded

SIZES = {"quick": dict(intervals_s=(0.1, 0.001, 0.0001)), "full": dict(intervals_s=(0.1, 0.001, 0.0001))}
SUPPORTS = ("C6",)
PERF2_RATES = True


def cells(mode):
    """The sweep; convoy/threaded is its point at the default interval (0.005 s)."""
    size = convoy.SIZES[mode]
    return [Cell(strategy=threaded, variant=f"{si:g}", params={**size, "switch_interval_s": si},
                 estimate_s=convoy.estimate_s(size)) for si in SIZES[mode]["intervals_s"]]


measure = convoy.measure
figures = convoy.figures


def sweep(view):
    """{switch interval in seconds: cell}, ascending. The cell at the Python's default interval is
    convoy's cell on threaded (the same experiment at the default), unless the sweep has its own."""
    points = {cell.params["switch_interval_s"]: cell for cell in view.cells(__name__)}
    default = view.environment.get("python", {}).get("switch_interval_s")
    threaded_convoy = view.find(convoy, threaded)
    if default is not None and default not in points and threaded_convoy:
        points[default] = threaded_convoy
    return dict(sorted(points.items()))


def report(view):
    points = sweep(view)
    return [
        Heading("Switch-interval sweep: why C6 happens"),
        Paragraph(f"The {threaded.NAME} convoy again, with sys.setswitchinterval() set on the server. perf2's thread "
                  "lets go of the GIL at every socket call, and to get it back it waits one switch interval "
                  "before it asks the long request's thread to let go: while fib(n) runs, perf2 advances about "
                  "once per interval. Compare the rate during the long request with 1/interval."),
        plots.figure("switch_interval", "perf2 before and during the long request against the switch interval",
                     sweep_plot(view, points)),
        sweep_table(view, points),
        plots.figure("switch_interval_over_time", "perf2 rate over time at each switch interval",
                     convoy.rate_over_time(view, list(points.values()),
                                           f"perf2 rate over time, per switch interval ({threaded.NAME})")),
    ]


def sweep_table(view, points):
    table = Table(["switch interval (s)", "1/interval", "cell", "perf2 before", "during the long request", "drop"],
                  [])
    ceiling = view.perf2_ceiling()
    for interval, cell in points.items():
        m = view.measurements(cell)
        shown = ([rate(m["rate_before_per_s"], ceiling), rate(m["rate_during_per_s"], ceiling),
                  "n/a" if m["drop"] is None else pct(m["drop"])] if m else [view.state(cell)] * 3)
        table.rows.append([f"{interval:g}", f"{1 / interval:,.0f} /s", cell.label, *shown])
    return table


def sweep_plot(view, points):
    """perf2's rate before and during the long request against sys.setswitchinterval()."""
    found = {si: view.measurements(cell) for si, cell in points.items()}

    def draw_on(ax):
        for key, label, colour in (("rate_before_per_s", "before the long request", plots.BEFORE),
                                   ("rate_during_per_s", "while it runs", plots.DURING)):
            xs = [si for si, m in found.items() if m and m[key] is not None]
            ax.plot(xs, [found[si][key] for si in xs], marker="o", color=colour, label=label)
        for si, m in found.items():
            if m is None:
                plots.say_at(ax, si, plots.absent(view, points[si]))
            elif m["drop"] is not None and m["rate_during_per_s"] is not None:
                ax.annotate(f"−{m['drop']:.1%}" if m["drop"] >= 0 else f"+{-m['drop']:.1%}",
                            (si, m["rate_during_per_s"]), textcoords="offset points", xytext=(0, -14),
                            ha="center", fontsize="small", color=plots.DURING)
        ax.set_xscale("log")
        ax.set_xlim(min(points) / 2, max(points) * 2)  # every interval in view, run or not
        ax.set_yscale("symlog", linthresh=10)  # a log scale that still shows a rate of 0
        highest = max(m[key] or 0 for m in found.values() if m for key in ("rate_before_per_s", "rate_during_per_s"))
        ax.set_ylim(0, 3 * highest + 10)  # room above the top point on a log scale
        default = view.environment.get("python", {}).get("switch_interval_s")
        ax.set_xticks(list(points), [f"{si:g}" + (" (default)" if si == default else "") for si in points])
        ax.minorticks_off()
        ax.set_xlabel("switch interval (s), log scale")
        ax.set_ylabel("perf2 req/s (log scale)")
        ax.legend()

    return plots.one_axes(view, list(points.values()), f"{threaded.NAME} convoy against the switch interval", 4,
                          draw_on, empty=None if any(found.values()) else "switch-interval sweep: not run")
