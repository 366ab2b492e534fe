"""gil_share: which thread of the thread-per-connection server holds the GIL, sample by sample (it explains C4
and C6).

The article explains C4 and C6 with the GIL; the other experiments show only their effects. Here py-spy
reads the server from a side container (clients.gil_sampler) while the same clients run again:
- convoy: perf2 with a long fib(n) in the middle. While fib(n) runs, its thread holds the GIL in nearly
  every sample and perf2's thread almost never: C6 made visible.
- perf1: two perf1 clients at once. Their two threads take turns, each holding the GIL about half of
  the time: C4's doubling made visible.
The cells are separate from convoy's and perf1's, so that the sampler's own CPU never touches the
figures the claims are judged on.
"""
from clients.gil_sampler import HELD
from lab.cells import Cell, target
from lab.claims import pct
from lab.experiments import convoy
from lab.pythons import free_threaded
from lab.records import plots
from lab.records.document import Heading, Paragraph, Table
from lab.records.record import python_build
from lab.runner.gil_sampling import Sampling
from server.strategies import threaded

RATE_HZ = 25  # a py-spy dump costs about 5 ms of CPU on the load CPU
BUCKET_S = 0.2  # the timeline's bucket: 5 samples at RATE_HZ
SIZES = {"quick": dict(convoy=convoy.SIZES["quick"], perf1=dict(n=27, perf1_s=1.5), switch_intervals_s=()),
         "full": dict(convoy=convoy.SIZES["full"], perf1=dict(n=30, perf1_s=4.0), switch_intervals_s=(0.001, 0.0001))}
SUPPORTS = ("C4", "C6")


def cells(mode):
    """The convoy and two perf1 clients; in full mode the convoy again at the switch-interval sweep's
    shorter intervals too, where perf2's thread gets the GIL back more often."""
    size = SIZES[mode]
    convoys = [("convoy", size["convoy"])] + [(f"convoy-si-{si:g}", {**size["convoy"], "switch_interval_s": si})
                                              for si in size["switch_intervals_s"]]
    return [*(Cell(strategy=threaded, variant=variant, params=params, estimate_s=convoy.estimate_s(params) + 1)
              for variant, params in convoys),
            Cell(strategy=threaded, variant="perf1", params=size["perf1"], estimate_s=size["perf1"]["perf1_s"] + 3)]


def is_convoy(cell):
    return "long_n" in cell.params


def measure(ctx, cell):
    if free_threaded(cell.python):  # no GIL for a thread to hold
        return {"gil_seen": False, "no_gil": f"Python {cell.python} is free-threaded: no GIL for a thread to hold"}
    samplers = []

    def sampled(server):
        samplers.append(Sampling(server, RATE_HZ, max_s=cell.estimate_s + 120))
        return samplers[-1]

    if is_convoy(cell):
        m = convoy.measure(ctx, cell, beside=sampled)
        window, long_window = (m["perf2_started_at"], m["perf2_ended_at"]), (m["long_started_at"], m["long_ended_at"])
    else:
        runs = two_perf1(ctx, cell, sampled)
        m = {"perf1_mean_s": [run["mean_s"] for run in runs]}
        window, long_window = (max(r["started_at"] for r in runs), min(r["ended_at"] for r in runs)), None
    (sampler,) = samplers
    if sampler.record is None:
        raise RuntimeError(f"the GIL sampler: {sampler.error}")
    ctx.run.save_raw(cell.id, "gil.json", sampler.record)
    return {**m, **shares(sampler.record, window, long_window)}


def two_perf1(ctx, cell, beside):
    """Two perf1 clients at once on one thread-per-connection server, with beside(server) held around them."""
    p = cell.params
    with ctx.server(cell) as server, beside(server):
        runs = [ctx.in_background(ctx.client, cell, f"perf1_{i}", "perf1", *target(server), "--n", p["n"],
                                  "--duration", p["perf1_s"], timeout=p["perf1_s"] + 60) for i in (1, 2)]
        return [run.join() for run in runs]


def shares(record, window, long_window=None):
    """Per server thread, the share of the samples in window in which it held the GIL; with long_window
    (the long request, convoy), also within it, and which thread ran fib(n) there."""
    samples = [s for s in record["samples"] if window[0] <= s[0] <= window[1]]
    during = [s for s in samples if long_window and long_window[0] <= s[0] <= long_window[1]]
    depth = {}
    for _, threads in during:
        for tid, _, fib_depth in threads:
            depth[tid] = max(depth.get(tid, 0), fib_depth)
    long_tid = max(depth, key=depth.get) if depth and max(depth.values()) > 1 else None
    rows = []
    for tid, name in record["threads"].items():
        row = {"tid": tid, "name": name, "role": role(tid, name, long_tid), "held": held_share(samples, tid)}
        if long_window:
            row["held_during_long"] = held_share(during, tid)
        rows.append(row)
    return {"gil_samples": len(samples), "gil_samples_during_long": len(during) if long_window else None,
            "gil_free": held_share(samples, None), "gil_free_during_long": held_share(during, None),
            "gil_seen": any(state == HELD for _, threads in record["samples"] for _, state, _ in threads),
            "gil_threads": rows, "sampler_errors": record["errors"], "sampler_cpu_s": record["cpu_s"],
            "py_spy": record["py_spy"], "rate_hz": record["rate_hz"],
            "long_thread_held": next((r["held_during_long"] for r in rows if r["role"] == "long request"), None)}


def role(tid, name, long_tid):
    if tid == long_tid:
        return "long request"
    return "accept loop" if name == "MainThread" else "client"


