"""gil_share: which thread of a server holds the GIL, which wait for it, and how often it changes hands,
sample by sample (it explains C4 and C6).

The article explains C4 and C6 with the GIL; the other experiments show only their effects. Here
clients.gil_sampler reads the server's GIL from a side container (clients.gil_state: the holder, each
thread's wait on the GIL, the hand-offs; py-spy only for the threads' names and fib depth) while the same
clients run again:
- convoy: perf2 with a long fib(n) in the middle. While fib(n) runs, its thread holds the GIL in nearly
  every sample and perf2's thread waits for it: C6 made visible. Again at shorter switch intervals: the
  hand-offs follow 1/interval.
- perf1: one perf1 client, then two at once. Alone its thread waits for nothing; two take turns, each
  holding the GIL about half of the time and waiting for it the other half: C4's doubling made visible.
  Two on a process pool wait for their results, not for the GIL; on a pool of subinterpreters (3.14 on)
  each worker holds a GIL of its own.
PHYSICS judges these expectations, each with its rule beside it. The cells are separate from convoy's and
perf1's, so that the sampler's own CPU never touches the figures the claims are judged on. Without a GIL
(free-threaded), each thread's share of a CPU instead.
"""
import re
from dataclasses import dataclass
from typing import Callable

from clients.gil_state import HELD, OTHER, WAIT, handoffs_between
from lab.cells import Cell, target
from lab.claims import NOT_RUN, Measured, NotRun, pct
from lab.experiments import convoy
from lab.perf2 import rates_per_bucket
from lab.records import plots
from lab.records.document import Heading, Paragraph, Table
from lab.runner.gil_sampling import Sampling
from server import threads as server_threads
from server.strategies import process_pool, subinterpreters, threaded

RATE_HZ = 100  # clients.gil_sampler's default: a GIL sample costs about 0.2 ms of CPU on the load CPU
DUMP_RATE_HZ = 5  # py-spy, for the long request's mark: quick mode's fib(n) lasts about a second
BUCKET_S = 0.2  # the timeline's bucket: 20 samples at RATE_HZ
SIZES = {"quick": dict(convoy=convoy.SIZES["quick"], perf1=dict(n=27, perf1_s=1.5), switch_intervals_s=(0.001,)),
         "full": dict(convoy=convoy.SIZES["full"], perf1=dict(n=30, perf1_s=4.0), switch_intervals_s=(0.001, 0.0001))}
PERF1_CELLS = {"perf1-one": (threaded, 1), "perf1": (threaded, 2), "perf1-process_pool": (process_pool, 2),
               "perf1-subinterpreters": (subinterpreters, 2)}  # the plan keeps this one on 3.14 and later
SUPPORTS = ("C4", "C6")


def cells(mode):
    """The convoy, at the default switch interval and the sweep's shorter ones (where perf2's thread gets
    the GIL back more often); perf1 clients: one, then two, on threaded, and two on a process pool and on a
    pool of subinterpreters (each with a GIL of its own)."""
    size = SIZES[mode]
    convoys = [("convoy", size["convoy"])] + [(f"convoy-si-{si:g}", {**size["convoy"], "switch_interval_s": si})
                                              for si in size["switch_intervals_s"]]
    return [*(Cell(strategy=threaded, variant=variant, params=params, estimate_s=convoy.estimate_s(params) + 1)
              for variant, params in convoys),
            *(Cell(strategy=strategy, variant=variant, params={**size["perf1"], "clients": clients},
                   estimate_s=size["perf1"]["perf1_s"] + 3) for variant, (strategy, clients) in PERF1_CELLS.items())]


def is_convoy(cell):
    return "long_n" in cell.params


