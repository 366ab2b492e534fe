"""The experiments, one function each: start the strategy's server, run the clients, measure.

Every function returns the cell's measurements (small, for results.json) and saves the clients'
full JSON records as raw files beside it.
"""
import statistics
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from matrix.cpusets import parse_cpuset

# Strategies that could use more than one CPU get all of --pool-cpus: whether they do is what the
# experiments show (threaded can't under the GIL: C4, C6; it can on a free-threaded build).
MULTICORE = {"threaded", "process-pool", "threshold-pool", "prefork", "asyncio-pool", "subinterpreters"}

# Sizes per mode. quick: the whole matrix in about 90 s on 2 cores; full: the article's sizes where
# they fit in 10 minutes (fib(40) and range(10**9) do not: fib(37) and range(10**8) stand in).
SIZES = {
    "quick": dict(perf1_n=27, perf1_s=2.0, perf2_s=2.5, long_n=34, long_delay_s=0.8, interval_s=0.1,
                  lockout_n=36, idle_connections=2000, hold_s=1.0, fib_ns=(10, 20, 32), gil_size=10**7,
                  threads=1000, floor_s=1.5, echo_clients=50),
    "full": dict(perf1_n=30, perf1_s=6.0, perf2_s=8.0, long_n=37, long_delay_s=2.0, interval_s=0.1,
                 lockout_n=36, idle_connections=10000, hold_s=4.0, fib_ns=(10, 20, 30, 35), gil_size=10**8,
                 threads=1000, floor_s=3.0, echo_clients=200),
}
CONVOY_STRATEGIES = {"quick": ["threaded", "process-pool", "threshold-pool", "asyncio-pool", "subinterpreters"],
                     "full": ["threaded", "process-pool", "threshold-pool", "prefork", "asyncio", "generators",
                              "asyncio-pool", "subinterpreters"]}
PERF1_STRATEGIES = {"quick": ["threaded", "process-pool"],
                    "full": ["threaded", "process-pool", "threshold-pool", "prefork", "asyncio"]}
# The sweep explains C6; convoy/threaded is its point at the default 0.005 s.
SWITCH_INTERVALS = (0.1, 0.001, 0.0001)


PYTHONS = ("3.11", "3.13", "3.14", "3.13t", "3.14t")  # scripts/build-python-image builds each
SUBINTERPRETERS_SINCE = (3, 14)  # InterpreterPoolExecutor, PEP 734


def strategies_known():
    return ["sequential", "threaded", "process-pool", "threshold-pool", "prefork", "asyncio", "generators",
            "asyncio-pool", "subinterpreters"]


def python_version(python):
    """'3.14t' -> (3, 14); None (the lab image's Python) -> the lab image's, 3.13."""
    return tuple(int(part) for part in (python or "3.13").rstrip("t").split("."))


@dataclass
class Cell:
    id: str
    experiment: str
    strategy: str = None
    params: dict = field(default_factory=dict)
    estimate_s: float = 5.0
    python: str = None  # the server's Python (--python); None: the lab image's


def plan(mode, strategies=None, experiments=None, pythons=None):
    """The cells of one run, in order. strategies/experiments, if given, keep only those.

    With pythons, every cell that runs on the server's Python runs once per Python, its id prefixed
    with the version ('3.14t/perf1/threaded'); the loopback floor, a property of the load side, once.
    """
    if not pythons:
        return plan_for(mode, strategies, experiments, None)
    cells = [c for c in plan_for(mode, strategies, experiments, None) if c.experiment == "loopback_floor"]
    for python in pythons:
        for cell in plan_for(mode, strategies, experiments, python):
            if cell.experiment != "loopback_floor":
                cells.append(replace(cell, id=f"{python}/{cell.id}", python=python))
    return cells


def python_view(record, python):
    """The record as one Python's run: its cells without the prefix, the shared cells (the loopback
    floor) as they are, and that Python's description as environment.python."""
    prefix = f"{python}/"
    cells = {cell_id: cell for cell_id, cell in record["cells"].items() if cell_id.split("/")[0] not in PYTHONS}
    cells.update({cell_id[len(prefix):]: cell for cell_id, cell in record["cells"].items()
                  if cell_id.startswith(prefix)})
    environment = dict(record.get("environment", {}))
    environment["python"] = environment.get("pythons", {}).get(python, {})
    settings = {**record.get("settings", {}), "pythons": None, "python": python}
    return {**record, "cells": cells, "environment": environment, "settings": settings}


