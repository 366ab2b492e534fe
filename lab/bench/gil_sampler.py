"""scripts/bench-gil-sampler: what the GIL sampler (clients.gil_sampler) costs the load it runs beside. A
benchmark that prints figures; not a test.

Against one threaded server started here on 127.0.0.1, it runs perf2 for --round-s seconds at a time, in
three modes:
  off     no sampler;
  live    the sampler as compose's profile gil runs it: --rate LAB_GIL_RATE (the environment's, else .env's,
          as compose reads it) and py-spy at the sampler's own --dump-rate default; it prints its record at
          the end instead of posting each second to the Lab view;
  report  the sampler as the runner runs it in its cells: --rate RATE_HZ and --dump-rate DUMP_RATE_HZ of
          the experiment that declares them (lab/experiments/gil_share.py).
The order alternates (off live report, then report live off, ...), --rounds times. The sampler reads the
server by --pid from the load CPU, as the lab's sidecar does from the load CPUs: with 2 or more CPUs the
server runs on the first, and perf2, the sampler and this benchmark on the second (the runner's perf2 layout,
lab.cpu.layout); with one CPU all run on it, and the output says so. Its "where" line names the layout and
the machine.

perf2 is clients.perf2's own loop (ask_in_a_loop, unchanged) in a process of its own, with its buckets 1 µs
wide: each reply is timed to the µs, and a closed loop sends its next request as soon as it has counted a
reply, so the gaps between replies are its requests' latencies. Each round prints perf2's requests per
second and its p50 and p99 latency (nearest rank), and, with a sampler, the sampler's own CPU seconds per
second (its record's cpu_s, py-spy's dumps and its start included, over the seconds it sampled) and the
samples it took per second.

At the end, per mode: the median rate and p99 of its rounds, and their ratios to off (the median of each
round's ratio to the off round of its repetition: rounds measured side by side), and the sampler's CPU
seconds per second; then the verdict: "live rate costs X% of perf2's rate (target < 5%)", X being
1 - live's rate ratio. Speed targets belong here, in a benchmark, never in a test.

A shared machine starves a round now and then. A round in which other jobs ran on the server's CPU for 25%
or more of its length (/proc/stat's busy time of that CPU less the server's own CPU time, /proc/PID/stat;
with one CPU, less this benchmark's processes' too), or whose rate is 25% or more away from the median of
its mode's rounds, is noted and measured once again after the planned rounds (at most --rounds rounds again
in all, so that a run lasts at most a third longer than planned). The new measurement replaces the starved
one and is judged the same way; if it is starved too, the output says so.

The sampler finds py-spy on PATH, this Python's bin directory first; without it no dump runs, and the
output says that their cost is not in the figures.
"""
import argparse
import json
import math
import multiprocessing
import os
import queue
import re
import select
import signal
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

from clients import common, perf2, procfs
from clients.common import pinned_to
from clients.gil_sampler import MAX_RATE_HZ, READY
from clients.thread_cpus import cpu_busy
from lab import REPO, experiments
from lab.bench.common import (STARTUP_TIMEOUT_S, BenchError, OneLineParser, cpu_plan, exit_status, machine,
                              start_server, stop)
from lab.runner.run import dotenv
from server.strategies import threaded

PROG = "scripts/bench-gil-sampler"
MODES = ("off", "live", "report")
LIVE_SETTING = "LAB_GIL_RATE"  # compose's gil-sampler runs with --rate ${LAB_GIL_RATE}
TARGET = 0.05  # the live sampler may cost perf2 less than this share of its rate (issue 28)
STARVED_SHARE = 0.25  # other jobs on the server's CPU for this share of a round: starved
FAR = 0.25  # a rate this far from its mode's median: starved
MAX_ROUND_S = 60
STOP_TIMEOUT_S = 10  # the sampler, after SIGTERM: its py-spy thread ends within DUMP_TIMEOUT_S + 1
PAYLOAD = common.request_payload(1, newline=False)  # perf2's default: the article's bare b'1'
US = 1e-6  # the width of perf2's buckets here: a reply timed to the µs


def parse_args(argv=None):
    parser = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode (default: %(default)s)")
    parser.add_argument("--round-s", type=float, default=5.0,
                        help=f"seconds of perf2 in each round, at most {MAX_ROUND_S} (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line, the last")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 0 < args.round_s <= MAX_ROUND_S:
        parser.error(f"--rounds must be >= 1 and --round-s in (0, {MAX_ROUND_S}]")
    return args