def measure(ctx, cell):
    samplers = []

    def sampled(server):
        samplers.append(Sampling(server, RATE_HZ, max_s=cell.estimate_s + 120, dump_rate_hz=DUMP_RATE_HZ))
        return samplers[-1]

    if is_convoy(cell):
        m = convoy.measure(ctx, cell, beside=sampled)
        window, long_window = (m["perf2_started_at"], m["perf2_ended_at"]), (m["long_started_at"], m["long_ended_at"])
    else:
        runs = perf1_clients(ctx, cell, sampled)
        m = {"perf1_mean_s": [run["mean_s"] for run in runs]}
        window, long_window = (max(r["started_at"] for r in runs), min(r["ended_at"] for r in runs)), None
    (sampler,) = samplers
    if sampler.record is None:
        raise RuntimeError(f"the GIL sampler: {sampler.error}")
    ctx.run.save_raw(cell.id, "gil.json", sampler.record)
    return {**m, "gil_samples_expected": round(RATE_HZ * (window[1] - window[0])),
            **shares(sampler.record, window, long_window)}


def perf1_clients(ctx, cell, beside):
    """The cell's perf1 clients at once on its server, with beside(server) held around them."""
    p = cell.params
    with ctx.server(cell) as server, beside(server):
        runs = [ctx.in_background(ctx.client, cell, f"perf1_{i}", "perf1", *target(server), "--n", p["n"],
                                  "--duration", p["perf1_s"], timeout=p["perf1_s"] + 60)
                for i in range(1, p["clients"] + 1)]
        return [run.join() for run in runs]


def shares(record, window, long_window=None):
    """Per server thread, the shares of the samples in window in which it held the GIL, waited for it and
    did neither; with long_window (the long request, convoy), also within it, and which thread ran fib(n)
    there; and the GIL's hand-offs per second in each. Without a GIL (free-threaded), each thread's share
    of a CPU instead."""
    samples = [s for s in record["samples"] if window[0] <= s[0] <= window[1]]
    during = [s for s in samples if long_window and long_window[0] <= s[0] <= long_window[1]]
    depth = {}
    for _, _, threads in during:
        for tid, _, fib_depth in threads:
            depth[tid] = max(depth.get(tid, 0), fib_depth)
    long_tid = max(depth, key=depth.get) if depth and max(depth.values()) > 1 else None
    gil = record.get("gil", True)
    rows = []
    for tid, name in record["threads"].items():
        tid = int(tid)  # a JSON object's key
        row = {"tid": tid, "name": name, "role": role(tid, name, record["pid"], long_tid, record["py_spy_error"] is None)}
        if not gil:
            row["on_cpu"] = on_cpu(samples, tid)
            if long_window:
                row["on_cpu_during_long"] = on_cpu(during, tid)
        else:
            row.update({state: state_share(samples, tid, state) for state in (HELD, WAIT, OTHER)})
            if long_window:
                row["held_during_long"], row["wait_during_long"] = state_share(during, tid), state_share(during, tid, WAIT)
        rows.append(row)
    found = {"gil_samples": len(samples), "gil_samples_during_long": len(during) if long_window else None,
             "gil_threads": rows, "sampler_errors": record["errors"], "sampler_cpu_s": record["cpu_s"],
             "mechanism": record["mechanism"], "py_spy": record["py_spy"], "py_spy_error": record["py_spy_error"],
             "rate_hz": record["rate_hz"], "python": record.get("python"),
             "interpreters": record.get("interpreters") or {},
             # its threads' time runnable but off a CPU, per second: a thread woken for the GIL that waits for a
             # CPU is 'other', not 'wait' (None in a record from before it was kept)
             "server_waited_for_cpu": waited_for_cpu(record.get("server_cpu"))}
    if not gil:
        return {**found, "gil_seen": False, "no_gil": f"Python {record.get('python')} runs without a GIL "
                                                      "(free-threaded): each thread's share of a CPU instead"}
    return {**found, "gil_free": state_share(samples, None), "gil_free_during_long": state_share(during, None),
            "gil_handoffs_per_s": handoffs_per_s(samples),
            "gil_handoffs_per_s_during_long": handoffs_per_s(during) if long_window else None,
            "gil_seen": any(state == HELD for _, _, threads in record["samples"] for _, state, _ in threads),
            "long_thread_held": next((r["held_during_long"] for r in rows if r["role"] == "long request"), None)}


