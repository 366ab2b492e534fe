"""convoy: perf2's rate before and while a long request runs (C6 on threaded, C8 on a process pool, C9 on a
threshold pool).

perf2 asks fib(1) as fast as it can; after a delay, another client asks one long fib(n). Under the GIL
perf2's thread advances about once per switch interval while fib(n) runs, and its rate collapses (C6).
A process pool costs every short request its trip to a worker, but a long request no longer drops the
rate (C8); a threshold pool keeps the short requests inline and fast (C9).
"""
import math
import time
from contextlib import nullcontext

from lab.cells import Cell, experiment_name, target
from lab.claims import NotRun, claim, pct
from lab.cpu import layout
from lab.cpu.cpusets import parse_cpuset
from lab.live import forms
from lab.perf2 import rate, rates
from lab.pythons import version_tuple
from lab.records import plots
from lab.records.document import Heading, Paragraph
from server import placement
from server.strategies import (asyncio_inline, asyncio_pool, generators, prefork, process_pool, runs_on,
                               subinterpreters, threaded, threshold_pool)

SIZES = {"quick": dict(perf2_s=2.5, long_n=34, long_delay_s=0.8, interval_s=0.1),
         "full": dict(perf2_s=8.0, long_n=37, long_delay_s=2.0, interval_s=0.1)}
STRATEGIES = {"quick": [threaded, process_pool, threshold_pool, asyncio_pool, subinterpreters],
              "full": [threaded, process_pool, threshold_pool, prefork, asyncio_inline, generators, asyncio_pool,
                       subinterpreters]}
STEADY = 0.3  # a rate that changes no more than this, down or up, while the long request runs holds up
COLLAPSED = 0.9  # a rate that drops at least this much while the long request runs collapsed (C6)
# The CPUs C6, C8 and C9 need to say anything, as measured on a Docker with one CPU (scripts/current-engine
# start one-cpu --cpus 0; scripts/lab run --experiments convoy --server-cpus 0 --pool-cpus 0 --load-cpus 0,
# 2026-12-06). C8 and C9 need them for their pool server: C8's pool of one worker queued every short request
# behind the long one (-100%), C9 dropped 39.8% (its line: 30%). C6 needs them for the lab, its load on a CPU
# apart from its server: with both on CPU 0 it dropped 68.5% to 70.0% in four runs (its line: 90%), with the
# server on CPU 0 and the load on CPU 1 it dropped 98.3% twice. The live forms read it: the Lab view says so
# on a Docker with fewer CPUs, and does not judge them.
MIN_CPUS = 2
ATTEMPTS = 3  # a cell whose layout keeps changing is measured this many times, then not judged
WATCH_INTERVAL_S = 0.1  # clients.thread_cpus's samples: a few ms of CPU each, on the server's CPUs
PERF2_RATES = True


def cells(mode):
    return [Cell(strategy=s, params=SIZES[mode], estimate_s=estimate_s(SIZES[mode])) for s in STRATEGIES[mode]]


def estimate_s(size):
    return size["perf2_s"] + 2


def measure(ctx, cell, beside=None):
    """perf2 with the long request in the middle, in the run's perf2 layout (lab.cpu.layout); a cell whose
    layout did not hold, before against during, is measured again, up to ATTEMPTS times in all, and
    keeps the last attempt's reasons in layout_changes. beside(server), if given, is a context manager
    held around the clients (the GIL sampler of gil_share, whose own sampling is left unchecked)."""
    earlier = []
    for attempt in range(1, ATTEMPTS + 1):
        m = measure_once(ctx, cell, beside)
        if not m["layout_changes"] or beside or attempt == ATTEMPTS:
            break
        earlier.append(m["layout_changes"])
    return {**m, "attempts": attempt, "earlier_changes": earlier}


