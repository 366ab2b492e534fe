"""server_memory: what each strategy's whole server costs idle, with 100 and with 1,000 idle connections:
USS, PSS and RSS summed over its processes, its threads and its processes (explains C11 and C13).

RSS counts a page shared by the server's processes (pool workers, forkserver, prefork's children) once
in each of them; PSS divides it among them, so a pool or prefork costs what its PSS says, not the sum of
its RSS. Summed USS leaves out every shared page, those its own processes share with each other too:
what each process alone holds, a floor under what the server would free. Read inside the server's container by clients.process_memory.
A strategy that serves a connection at a time (sequential, prefork's children) leaves the rest waiting
in the listen backlog, the kernel's memory: its processes do not grow.
"""
import math

from lab.cells import Cell
from lab.experiments.idle_connections import MEMORY, while_held
from lab.records import plots
from lab.records.document import Heading, Paragraph, Table
from server import strategies
from server.strategies import asyncio_inline, prefork, process_pool, sequential, threaded

SUPPORTS = ("C11", "C13")
# hold_s: long enough to read the server while held (a reading takes 0.3-0.45 s here); serve_timeout_s: how
# long the client waits for the replies of a strategy that leaves connections in the backlog (and for each
# connection). Quick mode measures idle and 1,000 only: each level costs a client and a hold (0.8 s here).
SIZES = {"quick": dict(connections=[1000], hold_s=0.6, serve_timeout_s=0.5),
         "full": dict(connections=[100, 1000], hold_s=1.5, serve_timeout_s=2.0)}
QUICK = [threaded, process_pool, prefork, asyncio_inline]
# They serve a connection at a time: the client waits its serve timeout for the replies of the rest.
ONE_AT_A_TIME = {strategies.key(s) for s in (sequential, prefork)}
LEVEL_KEYS = ("processes", "threads", *MEMORY)


def cells(mode):
    chosen = QUICK if mode == "quick" else strategies.ALL.values()
    return [Cell(strategy=s, params=SIZES[mode], estimate_s=estimate_s(s, SIZES[mode])) for s in chosen]


def estimate_s(strategy, params):
    """Seconds of one cell, as measured here: the server's start, idle reading and stop (1.4 s), then per
    level a client's start and connections (0.5 s) and the hold, and the wait for replies that never come."""
    waits = params["serve_timeout_s"] if strategies.key(strategy) in ONE_AT_A_TIME else 0
    return round(1.4 + len(params["connections"]) * (0.5 + params["hold_s"] + waits), 1)


def measure(ctx, cell):
    """The whole server idle, then holding each number of connections; each level a row of LEVEL_KEYS."""
    p = cell.params
    with ctx.server(cell) as server:
        levels = [{"connections": 0, "served": 0, **pick(server.process_status())}]
        for n in p["connections"]:
            held, holding = while_held(ctx, cell, server, f"hold_{n}", n, p["hold_s"], p["serve_timeout_s"])
            levels.append({"connections": n, "served": held["served"], **pick(holding)})
    return {"levels": levels}


def pick(status):
    return {key: status[key] for key in LEVEL_KEYS}


def figures(m):
    return [(f"{level['connections']:,} connections: {name}", level[key] / 1024, "MiB")
            for level in m["levels"] for key, name in MEMORY.items()] + \
           [(f"{level['connections']:,} connections: {key}", level[key], "") for level in m["levels"]
            for key in ("threads", "processes")]


def mib(kib):
    return f"{kib / 1024:,.1f}"


def report(view):
    shown = view.cells(__name__)
    if not shown:
        return []
    return [
        Heading("Memory per strategy: USS, PSS and RSS of the whole server (C11, C13)"),
        Paragraph("Summed over every process of the server (pool workers, the forkserver, forked children), "
                  "idle and while holding idle connections. PSS is the server's fair share of every page it maps "
                  "(a shared page divided among the processes that map it); RSS counts a shared page once per "
                  "process, so the RSS of a pool or of forked children overstates it; USS is what each process alone holds, "
                  "pages shared even among the server's own processes left out. A strategy that serves one connection at a time leaves the "
                  "rest in the listen backlog (served < held)."),
        table(view, shown),
        plots.figure("server_memory", "the whole server's PSS (USS darker, RSS a dot) and threads, per strategy "
                     "and number of idle connections", plot(view, shown)),
    ]


def table(view, shown):
    rows = []
    for cell in shown:
        m = view.measurements(cell)
        if m is None:
            rows.append([plots.short(cell), plots.absent(view, cell), "", "", "", "", "", ""])
            continue
        rows += [[plots.short(cell), f"{level['connections']:,}", f"{level['served']:,}", mib(level["uss_kib"]),
                  mib(level["pss_kib"]), mib(level["rss_kib"]), f"{level['threads']:,}", str(level["processes"])]
                 for level in m["levels"]]
    return Table(["strategy", "connections held", "served", "USS (MiB)", "PSS (MiB)", "RSS (MiB)", "threads",
                  "processes"], rows)


def plot(view, shown):
    found = {plots.short(cell): view.measurements(cell) for cell in shown}
    counts = sorted({level["connections"] for m in found.values() if m for level in m["levels"]})

    def draw():
        plt = plots.pyplot()
        fig, (memory_ax, threads_ax) = plt.subplots(1, 2, figsize=(plots.WIDTH_IN, 0.5 * len(found) * max(len(counts), 1) + 1.6),
                                                    sharey=True)
        fig.suptitle("the whole server, idle and holding idle connections")
        if not counts:
            plots.say(memory_ax, "server_memory: not run")
            plots.say(threads_ax, "server_memory: not run")
            return fig
        height = 0.8 / len(counts)
        colors = plt.get_cmap("Blues")([0.4 + 0.5 * i / max(len(counts) - 1, 1) for i in range(len(counts))])
        for i, n in enumerate(counts):
            y = [row + i * height for row in range(len(found))]
            levels = [next((level for level in m["levels"] if level["connections"] == n), None) if m else None
                      for m in found.values()]
            memory_ax.barh(y, of(levels, "pss_kib", 1024), height, color=colors[i], label=f"{n:,} connections" if n else "idle")
            memory_ax.barh(y, of(levels, "uss_kib", 1024), height * 0.5, color="black", alpha=0.35)
            memory_ax.plot(of(levels, "rss_kib", 1024), y, "o", color=plots.DURING, markersize=3)
            threads_ax.barh(y, of(levels, "threads"), height, color=colors[i])
            for row, level in zip(y, levels):
                if level:
                    threads_ax.text(level["threads"], row, f" {level['threads']:,} thr, {level['processes']} proc",
                                    va="center", fontsize="x-small")
        memory_ax.set_yticks([row + 0.4 - height / 2 for row in range(len(found))],
                             [name if m else f"{name} (not run)" for name, m in found.items()])
        memory_ax.invert_yaxis()
        memory_ax.set_xlabel("MiB: PSS (bar), USS (dark), RSS (dot)")
        memory_ax.legend(fontsize="small", loc="lower right")
        threads_ax.set_xscale("symlog")
        threads_ax.set_xlabel("threads (all processes)")
        threads_ax.margins(x=0.4)
        return fig

    return plots.plot(view, shown, draw)


def of(levels, key, unit=1):
    """One figure of each level, NaN (no bar) where a cell has none."""
    return [level[key] / unit if level else math.nan for level in levels]