def waited_for_cpu(server_cpu):
    if not server_cpu or not server_cpu["seconds"]:
        return None
    return server_cpu["waiting_s"] / server_cpu["seconds"]


def role(tid, name, pid, long_tid, named=True):
    """What the thread is: the long request's, the accept loop (the main thread: its TID is the process's
    PID), a client's connection (threading names a thread by its target, and the connection threads run
    server.threads.placed: 'Thread-3 (placed)', or cut short in /proc's comm), or, where py-spy named the
    threads (named), the server's own (a pool's helper threads); else just a thread."""
    if tid == long_tid:
        return "long request"
    if tid == pid:
        return "accept loop"
    called = re.search(r" \((\w+)\)?$", name)
    if called and server_threads.placed.__name__.startswith(called[1]):
        return "client"
    return "server" if named else "thread"


def state_share(samples, tid, state=HELD):
    """The share of samples in which thread tid was in state (HELD: held the GIL, WAIT: waited for it, OTHER:
    neither); tid None: in which no thread held it (it was free, or being handed over to a thread not yet
    running). None without samples."""
    if not samples:
        return None
    if tid is None:
        return sum(all(s != HELD for _, s, _ in threads) for _, _, threads in samples) / len(samples)
    return sum(any(t == tid and s == state for t, s, _ in threads) for _, _, threads in samples) / len(samples)


def on_cpu(samples, tid):
    """Without a GIL, each sample holds each thread's on-CPU seconds so far: thread tid's share of a CPU from
    the first sample it is in to the last; None with fewer than two."""
    seen = [(s[0], cpu) for s in samples for t, cpu, _ in s[2] if t == tid]
    if len(seen) < 2 or seen[-1][0] <= seen[0][0]:
        return None
    return (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])


def handoffs_per_s(samples):
    """The GIL's hand-offs per second from the first sample to the last; None with fewer than two."""
    return handoffs_between(*samples[0][:2], *samples[-1][:2]) if len(samples) >= 2 else None


# What physics says the sampler must see, each checked on one run's cells (the report's table; tests/test_gil.py)
ALONE_WAIT = 0.1  # one client: no other thread wants the GIL
PAIR_WAIT = (0.25, 0.75)  # two clients: each waits while the other holds it, about half
LONG_WAIT = 0.5  # C6: perf2's thread waits for most of the long request
HANDOFFS_PER_REQUEST = (1.0, 4.0)  # two per perf2 request while fib(n) runs: to perf2's thread and back
SWEEP_SI = 0.001  # the sweep's interval checked against the default's
SWEEP_SHARE = 0.5  # hand-offs rise at least this share of 1/switch interval's rise
POOL_WAIT, POOL_OTHER = 0.1, 0.8  # the process pool's threads wait for results and in I/O, not for the GIL
DEFAULT_SI = 0.005  # sys.getswitchinterval() unless --switch-interval: the convoy cell's


@dataclass(frozen=True)
class Expectation:
    """What physics says a run's samples show: the expectation, its rule's text, and the rule
    (rule(measured) -> (what was measured, in words; whether it holds)), side by side."""
    text: str
    rule_text: str
    rule: Callable


def threads_of(m, *roles):
    return [row for row in m["gil_threads"] if row["role"] in roles]


def one_client(measured, variant):
    m = measured(threaded, variant=variant)
    if not m["gil_seen"]:
        raise NotRun(f"{measured.label(variant=variant)}: {m.get('no_gil') or 'no thread seen holding the GIL'}")
    (client,) = threads_of(m, "client", "thread") or [None]
    if client is None:
        raise NotRun(f"{measured.label(variant=variant)}: no client thread among {len(m['gil_threads'])}")
    return m, client


def alone(measured):
    m, client = one_client(measured, "perf1-one")
    return (f"waited {pct(client[WAIT])}, held {pct(client[HELD])} of {m['gil_samples']} samples",
            client[WAIT] <= ALONE_WAIT)