def plan_for(mode, strategies, experiments, python):
    size = SIZES[mode]
    convoy_s = size["perf2_s"] + 2
    cells = [
        Cell("one_at_a_time/sequential", "one_at_a_time", "sequential", {"hold_s": size["hold_s"]}, 6),
        Cell("echo_clients/threaded", "echo_clients", "threaded", {"clients": size["echo_clients"]}, 4),
        Cell("fib/threaded", "fib", "threaded", {"ns": list(size["fib_ns"])}, 4),
        Cell("loopback_floor", "loopback_floor", None, {"duration_s": size["floor_s"]}, size["floor_s"] + 1),
    ]
    cells += [Cell(f"perf1/{s}", "perf1", s, {"n": size["perf1_n"], "duration_s": size["perf1_s"]},
                   2 * size["perf1_s"] + 3) for s in PERF1_STRATEGIES[mode]]
    convoy = {k: size[k] for k in ("perf2_s", "long_n", "long_delay_s", "interval_s")}
    cells += [Cell(f"convoy/{s}", "convoy", s, convoy, convoy_s) for s in CONVOY_STRATEGIES[mode]]
    cells += [Cell(f"switch_interval/{si:g}", "convoy", "threaded", {**convoy, "switch_interval_s": si},
                   convoy_s) for si in SWITCH_INTERVALS]
    cells.append(Cell("prefork_lockout/prefork", "prefork_lockout", "prefork",
                      {"long_n": size["lockout_n"], "perf2_s": 1.0}, 6))
    cells += [Cell(f"idle_connections/{s}", "idle_connections", s,
                   {"connections": size["idle_connections"], "hold_s": size["hold_s"]}, 6)
              for s in ("asyncio", "generators", "threaded")]
    cells += [
        Cell("gil_stall", "gil_stall", None, {"size": size["gil_size"]}, 3 + size["gil_size"] / 10**7 * 2),
        Cell("thread_memory", "thread_memory", None, {"threads": size["threads"]}, 3),
        Cell("recursion_depth", "recursion_depth", None, {}, 5),
    ]
    if python_version(python) < SUBINTERPRETERS_SINCE:
        cells = [c for c in cells if c.strategy != "subinterpreters"]
    if strategies:
        cells = [c for c in cells if c.strategy is None or c.strategy in strategies]
    if experiments:
        cells = [c for c in cells if c.experiment in experiments]
    return cells


class Context:
    """What an experiment needs: the lab's containers, the run's raw files, the CPU settings."""

    def __init__(self, lab, run, settings, locust=None):
        self.lab, self.run, self.settings = lab, run, settings
        self.locust = locust  # None: the perf1 cells use clients.perf1

    @contextmanager
    def server(self, cell, *args):
        """The cell's strategy in its pinned container; its docker stats are saved with the cell."""
        cpus = self.settings["pool_cpus"] if cell.strategy in MULTICORE else self.settings["server_cpus"]
        with self.lab.server(cell.strategy, *args, cpus=cpus, python=cell.python) as server:
            yield server
        self.run.save_raw(cell.id, "docker_stats.json", {"strategy": cell.strategy, "cpus": cpus,
                                                         "python": cell.python, "samples": server.stats})

    def client(self, cell, name, module, *args, timeout, on_line=None, python=None):
        """A client in the load container; with python, in a container of that Python's image
        (the GIL and memory experiments measure the interpreter itself)."""
        record = self.lab.run_client(module, *args, "--json", timeout=timeout, on_line=on_line, python=python)
        self.run.save_raw(cell.id, f"{name}.json", record)
        return record

    def in_background(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) in a thread; join() returns its result or raises its error."""
        return Background(fn, *args, **kwargs)


class Background(threading.Thread):
    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs, self.result, self.error = fn, args, kwargs, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as e:
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.error:
            raise self.error
        return self.result


def target(server):
    return ["--host", server.host, "--port", server.port]


def one_at_a_time(ctx, cell):
    """C1: while one client holds its connection, a second client's request waits for its close."""
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


def echo_clients(ctx, cell):
    """C2: N echo clients, all connected at once, are all served."""
    n = cell.params["clients"]
    with ctx.server(cell, "--handler", "echo") as server:
        held = ctx.client(cell, "clients", "hold_connections", *target(server), "--connections", n,
                          "--hold", 0.5, timeout=40)
    return {"clients": n, "served": held["served"], "serve_s": held["serve_s"]}