def measure_once(ctx, cell, beside=None):
    p = cell.params
    planned = layout.of(ctx.settings, cell.strategy)
    extra = ["--switch-interval", p["switch_interval_s"]] if "switch_interval_s" in p else []
    with ctx.server(cell, *extra) as server, beside(server) if beside else nullcontext():

        def long_request():
            time.sleep(p["long_delay_s"])
            return ctx.client(cell, "long_request", "request", *target(server), p["long_n"], timeout=600)

        watch = ctx.in_background(ctx.client, cell, "thread_cpus", "thread_cpus", "--duration", p["perf2_s"] + 1,
                                  "--interval", WATCH_INTERVAL_S, timeout=p["perf2_s"] + 60, on=server)
        long = ctx.in_background(long_request)
        perf2 = ctx.client(cell, "perf2", "perf2", *target(server), "--interval", p["interval_s"],
                           "--duration", p["perf2_s"], timeout=p["perf2_s"] + 60)
        long, watch = long.join(), watch.join()
    # From the send, not from the client's start: the load CPU is busy with perf2, and connecting can
    # take a tenth of a second, whose buckets would count as 'during' at perf2's full rate.
    m = rates(perf2, long["sent_at"], long["ended_at"])
    warm = perf2["buckets"][1][0] if len(perf2["buckets"]) > 1 else perf2["started_at"]  # rates() skips bucket 0
    phases = {"before": (warm, m["long_started_at"]), "during": (m["long_started_at"], m["long_ended_at"])}
    return {**m, "long_n": p["long_n"], "long_s": long["elapsed_s"], "switch_interval_s": p.get("switch_interval_s"),
            "perf2_started_at": perf2["started_at"], "perf2_ended_at": perf2["ended_at"],
            "layout": planned,
            "layout_changes": layout.changes(watch, phases, planned, parse_cpuset(ctx.settings["load_cpus"])),
            "long_cpus": layout.computed_on(watch, *phases["during"])}


def figures(m):
    return [("perf2 before", m["rate_before_per_s"], "req/s"), ("perf2 during", m["rate_during_per_s"], "req/s"),
            ("drop", m["drop"], "%"), ("long request", m.get("long_s"), "s")]


def text(m, ceiling=None):
    """'2,035 req/s -> 160 req/s during fib(34) (-92.1%)'; given the run's perf2 client ceiling, a rate
    near it says it is client-limited."""
    change = "" if m["drop"] is None else f" ({-m['drop'] * 100:+.1f}%)"
    return (f"{rate(m['rate_before_per_s'], ceiling)} -> {rate(m['rate_during_per_s'], ceiling)} "
            f"during fib({m['long_n']}){change}")


def measured_rates(measured, *strategies, of=None):
    """The convoy measurements whose before-rate was measured (it is None when no whole bucket preceded
    the long request, e.g. a delay shorter than two buckets): such a cell gives no verdict."""
    found = [measured(strategy, of=of) for strategy in strategies]
    for strategy, m in zip(strategies, found):
        if not m["rate_before_per_s"]:
            raise NotRun(f"{measured.label(strategy, of=of)} measured no perf2 rate before the long request")
        if m.get("layout_changes"):  # absent from a cell whose layout was not checked
            raise NotRun(f"{measured.label(strategy, of=of)}: perf2's layout did not hold in any of its "
                         f"{m['attempts']} attempts; the last: {'; '.join(m['layout_changes'])}; it measured "
                         f"{text(m)}{in_layout(m)}")
    return found


def steady(m):
    """Whether the rate held during the long request: it changed by no more than STEADY, down or up. A rise
    was a change of layout, not the server's doing (docs/runner.md); a cell with no recorded layout is
    judged on its drop alone."""
    if m["drop"] is None:
        return False
    return abs(m["drop"]) <= STEADY if m.get("layout") else m["drop"] <= STEADY


def in_layout(m):
    """'; in one layout, across CPUs: the server answers on CPU 0, the client asks on CPU 1; fib(34) computed
    on CPU 1' ('' for a cell with no recorded layout)."""
    if not m.get("layout"):
        return ""
    where = f"; fib({m['long_n']}) computed on CPU {layout.format_cpus(m['long_cpus'])}" if m.get("long_cpus") else ""
    steady = (f"; before it, the rate per {m['bucket_s']:g} s varied by {m['before_cv']:.1%} (CV)"
              if m.get("before_cv") is not None else "")
    return f"; in one layout, {m['layout']['text']}{where}{steady}"


LAYOUT_RULE = ("perf2 measured in one layout (the server's answering thread on its first CPU, the client on the "
               "load's first CPU: lab.cpu.layout), a cell whose layout changed between before and during measured "
               f"again, up to {ATTEMPTS} times, and not judged if it changed every time")


@claim("C6", f"perf2 on the {threaded.NAME} server drops > 99% while a long request runs.",
       article="~22k -> ~100 req/s", version=2,
       rule=f"reproduced if {threaded.NAME}'s perf2 rate drops >= {COLLAPSED:.0%} while the long request runs; "
            + LAYOUT_RULE)