def pair(measured):
    m = measured(threaded, variant="perf1")
    clients = threads_of(m, "client", "thread")
    if len(clients) != 2:
        raise NotRun(f"{measured.label(variant='perf1')}: {len(clients)} client threads, not 2")
    return ("waited " + " and ".join(pct(row[WAIT]) for row in clients) + f" of {m['gil_samples']} samples; "
            f"{m['gil_handoffs_per_s']:.0f} hand-offs/s", all(PAIR_WAIT[0] <= row[WAIT] <= PAIR_WAIT[1] for row in clients))


def long_wait(measured):
    m, perf2_thread = one_client(measured, "convoy")
    return (f"perf2's thread waited {pct(perf2_thread['wait_during_long'])}, the long request's thread held "
            f"{pct(m['long_thread_held'] or 0)} of {m['gil_samples_during_long']} samples while fib({m['long_n']}) "
            "ran", perf2_thread["wait_during_long"] >= LONG_WAIT)


def handoffs_per_request(measured):
    m = measured(threaded, variant="convoy")
    handoffs, rate = m["gil_handoffs_per_s_during_long"], m["rate_during_per_s"]
    if handoffs is None or not rate:
        raise NotRun(f"{measured.label(variant='convoy')}: no hand-offs or no perf2 rate measured during the long "
                     "request")
    low, high = HANDOFFS_PER_REQUEST
    return (f"{handoffs:.0f} hand-offs/s, perf2 {rate:.0f} req/s: {handoffs / rate:.2f} per request",
            low <= handoffs / rate <= high)


def sweep(measured):
    variant = f"convoy-si-{SWEEP_SI:g}"
    default, short = measured(threaded, variant="convoy"), measured(threaded, variant=variant)
    if not default["gil_handoffs_per_s_during_long"] or short["gil_handoffs_per_s_during_long"] is None:
        raise NotRun(f"{measured.label(variant=variant)}: no hand-offs measured during the long request")
    ratio, ideal = short["gil_handoffs_per_s_during_long"] / default["gil_handoffs_per_s_during_long"], DEFAULT_SI / SWEEP_SI
    return (f"{default['gil_handoffs_per_s_during_long']:.0f} hand-offs/s at {DEFAULT_SI * 1e3:g} ms, "
            f"{short['gil_handoffs_per_s_during_long']:.0f} at {SWEEP_SI * 1e3:g} ms: x{ratio:.1f} (1/switch interval: "
            f"x{ideal:g})", ratio >= SWEEP_SHARE * ideal)


def pool_threads(measured):
    m = measured(process_pool, variant="perf1-process_pool")
    served = threads_of(m, "client", "thread") or [row for row in m["gil_threads"] if row["role"] != "accept loop"]
    if not served:
        raise NotRun(f"{measured.label(variant='perf1-process_pool')}: no connection thread sampled")
    return ("the connection threads waited for the GIL " + ", ".join(pct(row[WAIT]) for row in served)
            + ", for their results or in I/O " + ", ".join(pct(row[OTHER]) for row in served),
            all(row[WAIT] <= POOL_WAIT and row[OTHER] >= POOL_OTHER for row in served))


PHYSICS = [
    Expectation(f"One perf1 client on {threaded.NAME}: its thread waits for the GIL about 0% of the time.",
                f"holds if its thread waits in <= {ALONE_WAIT:.0%} of the samples", alone),
    Expectation(f"Two perf1 clients on {threaded.NAME}: each thread waits about half the time (C4's doubling).",
                f"holds if each waits in {PAIR_WAIT[0]:.0%} to {PAIR_WAIT[1]:.0%} of the samples", pair),
    Expectation("C6: perf2's thread waits for the GIL for most of the long request.",
                f"holds if it waits in >= {LONG_WAIT:.0%} of the samples while fib(n) runs", long_wait),
    Expectation("C6: while fib(n) runs, the GIL changes hands about twice per perf2 request (to perf2's thread "
                "and back).", f"holds if hand-offs/s are {HANDOFFS_PER_REQUEST[0]:g} to {HANDOFFS_PER_REQUEST[1]:g} "
                              "times perf2's rate while fib(n) runs", handoffs_per_request),
    Expectation("The hand-offs follow 1/switch interval.",
                f"holds if, while fib(n) runs, hand-offs/s at {SWEEP_SI * 1e3:g} ms rise at least "
                f"{SWEEP_SHARE:.0%} as much as 1/switch interval over those at {DEFAULT_SI * 1e3:g} ms", sweep),
    Expectation("Process pool: the connection threads wait for their results and in I/O, not for the GIL.",
                f"holds if each waits for the GIL in <= {POOL_WAIT:.0%} of the samples and in >= {POOL_OTHER:.0%} "
                "does something else", pool_threads),
]
HOLDS, DOES_NOT_HOLD = "holds", "does not hold"


