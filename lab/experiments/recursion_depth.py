"""recursion_depth: how deep Python and C recursion go on a thread's stack, by stack size (C12).

It measures the interpreter itself, so it runs in the server's Python (--python) rather than beside it.
"""
from lab.cells import Cell
from lab.claims import claim

SIZES = {"quick": {}, "full": {}}


def cells(mode):
    return [Cell(params=SIZES[mode], estimate_s=5)]


def measure(ctx, cell):
    record = ctx.client(cell, "recursion_depth", "recursion_depth", timeout=300, python=cell.python)
    return {"recursion_limit": record["recursion_limit"], "crashes": record["crashes"], "probes": [
        {k: p.get(k) for k in ("stack_size_kib", "kind", "depth", "outcome")} for p in record["probes"]]}


def stack(probe):
    return "default" if probe["stack_size_kib"] is None else f"{probe['stack_size_kib']} KiB"


def figures(m):
    return [(f"{p['kind']}, {stack(p)} stack: {p['outcome']} at depth", p["depth"], "") for p in m["probes"]]


@claim("C12", "Deep recursion is the real stack risk.", article="~15,000 levels",
       rule="reproduced if, with the default thread stack, deep recursion blows the stack (a crash or MemoryError) "
            "after >= 1,000 levels; a RecursionError first means Python's own limit protects the stack")
def c12(measured):
    c = measured()
    text = "; ".join(f"{p['kind']} recursion, {stack(p)} stack: {p['outcome']} at depth {p['depth']:,}"
                     for p in c["probes"])
    blown = any(p["stack_size_kib"] is None and p["outcome"] in ("crashed", "memory-error") and p["depth"] >= 1000
                for p in c["probes"])
    return text + f" (recursion limit {c['recursion_limit']:,})", blown