def sampler_modes():
    """({mode: the sampler's arguments, None for off}, {mode: where its rates came from, in words})."""
    text = dotenv(LIVE_SETTING)
    where = f"{LIVE_SETTING}={text}, {'the environment' if os.environ.get(LIVE_SETTING) else '.env'}"
    try:
        live_hz = float(text)
    except (TypeError, ValueError):
        live_hz = math.nan
    if not 0 < live_hz <= MAX_RATE_HZ:
        raise BenchError(f"{where}: not a sampling rate in (0, {MAX_RATE_HZ}] Hz" if text else
                         f"{LIVE_SETTING} is set neither in the environment nor in .env")
    sampling = experiments.provider("DUMP_RATE_HZ")  # the experiment that samples the GIL: gil_share
    if sampling is None:
        raise BenchError("no experiment declares the GIL sampler's RATE_HZ and DUMP_RATE_HZ (lab/experiments)")
    return ({"off": None, "live": ["--rate", f"{live_hz:g}"],
             "report": ["--rate", f"{sampling.RATE_HZ:g}", "--dump-rate", f"{sampling.DUMP_RATE_HZ:g}"]},
            {"live": where, "report": f"{Path(sampling.__file__).relative_to(REPO)}'s RATE_HZ, DUMP_RATE_HZ"})


# ------------------------------------------------------------------------- perf2, its replies timed

def perf2_process(port, seconds, cpus, results):
    """Runs in a child process on the load CPU: clients.perf2's loop for `seconds`, each reply counted in its
    µs; its figures (replies_timed) or {'error': why} go to results."""
    try:
        os.sched_setaffinity(0, cpus)
        with common.FibConnection("127.0.0.1", port, common.DEFAULT_TIMEOUT_S) as connection:
            replies = types.SimpleNamespace(interval=US, counts=bytearray(math.ceil(seconds / US) + 1),
                                            loop_start=time.perf_counter())
            perf2.ask_in_a_loop(connection, PAYLOAD, 1, replies, seconds)
            elapsed = time.perf_counter() - replies.loop_start
        results.put(replies_timed(replies.counts, elapsed))
    except (common.ClientError, OSError) as e:
        results.put({"error": str(e)})


def replies_timed(counts, elapsed):
    """perf2's rate, and the p50, p99 and largest gap between consecutive replies (each request's latency; the
    first request's is left out), in µs, from its replies counted per µs."""
    at = [m.start() for m in re.finditer(rb"[^\x00]", counts)]
    gaps = [later - earlier for earlier, later in zip(at, at[1:])]
    requests = sum(counts)
    return {"requests": requests, "seconds": round(elapsed, 3), "rate_per_s": requests / elapsed,
            "p50_us": common.percentile(gaps, 0.50) if gaps else None,
            "p99_us": common.percentile(gaps, 0.99) if gaps else None, "max_us": max(gaps, default=None)}


def run_perf2(port, seconds, cpus):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=perf2_process, args=(port, seconds, cpus, results))
    child.start()
    try:
        figures = results.get(timeout=seconds + STARTUP_TIMEOUT_S)
    except queue.Empty:
        raise BenchError(f"perf2 gave no figures within {seconds + STARTUP_TIMEOUT_S:g} s") from None
    finally:
        child.join(timeout=5)
        if child.is_alive():
            child.kill()
            child.join()
    if "error" in figures:
        raise BenchError(f"perf2: {figures['error']}")
    return figures


# ------------------------------------------------------------------------- the sampler

def start_sampler(pid, sampler_args, cpus, seconds):
    """clients.gil_sampler reading pid, pinned to cpus, once it says it samples; BenchError with its last line
    if it cannot."""
    path = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), os.environ.get("PATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "clients.gil_sampler", "--pid", str(pid), *sampler_args,
         "--max-s", f"{seconds + STARTUP_TIMEOUT_S + STOP_TIMEOUT_S:g}"],
        cwd=REPO, env={**os.environ, "PATH": path}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=pinned_to(cpus), start_new_session=True)
    deadline, said = time.monotonic() + STARTUP_TIMEOUT_S, ""
    while (left := deadline - time.monotonic()) > 0 and select.select([proc.stderr], [], [], left)[0]:
        line = proc.stderr.readline()
        if READY in line:
            return proc
        if not line:
            break
        said = line.strip() or said
    stop(proc)
    proc.communicate()
    raise BenchError("the sampler did not start: "
                     + (said.removeprefix("gil_sampler: ") or f"no sample within {STARTUP_TIMEOUT_S} s"))