def physics(view):
    """[{text, rule, measured, verdict}]: each expectation of PHYSICS judged on the view's cells."""
    cells = {cell.label: view.result(cell) for cell in view.cells(__name__) if view.result(cell)}
    measured, rows = Measured(cells, view.settings, __name__, view.python), []
    for expectation in PHYSICS:
        try:
            text, ok = expectation.rule(measured)
            verdict = HOLDS if ok else DOES_NOT_HOLD
        except NotRun as e:
            text, verdict = str(e), NOT_RUN
        rows.append({"text": expectation.text, "rule": expectation.rule_text, "measured": text, "verdict": verdict})
    return rows


def per_bucket(record, start, width, end, value):
    """(edges, values): value(the samples in the bucket) for each bucket of width seconds from start to end."""
    edges, values = [], []
    t = start
    while t < end:
        edges.append(t - start)
        values.append(value([s for s in record["samples"] if t <= s[0] < t + width]) or 0.0)
        t += width
    edges.append(t - start)
    return edges, values


def figures(m):
    if m.get("no_gil"):
        return [(f"on-CPU share: {row['role']} ({row['name']})", row["on_cpu"], "%") for row in m["gil_threads"]
                if row.get("on_cpu") is not None]  # a record from before on-CPU was sampled has none
    shown = [(f"GIL {kind}: {row['role']} ({row['name']})", row[key], "%") for row in m["gil_threads"]
             if row["role"] != "accept loop" for kind, key in (("held", "held"), ("waited for", "wait"))
             if row.get(key) is not None]  # a record from before wait was sampled has held alone
    if m.get("long_thread_held") is not None:
        shown.append(("GIL held by the long request's thread while it ran", m["long_thread_held"], "%"))
    if m.get("gil_handoffs_per_s") is not None:
        shown.append(("GIL hand-offs per second", m["gil_handoffs_per_s"], "/s"))
    return shown