def c6(measured):
    (m,) = measured_rates(measured, threaded)
    return text(m) + in_layout(m), m["drop"] is not None and m["drop"] >= COLLAPSED


@claim("C8", "A process pool costs short requests ~95% of their rate, but a long request no longer drops it.",
       article="~22k -> ~1.3k req/s, steady", version=2,
       rule=f"reproduced if {process_pool.NAME}'s perf2 rate is >= 50% below {threaded.NAME}'s and changes by "
            f"<= {STEADY:.0%}, down or up, during the long request; " + LAYOUT_RULE)
def c8(measured):
    pool, threads = measured_rates(measured, process_pool, threaded)
    cost = 1 - pool["rate_before_per_s"] / threads["rate_before_per_s"]
    return (f"{rate(pool['rate_before_per_s'])} vs {threaded.NAME} {rate(threads['rate_before_per_s'])} "
            f"({pct(cost)} lower); during the long request: {text(pool)}{in_layout(pool)}", cost >= 0.5 and steady(pool))


@claim("C9", "A threshold pool keeps short requests fast while long ones run elsewhere.", article="implied",
       version=2,
       rule=f"reproduced if {threshold_pool.NAME} keeps >= 50% of {threaded.NAME}'s rate and changes by "
            f"<= {STEADY:.0%}, down or up, during the long request; " + LAYOUT_RULE)
def c9(measured):
    pool, threads = measured_rates(measured, threshold_pool, threaded)
    share = pool["rate_before_per_s"] / threads["rate_before_per_s"]
    return f"{pct(share)} of {threaded.NAME}'s rate; {text(pool)}{in_layout(pool)}", share >= 0.5 and steady(pool)


def report(view):
    return [
        Heading("perf2 over time, with the long request shaded (C6, C8, C9)"),
        Paragraph("perf2 sends fib(1) as fast as it can; each bar is one bucket's rate. The shaded band is the "
                  "long fib(n) request from another client. The first bucket is warm-up and is not in the means."
                  + layouts_of(view)),
        plots.figure("perf2_over_time", "perf2 rate over time per strategy",
                     rate_over_time(view, view.cells(__name__), "perf2 rate over time, per strategy")),
    ]


def layouts_of(view):
    """' Every rate here was measured in one layout, across CPUs: ...' (each, if the cells differ; '' for
    cells with no recorded layout)."""
    found = {m["layout"]["text"]: None for m in map(view.measurements, view.cells(__name__)) if m and m.get("layout")}
    if not found:
        return ""
    return (" Every rate here was measured in one layout, " if len(found) == 1 else " Layouts: ") + "; ".join(found) + "."


def rate_over_time(view, cells, title):
    """perf2's rate in each bucket, one subplot per convoy cell, with the long request shaded."""

    def draw_on(ax, cell):
        m = view.measurements(cell)
        perf2 = view.raw(cell, "perf2.json") if m else None
        if m is None or not perf2 or not perf2.get("buckets"):
            plots.subtitle(ax, cell.label)
            plots.say(ax, plots.absent(view, cell) if m is None else "no raw perf2.json for this cell")
            return
        start = perf2.get("started_at") or perf2["buckets"][0][0]
        plots.perf2_rate(ax, perf2, start)
        plots.long_request(ax, m, start, alpha=0.35)
        if m["rate_before_per_s"] is not None:
            ax.axhline(m["rate_before_per_s"], color=plots.BEFORE, linestyle="--", linewidth=1, label="mean before")
        plots.subtitle(ax, f"{cell.label}: {text(m)}")
        ax.set_ylabel("req/s")
        ax.set_ylim(bottom=0)

    width = next((cell.params.get("interval_s") for cell in cells if cell.params.get("interval_s")), math.nan)
    return plots.stacked(view, cells, title, 1.9, draw_on, f"seconds since perf2 started (buckets of {width:g} s)")


def perf2_alone(view):
    """Its perf2 rates before the long request, for the loopback floor's plot."""
    return [(plots.short(cell), cell, "rate_before_per_s") for cell in view.cells(__name__)]


