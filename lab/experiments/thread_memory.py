"""thread_memory: a thread's 8 MB stack is virtual; threading.stack_size() shrinks it (C11).

It measures the interpreter itself, so it runs in the server's Python (--python) rather than beside it.
Beside RSS per thread it records USS and PSS per thread (smaps_rollup); the figures and text of a
record without them show RSS only.
"""
from lab.cells import Cell
from lab.claims import claim

SIZES = {"quick": dict(threads=1000), "full": dict(threads=1000)}


def cells(mode):
    return [Cell(params=SIZES[mode], estimate_s=3)]


def measure(ctx, cell):
    record = ctx.client(cell, "thread_memory", "thread_memory", "--threads", cell.params["threads"], timeout=120,
                        python=cell.python)
    return {"threads": record["threads"], "variants": [
        {k: v.get(k) for k in ("stack_size_kib", "threads_started", "vm_size_per_thread_kib",
                               "vm_rss_per_thread_kib", "uss_per_thread_kib", "pss_per_thread_kib")}
        for v in record["variants"]]}


def figures(m):
    shown = []
    for variant in m["variants"]:
        stack = "default stack" if variant["stack_size_kib"] is None else f"{variant['stack_size_kib']} KiB stack"
        shown += [(f"{stack}: virtual per thread", variant["vm_size_per_thread_kib"], "KiB"),
                  (f"{stack}: resident per thread", variant["vm_rss_per_thread_kib"], "KiB")]
        shown += [(f"{stack}: {name} per thread", variant[key], "KiB")
                  for name, key in (("USS", "uss_per_thread_kib"), ("PSS", "pss_per_thread_kib"))
                  if variant.get(key) is not None]
    return shown


@claim("C11", "A thread's 8 MB stack is virtual: VSZ per thread far above RSS; stack_size() shrinks it.",
       article="< 200 B/thread, 8 MB virtual",
       rule="reproduced if virtual memory per thread is >= 10x resident, and the small stack halves the virtual size")
def c11(measured):
    variants = measured()["variants"]
    default = next(v for v in variants if v["stack_size_kib"] is None)
    small = next(v for v in variants if v["stack_size_kib"] is not None)
    virtual_far_above = default["vm_size_per_thread_kib"] >= 10 * max(default["vm_rss_per_thread_kib"], 1)
    shrinks = small["vm_size_per_thread_kib"] < default["vm_size_per_thread_kib"] / 2
    unique = default.get("uss_per_thread_kib")
    return (f"default stack: {default['vm_size_per_thread_kib']:,.0f} KiB virtual, "
            f"{default['vm_rss_per_thread_kib']:,.1f} KiB resident"
            + ("" if unique is None else f" ({unique:,.1f} KiB unique, USS)")
            + f" per thread; {small['stack_size_kib']} KiB stack: "
            f"{small['vm_size_per_thread_kib']:,.0f} KiB virtual", virtual_far_above and shrinks)