def report(view):
    cells = view.cells(__name__)
    blocks = [Heading("Who holds the GIL, and who waits for it (explains C4 and C6)"),
              Paragraph(f"clients.gil_sampler reads each server from a side container that shares its PID namespace "
                        f"(and alone has CAP_SYS_PTRACE), {RATE_HZ} times a second, while the convoy and perf1 clients "
                        "run again. Each sample reads the GIL from the server's memory (its holder, and "
                        "switch_number: its hand-offs) and each thread's system call: a thread asleep on the GIL "
                        f"waits for it (clients.gil_state); py-spy, {DUMP_RATE_HZ} times a second, names the threads "
                        "and finds the one running fib(n). These cells are separate from the ones the claims are "
                        "judged on, so the sampler's own CPU never touches those figures.")]
    rows, no_gil = [], []
    for cell in cells:
        m = view.measurements(cell)
        if m is None:
            rows.append([cell.label, plots.absent(view, cell), "", "", "", "", "", ""])
            continue
        if m.get("no_gil"):
            no_gil += [[cell.label, f"{row['name']} ({row['role']})", shown(row.get("on_cpu")),
                        shown(row.get("on_cpu_during_long"))] for row in m["gil_threads"]] or [[cell.label, m["no_gil"]]]
            continue
        if not m["gil_seen"]:
            rows.append([cell.label, "the sampler saw no thread holding the GIL", "", "", "", "", "", ""])
            continue
        sampled = f"{m['gil_samples']} samples at {m['rate_hz']:g} Hz"
        for row in m["gil_threads"]:
            rows.append([cell.label, f"{row['name']} ({row['role']})", shown(row.get(HELD)), shown(row.get(WAIT)),
                         shown(row.get(OTHER)), shown(row.get("held_during_long")), shown(row.get("wait_during_long")),
                         sampled])
        if m.get("gil_free") is not None:
            rows.append([cell.label, "no thread: free, or being handed over", pct(m["gil_free"]), "", "",
                         shown(m.get("gil_free_during_long")), "", ""])
        for interp_id, gil in (m.get("interpreters") or {}).items():
            held = ", ".join(f"{tid} {pct(share)}" for tid, share in gil["holders"].items()) or "nobody"
            rows.append([cell.label, f"subinterpreter {interp_id}'s own GIL, held by: {held}", "", "", "", "", "",
                         f"{gil['samples']} samples; {gil['handoffs_per_s'] or 0:.0f} hand-offs/s"])
        if m.get("gil_handoffs_per_s") is not None:
            during = m.get("gil_handoffs_per_s_during_long")
            rows.append([cell.label, "hand-offs per second", f"{m['gil_handoffs_per_s']:.0f}", "", "",
                         "" if during is None else f"{during:.0f}", "", ""])
    if rows:
        blocks.append(Table(["cell", "thread", "held the GIL (share of samples)", "waited for it", "neither (I/O, idle)",
                             "held, while the long request ran", "waited, while it ran", "sampled"], rows))
        blocks.append(Paragraph(
            "While fib(n) runs, its thread holds the GIL in nearly every sample, and perf2's thread, which must take "
            "it back for every request, waits for it: that is C6's collapse. The samples in which no thread holds it "
            "are the hand-overs: every switch interval the long request's thread lets go, and the GIL is free until "
            "the thread that asked for it runs, longer when its CPU is busy; the hand-offs per second follow "
            "1/switch interval. With two perf1 clients, their threads share it about half and half, each waiting "
            "while the other holds it: that is C4's doubling. On a process pool the connection threads wait for "
            "their results, not for the GIL."))
        blocks.append(Table(["what physics says", "this run", "verdict", "rule"],
                            [[row["text"], row["measured"], row["verdict"], row["rule"]] for row in physics(view)]))
    if no_gil:
        blocks.append(Paragraph("Without a GIL (a free-threaded build) no thread waits for one: each thread's share "
                                "of a CPU shows what runs in parallel (/proc's schedstat). "
                                + "; ".join(dict.fromkeys(f"{m['python']}: {m['py_spy_error']}" for m in map(
                                    view.measurements, cells) if m and m.get("no_gil") and m.get("py_spy_error")))))
        blocks.append(Table(["cell", "thread", "on a CPU (share of one)", "while the long request ran"], no_gil))
    blocks.append(plots.figure("gil_share", f"Who holds the GIL and who waits, per {BUCKET_S:g} s, beside perf2's "
                                            "rate and latency and the GIL's hand-offs", timeline(view, cells)))
    return blocks


def shown(share):
    return "" if share is None else pct(share)


PLOTTED_ROLES = ("client", "long request", "thread")  # not the accept loop's nor a pool's helpers: idle