def stop_sampler(proc):
    """The sampler's record, once SIGTERM has stopped it."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(proc)
        proc.communicate()
        raise BenchError(f"the sampler did not stop within {STOP_TIMEOUT_S} s of SIGTERM") from None
    if proc.returncode != 0:
        raise BenchError(f"the sampler exited {proc.returncode}: {(err.strip().splitlines() or ['?'])[-1]}")
    return common.last_json_line(out)


def sampler_figures(record):
    """What a round reports of the sampler's record: its rates, py-spy's, its samples and its CPU per second."""
    samples = record["samples"]
    span = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0
    return {"rate_hz": record["rate_hz"], "dump_rate_hz": record["dump_rate_hz"], "py_spy": record["py_spy"],
            "py_spy_error": record["py_spy_error"], "samples": len(samples),
            "samples_per_s": len(samples) / span if span else None, "cpu_s": record["cpu_s"],
            "cpu_per_s": record["cpu_s"] / span if span else None, "errors": record["errors"],
            "dump_errors": record["dump_errors"]}


# ------------------------------------------------------------------------- a round

class Plan(types.SimpleNamespace):
    """server_cpus, load_cpus, shared (one CPU for all), pinning (the layout in words), port, server (its
    Popen), modes (sampler_modes()), round_s."""


def reading(plan, sampler):
    """(monotonic s, the server's CPUs' busy seconds, this benchmark's processes' CPU seconds on them)."""
    busy = cpu_busy()
    own = procfs.cpu_seconds(plan.server.pid)
    if plan.shared:  # one CPU: perf2 (a waited-for child), the sampler and this process ran on it too
        own += (procfs.cpu_seconds(sampler.pid) if sampler else 0) + sum(os.times()[:4])
    return time.monotonic(), sum(busy[cpu] for cpu in plan.server_cpus) / os.sysconf("SC_CLK_TCK"), own


def others_share(before, after, cpus):
    """The share of the server's CPUs that other jobs took between two readings."""
    wall, busy, own = (b - a for a, b in zip(before, after))
    return max(0.0, busy - own) / (wall * len(cpus))


def measure(plan, mode, repetition):
    sampler_args = plan.modes[mode]
    sampler = start_sampler(plan.server.pid, sampler_args, plan.load_cpus, plan.round_s) if sampler_args else None
    try:
        before = reading(plan, sampler)
        figures = run_perf2(plan.port, plan.round_s, plan.load_cpus)
        others = others_share(before, reading(plan, sampler), plan.server_cpus)
    except BaseException:
        if sampler:
            stop(sampler)
            sampler.communicate()
        raise
    return {"mode": mode, "repetition": repetition, **figures, "others_share": round(others, 3),
            "sampler": sampler_figures(stop_sampler(sampler)) if sampler else None, "starved": None,
            "again": False, "kept": True}


def starved(m, medians):
    """Why round m is starved, or None."""
    if m["others_share"] >= STARVED_SHARE:
        return f"other jobs ran on the server's CPU {m['others_share']:.0%} of the round"
    if abs(m["rate_per_s"] / medians[m["mode"]] - 1) >= FAR:
        return f"its rate is {m['rate_per_s'] / medians[m['mode']]:.2f} of its mode's median"
    return None


def kept_medians(measurements):
    """{mode: the median rate of its rounds kept}."""
    return {mode: statistics.median(m["rate_per_s"] for m in measurements if m["mode"] == mode and m["kept"])
            for mode in MODES}


def measure_starved_again(plan, measurements, most):
    """Each starved round measured once again, `most` of them at most, the new measurement kept in its place
    and judged against its mode's rounds kept by then."""
    medians, again = kept_medians(measurements), 0
    for m in list(measurements):
        m["starved"] = starved(m, medians)
        if not m["starved"]:
            continue
        if again == most:
            print(f"  round {m['repetition']} {m['mode']}: starved ({m['starved']}): kept, {again} rounds "
                  "measured again already", flush=True)
            continue
        again += 1
        print(f"  round {m['repetition']} {m['mode']}: starved ({m['starved']}): measured again", flush=True)
        m["kept"] = False
        measurements.append({**measure(plan, m["mode"], m["repetition"]), "again": True})
        measurements[-1]["starved"] = starved(measurements[-1], kept_medians(measurements))
        print(round_line(measurements[-1]) + (" (kept all the same)" if measurements[-1]["starved"] else ""),
              flush=True)


def round_line(m):
    text = (f"  round {m['repetition']} {m['mode'] + (', again' if m['again'] else ''):14} "
            f"{m['rate_per_s']:8,.0f} req/s  p50 {us(m['p50_us'])}  p99 {us(m['p99_us'])}")
    if s := m["sampler"]:
        py_spy = f"py-spy {s['py_spy']} at {s['dump_rate_hz']:g}/s" if s["py_spy"] else "no py-spy"
        text += (f"  sampler {s['rate_hz']:g} Hz ({s['samples_per_s'] or 0:.0f} samples/s), {py_spy}: "
                 f"{s['cpu_per_s'] or 0:.3f} CPU-s/s")
    return text + (f"  starved: {m['starved']}" if m["starved"] else "")


