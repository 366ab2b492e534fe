"""one_at_a_time: while one client holds its connection, a second client's request waits for its close (C1)."""
import threading

from lab.cells import Cell, target
from lab.claims import claim
from server.strategies import sequential

SIZES = {"quick": dict(hold_s=1.0), "full": dict(hold_s=4.0)}


def cells(mode):
    return [Cell(strategy=sequential, params=SIZES[mode], estimate_s=6)]


def measure(ctx, cell):
    holding = threading.Event()
    hold_s = cell.params["hold_s"]
    with ctx.server(cell) as server:
        holder = ctx.in_background(
            lambda: ctx.client(cell, "holder", "hold_connections", *target(server), "--connections", 1,
                               "--hold", hold_s, timeout=hold_s + 30,
                               on_line=lambda line: line.startswith("holding") and holding.set()))
        if not holding.wait(30):
            holder.join(1)
            raise RuntimeError("the first client was never served")
        second = ctx.client(cell, "second", "request", *target(server), "10", timeout=hold_s + 30)
        first = holder.join()
    released_at = first["held_at"] + hold_s
    return {"hold_s": hold_s, "second_wait_s": second["elapsed_s"],
            "second_reply_after_first_close_s": second["ended_at"] - released_at}


def figures(m):
    return [("2nd client's wait", m["second_wait_s"], "s"),
            ("2nd reply after 1st close", m["second_reply_after_first_close_s"], "s")]


@claim("C1", f"The {sequential.NAME} server serves one client at a time.", article="qualitative",
       rule="reproduced if the 2nd client's reply comes no earlier than the 1st client's close (0.1 s slack)")
def c1(measured):
    c = measured(sequential)
    late = c["second_reply_after_first_close_s"]
    return (f"2nd client's reply came {late:+.2f} s after the 1st client closed (waited {c['second_wait_s']:.2f} s)",
            late >= -0.1)
