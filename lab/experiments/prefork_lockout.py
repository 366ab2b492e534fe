"""prefork_lockout: prefork answers fast (no IPC), but N long requests lock a new client out (C10)."""
import statistics
import time

from lab.cells import Cell, experiment_name, target
from lab.claims import NotRun, claim, pct
from lab.cpu import layout
from lab.cpu.cpusets import parse_cpuset
from lab.experiments import convoy, loopback_floor
from lab.live import forms
from lab.perf2 import rate
from lab.records import plots
from server import placement
from server.strategies import prefork, threaded

SIZES = {"quick": dict(long_n=36, perf2_s=1.0), "full": dict(long_n=36, perf2_s=1.0)}
ATTEMPTS = 4  # perf2 connections, each to the next waiting child, until one is answered in the layout
PERF2_RATES = True


def cells(mode):
    return [Cell(strategy=prefork, params=SIZES[mode], estimate_s=6)]


def measure(ctx, cell):
    """perf2 on one child, in the run's perf2 layout (lab.cpu.layout): the kernel hands each new connection to
    whichever child waits, so a perf2 answered on another CPU than the layout's is asked again, on a new
    connection (another child), up to ATTEMPTS times; then N long requests and a late client."""
    p = cell.params
    planned = layout.of(ctx.settings, prefork)
    with ctx.server(cell) as server:
        for attempt in range(1, ATTEMPTS + 1):
            watch = ctx.in_background(ctx.client, cell, "thread_cpus", "thread_cpus", "--duration", p["perf2_s"] + 1,
                                      "--interval", convoy.WATCH_INTERVAL_S, timeout=60, on=server)
            perf2 = ctx.client(cell, "perf2", "perf2", *target(server), "--duration", p["perf2_s"], timeout=60)
            answered = layout.computed_on(watch.join(), perf2["started_at"], perf2["ended_at"])
            if answered == [planned["answer_cpu"]]:
                break
        workers = len(placement.worker_cpus(placement.FIXED, parse_cpuset(ctx.settings["pool_cpus"])))
        longs = [ctx.in_background(ctx.client, cell, f"long_{i}", "request", *target(server), p["long_n"],
                                   timeout=600) for i in range(workers)]
        time.sleep(0.3)  # every child is computing now
        late = ctx.client(cell, "late_client", "request", *target(server), 1, timeout=600)
        longs = [t.join() for t in longs]
    first_free = min(r["ended_at"] for r in longs)
    return {"workers": workers, "rate_per_s": perf2["rate_per_s"], "late_wait_s": late["elapsed_s"], "layout": planned,
            "answered_on": answered, "attempts": attempt,
            "long_s": statistics.fmean(r["elapsed_s"] for r in longs),
            "late_reply_after_first_free_s": late["ended_at"] - first_free}


def figures(m):
    return [("perf2", m["rate_per_s"], "req/s"), ("late client's wait", m["late_wait_s"], "s")]


def perf2_alone(view):
    """Its perf2 rate before the long requests, for the loopback floor's plot: named apart from convoy's
    cell of the same strategy."""
    return [(f"{plots.short(cell)} (lockout cell)", cell, "rate_per_s") for cell in view.cells(__name__)]


@claim("C10", "Prefork has no IPC cost but serves only N at once: N long requests lock everyone out.",
       article="qualitative", version=2,
       rule=f"reproduced if {prefork.NAME}'s perf2 rate is >= 50% of {threaded.NAME}'s (no IPC cost), both in one "
            "layout (a perf2 answered on another CPU is asked again, on a new connection, and the claim is not "
            "judged if none was answered in the layout), and a new client's reply waits for a child to be free "
            "(0.1 s slack)")
def c10(measured):
    c = measured(prefork)
    (threads,) = convoy.measured_rates(measured, threaded, of=convoy)
    floor = measured(of=loopback_floor)["rate_per_s"]
    late = c["late_reply_after_first_free_s"]
    if "layout" in c and c["answered_on"] != [c["layout"]["answer_cpu"]]:  # a cell with no layout has none to hold
        raise NotRun(f"{prefork.NAME}'s perf2 was answered on CPU {layout.format_cpus(c['answered_on'] or [])} in "
                     f"each of {c['attempts']} connections, never in the layout ({c['layout']['text']})")
    share = c["rate_per_s"] / threads["rate_before_per_s"]
    both = f"; both in one layout, {c['layout']['text']}" if "layout" in c else ""
    return (f"perf2 {rate(c['rate_per_s'])}, {pct(share)} of {threaded.NAME}'s (loopback floor {rate(floor)}{both}); "
            f"with {c['workers']} long requests running, a new client waited {c['late_wait_s']:.2f} s "
            f"(reply {late:+.2f} s after the first child was free)", late >= -0.1 and share >= 0.5)


def live_lockout():
    """The live form of C10: perf2 on the threaded server, then on the forked children, then one long
    request per child and a client that comes late."""
    alone = forms.Role("perf2_alone", threaded, 1)
    perf2 = forms.Role("perf2", prefork, 1)
    long = forms.Role("long_request", prefork, SIZES["full"]["long_n"], once_after_s=0.5, per_pool_cpu=True)
    late = forms.Role("late_client", prefork, 1, once_after_s=1.5)

    def cells(run):
        longs, (late_request,) = run.requests(long.key), run.requests(late.key)
        if len(longs) < long.count(run.settings):
            raise forms.NotEnough("not enough data yet: waiting for every long request to end")
        rate_per_s = forms.mean([count for _, count in run.buckets(perf2.request_name, *run.window(1))["buckets"][1:]])
        found = convoy.live_cells(run, threaded, alone.request_name, None, *run.window(0))
        found[Cell(experiment_name(loopback_floor)).label] = run.load_side(experiment_name(loopback_floor))
        found[Cell(experiment_name(__name__), prefork).label] = {
            "workers": len(longs), "rate_per_s": rate_per_s,
            "late_wait_s": late_request["ended_at"] - late_request["started_at"],
            "long_s": forms.mean([r["ended_at"] - r["started_at"] for r in longs]),
            "late_reply_after_first_free_s": late_request["ended_at"] - min(r["ended_at"] for r in longs)}
        return found

    return forms.LiveForm(
        c10, f"C10: {prefork.NAME}'s lockout, next to {threaded.NAME}", roles=(alone, perf2, long, late),
        stages=(forms.Stage(5, (alone.key,), label=f"perf2 on {threaded.NAME}"),
                forms.Stage(5, (perf2.key,), label=f"perf2 on {prefork.NAME}"),
                forms.Stage(3, (long.key, late.key), until_done=long.key, label="a long request per child, a late client")),
        cells=cells, about=f"{prefork.NAME} answers perf2 fast (no pool in between), but once every child holds a long "
                           "request, a new client waits until one is free.")


LIVE = [live_lockout()]
