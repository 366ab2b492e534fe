"""echo_clients: N echo clients, all connected at once, are all served by a thread each (C2)."""
from lab.cells import Cell, experiment_name, target
from lab.claims import claim
from lab.live import forms
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


def live_clients():
    """The live form of C2: LIVE_CLIENTS clients connect at once, each asks fib(1) and holds on."""
    clients = forms.Role("client", threaded, 1, users=LIVE_CLIENTS, once_after_s=0.0, hold=True)

    def cells(run):
        asked = run.requests(clients.key)
        if len(asked) < LIVE_CLIENTS:
            raise forms.NotEnough(f"not enough data yet: {len(asked)} of {LIVE_CLIENTS} clients answered")
        return {Cell(experiment_name(__name__), threaded).label: {
            "clients": LIVE_CLIENTS, "served": sum(1 for r in asked if r["succeeded"]),
            "serve_s": max(r["ended_at"] for r in asked) - min(r["started_at"] for r in asked)}}

    return forms.LiveForm(
        c2, f"C2: {LIVE_CLIENTS} clients at once on {threaded.NAME}", roles=(clients,),
        stages=(forms.Stage(3, (clients.key,), until_done=clients.key, label=f"{LIVE_CLIENTS} clients connect"),),
        cells=cells, about=f"{LIVE_CLIENTS} clients connect at once and each asks fib(1) (the batch cell uses the "
                           "echo handler): a thread each serves them all, while every one stays connected.")


LIVE_CLIENTS = 50
LIVE = [live_clients()]