def fib(ctx, cell):
    """C3: correct answers (the client checks each reply), and the time grows steeply with n."""
    seconds = {}
    with ctx.server(cell) as server:
        for n in cell.params["ns"]:
            seconds[str(n)] = ctx.client(cell, f"fib{n}", "request", *target(server), n, timeout=600)["elapsed_s"]
    return {"seconds": seconds}


def loopback_floor(ctx, cell):
    record = ctx.client(cell, "floor", "loopback_floor", "--duration", cell.params["duration_s"], timeout=60)
    return {"rate_per_s": record["rate_per_s"]}


def perf1(ctx, cell):
    """C4, C7: perf1's latency with one client, then with two at once."""
    if ctx.locust:
        return locust_perf1(ctx, cell)
    args = ["--n", cell.params["n"], "--duration", cell.params["duration_s"]]
    timeout = cell.params["duration_s"] + 60
    with ctx.server(cell) as server:
        warm_up(ctx, cell, server)
        one = ctx.client(cell, "one_client", "perf1", *target(server), *args, timeout=timeout)
        two = [ctx.in_background(ctx.client, cell, f"two_clients_{i}", "perf1", *target(server), *args,
                                 timeout=timeout) for i in (1, 2)]
        two = [t.join() for t in two]
    together = while_both_ran(two)
    two_mean = statistics.fmean(together)
    return {"n": cell.params["n"], "one_client_mean_s": one["mean_s"], "two_clients_mean_s": two_mean,
            "ratio": two_mean / one["mean_s"], "samples": one["count"] + len(together), "load": "clients"}


def while_both_ran(records):
    """The latencies of the requests made while both clients were running: two clients never start
    at the same moment (each is its own docker exec), and a request made alone is no 2-client sample."""
    start = max(r["started_at"] for r in records)
    end = min(r["ended_at"] for r in records)
    samples = [latency for r in records for latency, sent in zip(r["latencies_s"], r["sent_at"])
               if sent >= start and sent + latency <= end]
    if len(samples) < 4:
        raise RuntimeError(f"the two perf1 clients ran together for too short a time ({max(end - start, 0):.2f} s)")
    return samples


def warm_up(ctx, cell, server):
    """A fresh server's first requests are slow; they must not inflate the 1-client baseline."""
    ctx.client(cell, "warm_up", "perf1", *target(server), "--n", cell.params["n"], "--count", 10, timeout=60)


def locust_perf1(ctx, cell):
    """perf1 as Locust's perf1 scenario: 1 user, then 2 users (users = clients)."""
    p = cell.params
    with ctx.server(cell) as server:
        warm_up(ctx, cell, server)
        runs = {users: ctx.locust.run("perf1", server, users, p["duration_s"], perf1_n=p["n"]) for users in (1, 2)}
    ctx.run.save_raw(cell.id, "locust.json", {"load": ctx.locust.mode, "retried": getattr(ctx.locust, "retried", 0),
                                              "runs": {
        f"{users}_users": {"mean_s": mean, "requests": count} for users, (mean, count) in runs.items()}})
    (one, one_count), (two, two_count) = runs[1], runs[2]
    return {"n": p["n"], "one_client_mean_s": one, "two_clients_mean_s": two, "ratio": two / one,
            "samples": one_count + two_count, "load": ctx.locust.mode}


def convoy(ctx, cell):
    """C6, C8, C9 (and the switch-interval sweep): perf2's rate before and while a long request runs."""
    p = cell.params
    extra = ["--switch-interval", p["switch_interval_s"]] if "switch_interval_s" in p else []
    with ctx.server(cell, *extra) as server:

        def long_request():
            time.sleep(p["long_delay_s"])
            return ctx.client(cell, "long_request", "request", *target(server), p["long_n"], timeout=600)

        long = ctx.in_background(long_request)
        perf2 = ctx.client(cell, "perf2", "perf2", *target(server), "--interval", p["interval_s"],
                           "--duration", p["perf2_s"], timeout=p["perf2_s"] + 60)
        long = long.join()
    return {**convoy_rates(perf2, long["started_at"], long["ended_at"]), "long_n": p["long_n"],
            "long_s": long["elapsed_s"], "switch_interval_s": p.get("switch_interval_s")}