def held_share(samples, tid):
    """The share of samples in which thread tid held the GIL; tid None: in which no thread held it (it
    was free, or being handed over to a thread not yet running). None without samples."""
    if not samples:
        return None
    holders = [next((t for t, state, _ in threads if state == HELD), None) for _, threads in samples]
    return holders.count(tid) / len(samples)


def per_bucket(record, tid, start, width, end):
    """(edges, shares): thread tid's share of the GIL in each bucket of width seconds from start to end."""
    edges, values = [], []
    t = start
    while t < end:
        bucket = [s for s in record["samples"] if t <= s[0] < t + width]
        edges.append(t - start)
        values.append(held_share(bucket, tid) or 0.0)
        t += width
    edges.append(t - start)
    return edges, values


def figures(m):
    if m.get("no_gil"):
        return []
    shown = [(f"GIL held: {row['role']} ({row['name']})", row["held"], "%") for row in m["gil_threads"]
             if row["role"] != "accept loop"]
    if m.get("long_thread_held") is not None:
        shown.append(("GIL held by the long request's thread while it ran", m["long_thread_held"], "%"))
    return shown


def report(view):
    blocks = [Heading("Who holds the GIL (py-spy, explains C4 and C6)"),
              Paragraph(f"py-spy reads the {threaded.NAME} server from a side container that shares its PID namespace "
                        f"(and alone has CAP_SYS_PTRACE), {RATE_HZ} times a second, while the convoy and two perf1 "
                        "clients run again; each sample names the thread that holds the GIL. These cells are "
                        "separate from the ones the claims are judged on, so the sampler's own CPU never touches "
                        "those figures.")]
    cells = view.cells(__name__)
    build = view.environment.get("python") or {}
    if build.get("free_threaded") and not build.get("gil_enabled", True):
        return blocks + [Paragraph(f"Not shown for {python_build(build)}: a free-threaded build has no GIL for "
                                   "a thread to hold.")]
    rows = []
    for cell in cells:
        m = view.measurements(cell)
        if m is None:
            rows.append([cell.label, plots.absent(view, cell), "", "", ""])
            continue
        if not m["gil_seen"]:
            rows.append([cell.label, m.get("no_gil") or f"py-spy {m['py_spy']} saw no thread holding the GIL",
                         "", "", ""])
            continue
        for row in m["gil_threads"]:
            rows.append([cell.label, f"{row['name']} ({row['role']})", pct(row["held"]),
                         pct(row.get("held_during_long")) if row.get("held_during_long") is not None else "",
                         f"{m['gil_samples']} samples, py-spy {m['py_spy']}"])
        if m.get("gil_free") is not None:
            rows.append([cell.label, "no thread: free, or being handed over", pct(m["gil_free"]),
                         pct(m["gil_free_during_long"]) if m.get("gil_free_during_long") is not None else "", ""])
    blocks.append(Table(["cell", "thread", "held the GIL (share of samples)", "while the long request ran",
                         "sampled"], rows))
    blocks.append(Paragraph("While fib(n) runs, its thread holds the GIL in nearly every sample, and perf2's "
                            "thread, which must take it back for every request, almost never: that is C6's "
                            "collapse. The samples in which no thread holds it are the hand-overs: every switch "
                            "interval the long request's thread lets go, and the GIL is free until the thread "
                            "that asked for it runs, longer when its CPU is busy. With two perf1 clients, their "
                            "threads share it about half and half: that is C4's doubling."))
    blocks.append(plots.figure("gil_share", f"Which thread holds the GIL, per {BUCKET_S:g} s, beside perf2's rate",
                               timeline(view, cells)))
    return blocks


def timeline(view, cells):
    """Per cell, the GIL share of each client thread per BUCKET_S; for the convoy, perf2's rate above it
    on the same time axis, the long request shaded."""

    def draw():
        plt = plots.pyplot()
        fig, axes = plt.subplots(len(cells) + 1, 1, figsize=(plots.WIDTH_IN, 2.1 * (len(cells) + 1) + 0.6),
                                 squeeze=False)
        convoy_cell = next((c for c in cells if c.variant == "convoy"), None)
        for ax, cell in zip(axes[:, 0], [convoy_cell, *cells]):
            m = view.measurements(cell) if cell else None
            record = view.raw(cell, "gil.json") if m else None
            if not record or not m["gil_seen"]:
                plots.say(ax, f"{cell.label if cell else 'gil_share/convoy'}: "
                              f"{plots.absent(view, cell) if cell and m is None else 'no GIL holder seen'}")
                continue
            start, end = record["samples"][0][0], record["samples"][-1][0]
            if is_convoy(cell):
                perf2 = view.raw(cell, "perf2.json")
                start, end = perf2["started_at"], max(perf2["ended_at"], m["long_ended_at"])
                plots.long_request(ax, m, start, alpha=0.25)
            if ax is axes[0, 0]:  # the convoy's perf2 rate, on the same time axis as its GIL below
                plots.perf2_rate(ax, perf2, start)
                ax.set_ylabel("req/s")
                plots.subtitle(ax, f"{cell.label}: perf2's rate")
            else:
                shown = [(row["tid"], f"{row['role']}: {row['name']}") for row in m["gil_threads"]
                         if row["role"] != "accept loop"]
                for tid, label in [*shown, (None, "no thread")]:
                    edges, values = per_bucket(record, tid, start, BUCKET_S, end)
                    ax.stairs(values, edges, label=label, linewidth=1.5 if tid else 1,
                              **({} if tid else dict(color=plots.FLOOR, linestyle=":")))
                ax.set_ylim(0, 1.05)
                ax.set_ylabel("GIL share")
                plots.subtitle(ax, f"{cell.label}: share of the samples in each {BUCKET_S:g} s in which a thread "
                                   "held the GIL")
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


ACROSS_PYTHONS = [("GIL held by the long request's thread (py-spy)", across_pythons)]
