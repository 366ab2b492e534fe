"""echo_clients: N echo clients, all connected at once, are all served by a thread each (C2)."""
from lab.experiment import Cell, claim, target
from server.strategies import threaded

SIZES = {"quick": dict(clients=50), "full": dict(clients=200)}


def cells(mode):
    return [Cell(strategy=threaded, params=SIZES[mode], estimate_s=4)]


def measure(ctx, cell):
    n = cell.params["clients"]
    with ctx.server(cell, "--handler", "echo") as server:
        held = ctx.client(cell, "clients", "hold_connections", *target(server), "--connections", n,
                          "--hold", 0.5, timeout=40)
    return {"clients": n, "served": held["served"], "serve_s": held["serve_s"]}


def figures(m):
    return [("served", m["served"], ""), ("time to serve all", m["serve_s"], "s")]


@claim("C2", "Thread-per-connection serves many clients at once (echo).", article="qualitative",
       rule="reproduced if every echo client is served while all are connected")
def c2(measured):
    c = measured(threaded)
    return f"{c['served']} of {c['clients']} echo clients served at once", c["served"] == c["clients"]
