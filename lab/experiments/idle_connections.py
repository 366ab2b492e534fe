"""idle_connections: what N idle connections cost a server, in threads and resident memory (C13).

Coroutines hold them for a few KiB each; a thread per connection pays a thread each.
"""
from lab.experiment import Cell, claim, target
from server.strategies import asyncio_inline, generators, threaded

SIZES = {"quick": dict(connections=2000, hold_s=1.0), "full": dict(connections=10000, hold_s=4.0)}
STRATEGIES = [asyncio_inline, generators, threaded]


def cells(mode):
    return [Cell(strategy=s, params=SIZES[mode], estimate_s=6) for s in STRATEGIES]


def measure(ctx, cell):
    p = cell.params
    holding = {}
    with ctx.server(cell) as server:
        before = server.process_status()

        def measure_while_held(line):
            if line.startswith("holding"):
                holding.update(server.process_status())

        held = ctx.client(cell, "hold", "hold_connections", *target(server), "--connections", p["connections"],
                          "--hold", p["hold_s"], "--timeout", 60, timeout=p["hold_s"] + 180,
                          on_line=measure_while_held)
    if not holding:
        raise RuntimeError("the server was never measured while the connections were held")
    n = p["connections"]
    return {"connections": n, "served": held["served"], "threads_before": before["threads"],
            "threads_holding": holding["threads"], "rss_kib_before": before["rss_kib"],
            "rss_kib_holding": holding["rss_kib"],
            "threads_per_connection": (holding["threads"] - before["threads"]) / n,
            "rss_kib_per_connection": (holding["rss_kib"] - before["rss_kib"]) / n}


def figures(m):
    return [("served", m["served"], ""), ("threads per connection", m["threads_per_connection"], ""),
            ("RSS per connection", m["rss_kib_per_connection"], "KiB")]


@claim("C13", f"Coroutines hold many idle connections; {threaded.NAME} pays a thread each.", article="qualitative",
       rule=f"reproduced if {asyncio_inline.NAME} and {generators.NAME} serve every connection with < 0.01 threads "
            f"each and {threaded.NAME} adds >= 0.9")
def c13(measured):
    coroutines = [measured(asyncio_inline), measured(generators)]
    threads = measured(threaded)
    cheap = all(c["served"] == c["connections"] and c["threads_per_connection"] < 0.01 for c in coroutines)
    costly = threads["threads_per_connection"] >= 0.9
    text = "; ".join(f"{strategy.NAME}: {c['served']:,}/{c['connections']:,} served, "
                     f"{c['threads_per_connection']:.2f} threads and {c['rss_kib_per_connection']:.1f} KiB per connection"
                     for strategy, c in zip(STRATEGIES, coroutines + [threads]))
    return text, cheap and costly
