"""cpu_parallelism: how much parallelism this container's CPUs give right now, the yardstick of C4 and C7."""

from __future__ import annotations

import multiprocessing
import time

from clients import common
from server.cpusets import usable_cpus
from server.handlers import fib

DESCRIPTION = """\
C4 and C7 ask whether a second perf1 client doubles the latency (the two share one CPU's worth of
Python) or leaves it as it was (they run in parallel). "As it was" assumes two free CPUs. On a
shared machine another job may hold one of them, and then even two separate processes slow each
other down.

This tool measures that, with the server's own fib(n) and no server at all: the mean time of one
fib(n) in one process alone, then in two processes at once, on the CPUs this process may use (run
it in the server's container, on the server's cpuset). The ratio two/one is the latency ratio a
perfectly parallel server would show on this machine now: about 1 on two free CPUs, about 2 when
only one CPU's worth is free.
"""

OUTPUT_HELP = """\
output:
  'one process: X ms per fib(n); two at once: Y ms (xR)' once, at the end
  with --json, a last line with one JSON object:
    tool, python, n, cpus (the CPUs this process may use), one_s, two_s (mean seconds per fib(n)),
    ratio (two_s / one_s), one_cpu_share, two_cpu_share (the CPU time the processes got over what the
    CPUs could give them in that phase: about 1, lower when another job took some), one_cpu_per_call_s,
    two_cpu_per_call_s (CPU seconds per fib(n): the same in both phases on the same CPU; higher in one
    when its CPU seconds did less work, as when another job shares the core or the host takes the
    CPU while the time is charged), started_at, ended_at
"""


def parse_args(argv=None):
    parser = common.make_parser("cpu_parallelism", DESCRIPTION, OUTPUT_HELP, network=False)
    common.add_positive(parser, "--n", common.positive_int, 27, "fib(n) each process computes")
    common.add_positive(parser, "--duration", common.positive_float, 0.5,
                        "seconds of each phase, one process alone then two at once")
    return parser.parse_args(argv)


def fib_for(n, duration, start_at):
    """From the shared start time on, fib(n) over and over for `duration` s: (seconds, calls, CPU
    seconds of this process, when it stopped)."""
    time.sleep(max(0.0, start_at - time.perf_counter()))
    count, started, cpu_started = 0, time.perf_counter(), time.process_time()
    end = started + duration
    while time.perf_counter() < end:
        fib(n)
        count += 1
    ended = time.perf_counter()
    return ended - started, count, time.process_time() - cpu_started, ended


def in_processes(processes, n, duration, cpus):
    """(The mean seconds per fib(n) call of `processes` processes started together, over all their calls
    (as perf1's mean is over all requests: a process that gets more CPU makes more of them); their CPU
    share: the CPU seconds they got over what min(processes, cpus) CPUs give from the start to the last
    one's end. A share well below 1 means another job took CPU, or a process started late; their CPU
    seconds per call.)"""
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        start_at = time.perf_counter() + 0.1  # all of them forked and waiting before anyone computes
        runs = pool.starmap(fib_for, [(n, duration, start_at)] * processes)
    window = max(ended for *_, ended in runs) - start_at
    cpu = sum(cpu for _, _, cpu, _ in runs)
    calls = sum(calls for _, calls, *_ in runs)
    return sum(seconds for seconds, *_ in runs) / calls, cpu / (window * min(processes, cpus)), cpu / calls


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_linux(common.FORK)  # its processes are forked
    started_at = common.epoch_now()
    cpus = sorted(usable_cpus())
    one, one_cpu_share, one_cpu_per_call = in_processes(1, args.n, args.duration, len(cpus))
    two, two_cpu_share, two_cpu_per_call = in_processes(2, args.n, args.duration, len(cpus))
    ratio = two / one
    common.print_line(f"one process: {one * 1000:.1f} ms per fib({args.n}); two at once: {two * 1000:.1f} ms "
                      f"(x{ratio:.2f})")
    if args.json:
        common.print_experiment_json("cpu_parallelism", started_at, n=args.n, cpus=cpus, one_s=one, two_s=two,
                                     ratio=ratio, one_cpu_share=one_cpu_share, two_cpu_share=two_cpu_share,
                                     one_cpu_per_call_s=one_cpu_per_call, two_cpu_per_call_s=two_cpu_per_call)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("cpu_parallelism", main)
