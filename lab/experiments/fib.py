"""fib: fib(n) over the wire, answered correctly, and taking steeply longer as n grows (C3)."""
from lab.cells import Cell, target
from lab.claims import claim
from server.strategies import threaded

SIZES = {"quick": dict(ns=[10, 20, 32]), "full": dict(ns=[10, 20, 30, 35])}


def cells(mode):
    return [Cell(strategy=threaded, params=SIZES[mode], estimate_s=4)]


def measure(ctx, cell):
    """Each fib(n) once; the client checks every reply."""
    seconds = {}
    with ctx.server(cell) as server:
        for n in cell.params["ns"]:
            seconds[str(n)] = ctx.client(cell, f"fib{n}", "request", *target(server), n, timeout=600)["elapsed_s"]
    return {"seconds": seconds}


def figures(m):
    return [(f"fib({n})", s, "s") for n, s in sorted(m["seconds"].items(), key=lambda item: int(item[0]))]


@claim("C3", "fib(n) is answered correctly; large n takes very long.", article="fib(40) up to a minute",
       rule="reproduced if every reply is fib(n) (checked by the client) and the largest n takes >= 10x the smallest")
def c3(measured):
    seconds = measured(threaded)["seconds"]
    ns = sorted(seconds, key=int)
    growth = seconds[ns[-1]] / max(seconds[ns[0]], 1e-6)
    return "all correct; " + ", ".join(f"fib({n}) {seconds[n]:.3f} s" for n in ns), growth >= 10
