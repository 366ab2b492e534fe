"""idle_connections: what N idle connections cost a server, in threads and resident memory (C13).

Coroutines hold them for a few KiB each; a thread per connection pays a thread each. Memory is
recorded as USS and PSS beside RSS (the whole server, clients.process_memory); the figures and text
of a record that has RSS only show RSS only.
"""
import time

from lab.cells import Cell, target
from lab.claims import claim
from server.strategies import asyncio_inline, generators, threaded

SIZES = {"quick": dict(connections=2000, hold_s=1.0), "full": dict(connections=10000, hold_s=4.0)}
STRATEGIES = [asyncio_inline, generators, threaded]
# The whole server's memory, in KiB, by the name the figures give it; a record may have RSS only.
MEMORY = {"uss_kib": "USS", "pss_kib": "PSS", "rss_kib": "RSS"}


def cells(mode):
    return [Cell(strategy=s, params=SIZES[mode], estimate_s=6) for s in STRATEGIES]


def measure(ctx, cell):
    p = cell.params
    with ctx.server(cell) as server:
        before = server.process_status()
        held, holding = while_held(ctx, cell, server, "hold", p["connections"], p["hold_s"], timeout_s=60)
    n = p["connections"]
    measured = {"connections": n, "served": held["served"]}
    for key in ("threads", *MEMORY):
        measured |= {f"{key}_before": before[key], f"{key}_holding": holding[key]}
    return measured | {"threads_per_connection": (holding["threads"] - before["threads"]) / n,
                       **{f"{key}_per_connection": (holding[key] - before[key]) / n for key in MEMORY}}


def while_held(ctx, cell, server, name, connections, hold_s, timeout_s):
    """Hold that many connections to the server (clients.hold_connections, its record saved as NAME.json)
    and read the whole server while they are held: (the client's record, the server's process_status()).
    A reading that ended after the connections closed is an error: it would not be of them."""
    holding = {}

    def read_while_held(line):
        if line.startswith("holding"):
            holding.update(server.process_status(), read_at=time.time())

    held = ctx.client(cell, name, "hold_connections", *target(server), "--connections", connections,
                      "--hold", hold_s, "--timeout", timeout_s, timeout=hold_s + 3 * timeout_s,
                      on_line=read_while_held)
    if not holding:
        raise RuntimeError(f"the server was never read while {connections} connections were held")
    if holding.pop("read_at") > held["held_at"] + hold_s:
        raise RuntimeError(f"reading the server outlasted the {hold_s:g} s hold of {connections} connections")
    return held, holding


def figures(m):
    return [("served", m["served"], ""), ("threads per connection", m["threads_per_connection"], ""),
            *((f"{name} per connection", m[f"{key}_per_connection"], "KiB") for key, name in MEMORY.items()
              if f"{key}_per_connection" in m)]


@claim("C13", f"Coroutines hold many idle connections; {threaded.NAME} pays a thread each.", article="qualitative",
       rule=f"reproduced if {asyncio_inline.NAME} and {generators.NAME} serve every connection with < 0.01 threads "
            f"each and {threaded.NAME} adds >= 0.9")
def c13(measured):
    coroutines = [measured(asyncio_inline), measured(generators)]
    threads = measured(threaded)
    cheap = all(c["served"] == c["connections"] and c["threads_per_connection"] < 0.01 for c in coroutines)
    costly = threads["threads_per_connection"] >= 0.9
    text = "; ".join(f"{strategy.NAME}: {c['served']:,}/{c['connections']:,} served, "
                     f"{c['threads_per_connection']:.2f} threads and {c['rss_kib_per_connection']:.1f} KiB"
                     + (f" RSS ({c['uss_kib_per_connection']:.1f} KiB USS)" if "uss_kib_per_connection" in c else "")
                     + " per connection" for strategy, c in zip(STRATEGIES, coroutines + [threads]))
    return text, cheap and costly
