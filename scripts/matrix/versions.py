"""Beyond the article: one run's answers per Python and build (--python), a row per Python.

- Does perf1 still double with two clients on threaded (C4)?
- Does threaded's convoy drop survive (C6)?
- What does one free-threaded thread cost, single-threaded, next to the GIL build of the same version?
- How do subinterpreters compare with processes on perf2 (the IPC cost of C8)?
"""
from matrix.claims import DOUBLED, convoy_text, rate
from matrix.experiments import SUBINTERPRETERS_SINCE, python_version, python_view
from matrix.run_view import ok_measurements, python_build

HEADER = ["Python", "build", "C4: perf1 on threaded, 2 clients / 1", "C6: threaded's perf2 during a long request",
          "1 thread: perf1 latency, 1 client", "C8: perf2, subinterpreters vs process-pool",
          "asyncio-pool during a long request"]


def rows(record):
    """[[cell text per HEADER column]] for each Python of the run (--python), or for the lab image's."""
    pythons = record["settings"].get("pythons")
    if pythons:
        views = {python: python_view(record, python) for python in pythons}
    else:
        python = record["environment"].get("python", {})
        views = {f"{python.get('version', '?')}{'t' if python.get('free_threaded') else ''}": record}
    return [[python, python_build(view["environment"]["python"]), doubles(view), convoy(view, "threaded"),
             single_thread(views, python), subinterpreters(view, python), convoy(view, "asyncio-pool")]
            for python, view in views.items()]


def doubles(view):
    m = ok_measurements(view, "perf1/threaded")
    if not m:
        return "not run"
    verdict = "doubles" if m["ratio"] >= DOUBLED else "does not double"
    cpus = view["settings"].get("pool_cpus")
    return f"x{m['ratio']:.2f} on CPUs {cpus}: {verdict}"


def convoy(view, strategy):
    m = ok_measurements(view, f"convoy/{strategy}")
    if not m or m["drop"] is None:
        return "not run"
    return convoy_text(m)


def single_thread(views, python):
    """perf1's 1-client latency on threaded, and for a free-threaded build its ratio to the GIL build."""
    m = ok_measurements(views[python], "perf1/threaded")
    if not m:
        return "not run"
    text = f"{m['one_client_mean_s'] * 1000:.1f} ms for fib({m['n']})"
    gil_build = python.rstrip("t")
    if python.endswith("t") and len(views) > 1:
        other = ok_measurements(views[gil_build], "perf1/threaded") if gil_build in views else None
        text += (f", x{m['one_client_mean_s'] / other['one_client_mean_s']:.2f} of {gil_build}'s" if other
                 else f" (run {gil_build} too for the cost next to the GIL build)")
    return text


def subinterpreters(view, python):
    if python_version(python) < SUBINTERPRETERS_SINCE:
        return f"needs {'.'.join(map(str, SUBINTERPRETERS_SINCE))}"
    interpreters = ok_measurements(view, "convoy/subinterpreters")
    processes = ok_measurements(view, "convoy/process-pool")
    if not interpreters or not processes:
        return "not run"
    a, b = interpreters["rate_before_per_s"], processes["rate_before_per_s"]
    return f"{rate(a)} vs {rate(b)} (x{a / b:.2f})" if a and b else "not measured"
