"""gil_stall: one long C-level call holds the GIL and stalls every other thread, and Ctrl-C (C5).

It measures the interpreter itself, so it runs in the server's Python (--python) rather than beside it.
"""
from lab.cells import Cell
from lab.claims import claim

SIZES = {"quick": dict(size=10**7), "full": dict(size=10**8)}


def cells(mode):
    size = SIZES[mode]
    return [Cell(params=size, estimate_s=3 + size["size"] / 10**7 * 2)]


def measure(ctx, cell):
    record = ctx.client(cell, "gil_stall", "gil_stall", "--size", cell.params["size"], timeout=900,
                        python=cell.python)
    return {"call_s": record["stall"]["duration_s"], "longest_gap_s": record["stall"]["longest_gap_s"],
            "control_longest_gap_s": record["control"]["longest_gap_s"],
            "sigint": record["sigint"].get("verdict")}


def figures(m):
    return [("the C call", m["call_s"], "s"), ("longest tick gap", m["longest_gap_s"], "s"),
            ("control's longest gap", m["control_longest_gap_s"], "s")]


@claim("C5", "One long C-level call stalls every other thread, and Ctrl-C.", article="the ticker goes silent",
       rule="reproduced if the longest ticker gap is >= 80% of the call and < 25% of it in the control")
def c5(measured):
    c = measured()
    stalled = c["longest_gap_s"] >= 0.8 * c["call_s"] and c["control_longest_gap_s"] < 0.25 * c["call_s"]
    return (f"call {c['call_s']:.2f} s: longest tick gap {c['longest_gap_s']:.2f} s; control "
            f"{c['control_longest_gap_s'] * 1000:.0f} ms; SIGINT: {c['sigint']}", stalled)