def live_cells(run, strategy, name, long_role, start, end):
    """The convoy cell of `strategy` (perf2's rate before and while a long request ran) in a live run
    (lab.live.forms.LiveRun), as measure() makes it, from the requests `name` seen in [start, end)."""
    long = long_role and run.requests(long_role.key)[0]
    long_start, long_end = (long["started_at"], long["ended_at"]) if long else (math.inf, math.inf)
    m = rates(run.buckets(name, start, end, settle=0), long_start, long_end)
    if long_role and not m["buckets_during"]:
        raise forms.NotEnough("not enough data yet: the long request has not lasted a whole second")
    m.update(long_n=long_role.n if long_role else None, long_s=long and long["ended_at"] - long["started_at"])
    if run.settings.get("placement") == placement.FIXED:  # only servers that place their threads have a layout
        m["layout"] = layout.of(run.settings, strategy)
    return {Cell(experiment_name(__name__), strategy).label: m}


def live_convoy(claim_, strategy, about, compared=None, min_cpus=1, min_lab_cpus=1):
    """The live form of C6, C8 and C9: perf2 (fib(1) in a loop) on `strategy`, and one long request
    after LIVE_DELAY_S; with `compared`, perf2 alone on that server first, for the rule's comparison."""
    short = forms.Role("perf2", strategy, 1)
    long = forms.Role("long_request", strategy, LIVE_LONG_N, once_after_s=LIVE_DELAY_S)
    convoy = forms.Stage(LIVE_DELAY_S + 2, (short.key, long.key), until_done=long.key,
                        label=f"perf2 on {strategy.NAME}, fib({LIVE_LONG_N}) at {LIVE_DELAY_S:g} s")
    roles, stages = (short, long), (convoy,)
    if compared is not None:
        alone = forms.Role("perf2_alone", compared, 1)
        roles, stages = (alone, *roles), (forms.Stage(LIVE_ALONE_S, (alone.key,), label=f"perf2 on {compared.NAME}"),
                                          convoy)

    def cells(run):
        found = live_cells(run, strategy, short.request_name, long, *run.window(len(stages) - 1))
        if compared is not None:
            found.update(live_cells(run, compared, alone.request_name, None, *run.window(0)))
        return found

    title = f"{claim_.id}: the convoy on {strategy.NAME}" + (f", next to {compared.NAME}" if compared else "")
    return forms.LiveForm(claim_, title, roles=roles, stages=stages, cells=cells, about=about, min_cpus=min_cpus,
                           min_lab_cpus=min_lab_cpus)


LIVE_LONG_N = 40  # 6 to 8 s here: the collapse deepens over its first seconds on 2 CPUs
LIVE_DELAY_S = 4.0
LIVE_ALONE_S = 6
LIVE = [
    live_convoy(c6, threaded, "perf2's rate per second, unsmoothed: it collapses while the long request holds the "
                              "GIL, and comes back when it ends.", min_lab_cpus=MIN_CPUS),
    live_convoy(c8, process_pool, f"perf2 on the process pool runs at a fraction of {threaded.NAME}'s rate (every "
                                  "request goes to a worker and back), but the long request no longer stops it.",
                compared=threaded, min_cpus=MIN_CPUS),
    live_convoy(c9, threshold_pool, f"The threshold pool answers short requests inline, at nearly {threaded.NAME}'s "
                                    "rate, and sends the long one to a worker: no collapse.",
                compared=threaded, min_cpus=MIN_CPUS),
]


def during_long_request(strategy):
    """A column across Pythons: the strategy's rate before and during the long request."""

    def column(view, python, views):
        m = view.measurements(view.find(__name__, strategy))
        return text(m, view.perf2_ceiling()) if m and m["drop"] is not None else "not run"

    return column


def interpreters_vs_processes(view, python, views):
    """C8's IPC cost with interpreters instead of processes: the two pools' perf2 rates."""
    if python[:1].isdigit() and not runs_on(subinterpreters, version_tuple(python)):
        return f"needs {'.'.join(map(str, subinterpreters.PYTHON_SINCE))}"
    interpreters = view.measurements(view.find(__name__, subinterpreters))
    processes = view.measurements(view.find(__name__, process_pool))
    if not interpreters or not processes:
        return "not run"
    a, b = interpreters["rate_before_per_s"], processes["rate_before_per_s"]
    ceiling = view.perf2_ceiling()
    return f"{rate(a, ceiling)} vs {rate(b, ceiling)} (x{a / b:.2f})" if a and b else "not measured"


ACROSS_PYTHONS = [(f"C6: {threaded.NAME}'s perf2 during a long request", during_long_request(threaded)),
                  (f"C8: perf2, {subinterpreters.NAME} vs {process_pool.NAME}", interpreters_vs_processes),
                  (f"{asyncio_pool.NAME} during a long request", during_long_request(asyncio_pool))]