# ------------------------------------------------------------------------- the run

def main(argv=None):
    args = parse_args(argv)
    return exit_status("bench-gil-sampler", lambda: benchmark(args))


def benchmark(args):
    modes, sources = sampler_modes()
    server_cpus, load_cpus, pinning = cpu_plan(load="perf2 and the sampler ask", one_client_cpu=True)
    os.sched_setaffinity(0, load_cpus)  # this benchmark waits on the load CPU, away from the server's
    server, port = start_server(server_cpus)
    plan = Plan(server_cpus=server_cpus, load_cpus=load_cpus, shared=server_cpus == load_cpus, pinning=pinning,
                port=port, server=server, modes=modes, round_s=args.round_s)
    try:
        print(f"bench-gil-sampler: perf2 against a {threaded.NAME} server on 127.0.0.1:{port}, beside clients.gil_sampler "
              "or not", flush=True)
        print(f"  where: {pinning}; {machine()}")
        if plan.shared:
            print("  one CPU: the server, perf2 and the sampler all run on it: the sampler's CPU is the server's too")
        print(f"  modes: off (no sampler); live {' '.join(modes['live'])} ({sources['live']}), py-spy at the sampler's "
              f"default; report {' '.join(modes['report'])} ({sources['report']})")
        print(f"  {args.rounds} round(s) of each mode, {args.round_s:g} s each, alternating: "
              f"{' '.join(MODES)}, then {' '.join(reversed(MODES))}, ...", flush=True)
        measurements = []
        for repetition in range(1, args.rounds + 1):
            for mode in MODES if repetition % 2 else reversed(MODES):
                measurements.append(measure(plan, mode, repetition))
                print(round_line(measurements[-1]), flush=True)
        measure_starved_again(plan, measurements, args.rounds)
    finally:
        stop(server)
    report(args, plan, sources, measurements)


def report(args, plan, sources, measurements):
    kept = [m for m in measurements if m["kept"]]
    off = {m["repetition"]: m for m in kept if m["mode"] == "off"}
    summary = {}
    for mode in MODES:
        rounds = [m for m in kept if m["mode"] == mode]
        cpu = [m["sampler"]["cpu_per_s"] for m in rounds if m["sampler"] and m["sampler"]["cpu_per_s"] is not None]
        summary[mode] = {
            "rounds": len(rounds), "rate_per_s": statistics.median(m["rate_per_s"] for m in rounds),
            "p99_us": median_of(m["p99_us"] for m in rounds),
            "rate_ratio": statistics.median(m["rate_per_s"] / off[m["repetition"]]["rate_per_s"] for m in rounds),
            "p99_ratio": median_of(m["p99_us"] / off[m["repetition"]]["p99_us"] for m in rounds
                                   if m["p99_us"] and off[m["repetition"]]["p99_us"]),
            "sampler_cpu_per_s": median_of(cpu)}
    cost = 1 - summary["live"]["rate_ratio"]
    print(f"median of each mode's rounds (ratios to off: the median of each round's ratio to the off round of its "
          f"repetition):")
    for mode, s in summary.items():
        print(f"  {mode:7} {s['rate_per_s']:8,.0f} req/s (x{s['rate_ratio']:.3f})  p99 {us(s['p99_us'])}"
              + (f" (x{s['p99_ratio']:.2f})" if s["p99_ratio"] is not None else "")
              + (f"  sampler {s['sampler_cpu_per_s']:.3f} CPU-s/s" if s["sampler_cpu_per_s"] is not None else ""))
    missing = {m["sampler"]["py_spy_error"] for m in kept if m["sampler"] and not m["sampler"]["py_spy"]}
    if missing:
        print(f"  py-spy did not run ({'; '.join(sorted(missing))}): its dumps' cost is not in these figures")
    starved_kept = sum(1 for m in kept if m["starved"])
    if any(m["starved"] for m in measurements):
        print(f"  {sum(1 for m in measurements if m['again'])} round(s) measured again; {starved_kept} of the rounds "
              "kept were starved all the same")
    print(f"live rate costs {cost:.1%} of perf2's rate (target < {TARGET:.0%})", flush=True)
    if args.json:
        print(json.dumps({"where": {"pinning": plan.pinning, "machine": machine(),
                                    "server_cpus": sorted(plan.server_cpus), "load_cpus": sorted(plan.load_cpus)},
                          "rounds": args.rounds, "round_s": args.round_s, "rates_from": sources,
                          "modes": plan.modes, "measurements": measurements, "summary": summary,
                          "live_cost": cost, "target": TARGET, "starved_kept": starved_kept}))


def us(value):
    return "n/a" if value is None else f"{value:,.0f} µs"


def median_of(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