def convoy_rates(perf2, long_start, long_end):
    """Mean rate in the whole buckets before the long request (the first one is warm-up) and in
    those wholly inside it; drop = 1 - during / before."""
    width = perf2["interval_s"]
    buckets = perf2["buckets"][1:]
    before = [count for start, count in buckets if start + width <= long_start]
    during = [count for start, count in buckets if start >= long_start and start + width <= long_end]
    rate_before = statistics.fmean(before) / width if before else None
    rate_during = statistics.fmean(during) / width if during else None
    drop = 1 - rate_during / rate_before if rate_before and rate_during is not None else None
    return {"rate_before_per_s": rate_before, "rate_during_per_s": rate_during, "drop": drop,
            "long_started_at": long_start, "long_ended_at": long_end, "buckets_during": len(during)}


def prefork_lockout(ctx, cell):
    """C10: prefork's rate is high (no IPC), but N long requests lock a new client out."""
    p = cell.params
    with ctx.server(cell) as server:
        perf2 = ctx.client(cell, "perf2", "perf2", *target(server), "--duration", p["perf2_s"], timeout=60)
        workers = len(parse_cpuset(ctx.settings["pool_cpus"]))
        longs = [ctx.in_background(ctx.client, cell, f"long_{i}", "request", *target(server), p["long_n"],
                                   timeout=600) for i in range(workers)]
        time.sleep(0.3)  # every child is computing now
        late = ctx.client(cell, "late_client", "request", *target(server), 1, timeout=600)
        longs = [t.join() for t in longs]
    first_free = min(r["ended_at"] for r in longs)
    return {"workers": workers, "rate_per_s": perf2["rate_per_s"], "late_wait_s": late["elapsed_s"],
            "long_s": statistics.fmean(r["elapsed_s"] for r in longs),
            "late_reply_after_first_free_s": late["ended_at"] - first_free}


def idle_connections(ctx, cell):
    """C13: what N idle connections cost the server, in threads and resident memory."""
    p = cell.params
    holding = {}
    with ctx.server(cell) as server:
        before = server.process_status()

        def measure(line):
            if line.startswith("holding"):
                holding.update(server.process_status())

        held = ctx.client(cell, "hold", "hold_connections", *target(server), "--connections", p["connections"],
                          "--hold", p["hold_s"], "--timeout", 60, timeout=p["hold_s"] + 180, on_line=measure)
    if not holding:
        raise RuntimeError("the server was never measured while the connections were held")
    n = p["connections"]
    return {"connections": n, "served": held["served"], "threads_before": before["threads"],
            "threads_holding": holding["threads"], "rss_kib_before": before["rss_kib"],
            "rss_kib_holding": holding["rss_kib"],
            "threads_per_connection": (holding["threads"] - before["threads"]) / n,
            "rss_kib_per_connection": (holding["rss_kib"] - before["rss_kib"]) / n}


def gil_stall(ctx, cell):
    record = ctx.client(cell, "gil_stall", "gil_stall", "--size", cell.params["size"], timeout=900,
                        python=cell.python)
    return {"call_s": record["stall"]["duration_s"], "longest_gap_s": record["stall"]["longest_gap_s"],
            "control_longest_gap_s": record["control"]["longest_gap_s"],
            "sigint": record["sigint"].get("verdict")}


def thread_memory(ctx, cell):
    record = ctx.client(cell, "thread_memory", "thread_memory", "--threads", cell.params["threads"], timeout=120,
                        python=cell.python)
    return {"threads": record["threads"], "variants": [
        {k: v.get(k) for k in ("stack_size_kib", "threads_started", "vm_size_per_thread_kib",
                               "vm_rss_per_thread_kib")} for v in record["variants"]]}


def recursion_depth(ctx, cell):
    record = ctx.client(cell, "recursion_depth", "recursion_depth", timeout=300, python=cell.python)
    return {"recursion_limit": record["recursion_limit"], "crashes": record["crashes"], "probes": [
        {k: p.get(k) for k in ("stack_size_kib", "kind", "depth", "outcome")} for p in record["probes"]]}


EXPERIMENTS = {f.__name__: f for f in (one_at_a_time, echo_clients, fib, loopback_floor, perf1, convoy,
                                        prefork_lockout, idle_connections, gil_stall, thread_memory,
                                        recursion_depth)}