def timeline(view, cells):
    """Per cell, each client thread's share of the samples per BUCKET_S in which it held the GIL (solid) and
    waited for it (dashed), or without a GIL its share of a CPU; for the convoy, perf2's rate with the GIL's
    hand-offs per second, and perf2's latency, above them on the same time axis, the long request shaded."""

    def draw():
        plt = plots.pyplot()
        fig, axes = plt.subplots(len(cells) + 2, 1, figsize=(plots.WIDTH_IN, 2.1 * (len(cells) + 2) + 0.6),
                                 squeeze=False)
        convoy_cell = next((c for c in cells if c.variant == "convoy"), None)
        for ax, cell in zip(axes[:, 0], [convoy_cell, convoy_cell, *cells]):
            m = view.measurements(cell) if cell else None
            record = view.raw(cell, "gil.json") if m else None
            gil = bool(record) and record.get("gil", True)
            if not record or not record["samples"] or "mechanism" not in record or (gil and not m["gil_seen"]):
                why = (plots.absent(view, cell) if cell and m is None else "no samples" if not record
                       or not record["samples"] else "sampled by py-spy alone, before waits were read: run it again"
                       if "mechanism" not in record else "no GIL holder seen")
                plots.say(ax, f"{cell.label if cell else 'gil_share/convoy'}: {why}")
                continue
            start, end = record["samples"][0][0], record["samples"][-1][0]
            if is_convoy(cell):
                perf2 = view.raw(cell, "perf2.json")
                start, end = perf2["started_at"], max(perf2["ended_at"], m["long_ended_at"])
                plots.long_request(ax, m, start, alpha=0.25)

            def stairs(on, value, **style):
                edges, values = per_bucket(record, start, BUCKET_S, end, value)
                return on.stairs(values, edges, **style)

            if ax is axes[0, 0]:  # the convoy's perf2 rate, on the same time axis as its GIL below
                plots.perf2_rate(ax, perf2, start)
                ax.set_ylabel("req/s")
                plots.subtitle(ax, f"{cell.label}: perf2's rate" + (", and the GIL's hand-offs per second in each "
                                                                   f"{BUCKET_S:g} s" if gil else ""))
                if gil:
                    handoffs_ax = ax.twinx()
                    stairs(handoffs_ax, handoffs_per_s, color="black", linewidth=1.2, label="GIL hand-offs/s")
                    handoffs_ax.set_ylabel("hand-offs/s")
                    handoffs_ax.legend(loc="upper left", fontsize="small")
            elif ax is axes[1, 0]:  # its latency: one connection asking in turn waits 1/rate per request
                edges, bucket_rates = rates_per_bucket(perf2, start)
                ax.stairs([1e6 / r if r else float("nan") for r in bucket_rates], edges, color="black",
                          linewidth=1.2, label="perf2's mean latency")
                ax.set_yscale("log")
                ax.set_ylabel("µs")
                plots.subtitle(ax, f"{cell.label}: perf2's mean latency in each bucket (one connection: 1/rate)")
            else:
                for row in (row for row in m["gil_threads"] if row["role"] in PLOTTED_ROLES):
                    label, tid = f"{row['role']}: {row['name']}", row["tid"]
                    if not gil:
                        stairs(ax, lambda b: on_cpu(b, tid), label=f"{label}, on a CPU", linewidth=1.5)
                        continue
                    held = stairs(ax, lambda b: state_share(b, tid), label=f"{label}, holds", linewidth=1.5)
                    stairs(ax, lambda b: state_share(b, tid, WAIT), label=f"{label}, waits", linewidth=1.5,
                           linestyle="--", color=held.get_edgecolor())
                if gil:
                    stairs(ax, lambda b: state_share(b, None), label="no thread holds it", linewidth=1,
                           color=plots.FLOOR, linestyle=":")
                ax.set_ylim(0, 1.05)
                ax.set_ylabel("share of samples" if gil else "share of a CPU")
                plots.subtitle(ax, f"{cell.label}: share of the samples in each {BUCKET_S:g} s in which a thread "
                                   "held the GIL (solid) or waited for it (dashed)" if gil else
                                   f"{cell.label}: each thread's share of a CPU in each {BUCKET_S:g} s (no GIL)")
            ax.set_xlim(0, end - start)
            ax.legend(loc="upper right", fontsize="small")
            ax.set_xlabel("seconds since the clients started")
        fig.tight_layout()
        return fig

    return plots.plot(view, cells, draw)


def across_pythons(view, python, views):
    """A column across Pythons: the long request's thread's share of the GIL while it ran."""
    m = view.measurements(view.find(__name__, threaded, "convoy"))
    if not m:
        return "not run"
    if m.get("no_gil"):
        return "no GIL (free-threaded)"
    return pct(m["long_thread_held"]) if m["gil_seen"] and m["long_thread_held"] is not None else "no GIL holder"


ACROSS_PYTHONS = [("GIL held by the long request's thread", across_pythons)]
