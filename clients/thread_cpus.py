"""thread_cpus: where a server's threads run, and how busy each CPU is, sampled while a measurement runs."""

from __future__ import annotations

import os
import time

from clients import common, procfs

DESCRIPTION = """\
Samples, every --interval for --duration seconds, the CPU each thread of one server last ran on and
its CPU time (/proc/PID/task/TID/stat: processor, utime + stime), and each CPU's busy time
(/proc/stat), so that a rate can be checked afterwards for a thread that moved between CPUs, or for
another job that took a CPU beside the server in the middle (the runner's perf2 cells do). The
server is the `python -m server` process and its descendants (pool workers, forked children); this
sampler's own threads are sampled too, so that its CPU time is not counted as another job's. Run it
in the server's container, or on the host next to a local server. Standard library only.
"""

OUTPUT_HELP = """\
output:
  at the end, one line per thread: 'TID NAME ROLE: ran on CPUS, S s of CPU', then one per CPU:
  'CPU N: busy P%'
  with --json, a last line with one JSON object:
    tool, python, root, ticks_per_s, interval_s, cpus (the CPUs any of the server's threads may use),
    threads: {tid: {pid, comm, role}} (role: answer, worker, sampler or other; answer: a thread the
    server names 'answer' (it serves a connection), or else the main thread of each `python -m server`
    process (an event loop, each forked child); worker: a pool worker, named 'pool-worker'),
    samples: [[epoch_t, {cpu: busy_ticks}, {tid: [cpu, ticks]}], ...], started_at, ended_at
"""

ANSWER, WORKER = "answer", "pool-worker"  # server.placement's names (tests/test_placement.py: they agree)


def parse_args(argv=None):
    parser = common.make_parser("thread_cpus", DESCRIPTION, OUTPUT_HELP, network=False)
    common.add_positive(parser, "--duration", common.positive_float, 5.0, "seconds to sample")
    common.add_positive(parser, "--interval", common.positive_float, 0.05, "seconds between samples")
    parser.add_argument("--pid", type=common.positive_int,
                        help="the server's pid (default: the one `python -m server` process, as in a server's container)")
    args = parser.parse_args(argv)
    if args.interval < 0.01 or args.duration / args.interval > 10_000:
        parser.error("--interval: at least 0.01 s, and at most 10,000 samples in --duration")
    return args


def cpu_busy() -> dict[int, int]:
    """{cpu: ticks it was busy since boot} from /proc/stat: all but idle and iowait."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks = list(map(int, values[:8]))
                busy[int(name[3:])] = sum(ticks) - ticks[3] - ticks[4]
    return busy


def task(pid: int, tid: int):
    """(comm, processor, utime + stime) of one thread; None if it has ended."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is the state, the 3rd field of stat
    return comm, int(fields[36]), int(fields[11]) + int(fields[12])


def sample(members: list[int], threads: dict) -> tuple[float, dict, dict]:
    """One reading of every thread of members (pids) and of each CPU; learns new threads into `threads`."""
    at, busy, seen = common.epoch_now(), cpu_busy(), {}
    for pid in members:
        try:
            tids = procfs.thread_ids(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            found = task(pid, tid)
            if found:
                comm, cpu, ticks = found
                threads.setdefault(tid, {"pid": pid, "comm": comm})["comm"] = comm
                seen[tid] = [cpu, ticks]
    return at, busy, seen


def roles(threads: dict, members: list[int]) -> None:
    """Mark each thread answer, worker, sampler or other (see OUTPUT_HELP)."""
    named = any(info["comm"] == ANSWER for info in threads.values())
    servers = {pid for pid in members if procfs.is_server(pid)}  # not the forkserver, not workers
    for tid, info in threads.items():
        if info["pid"] == os.getpid():
            info["role"] = "sampler"
        elif info["comm"] == WORKER:
            info["role"] = "worker"
        elif info["comm"] == ANSWER or (not named and tid == info["pid"] and info["pid"] in servers):
            info["role"] = "answer"
        else:
            info["role"] = "other"


def allowed(threads: dict) -> list[int]:
    """The CPUs any of the server's threads may run on (a server places each thread on some of them)."""
    cpus = set()
    for tid, info in threads.items():
        if info["role"] != "sampler":
            try:
                cpus |= os.sched_getaffinity(int(tid))
            except OSError:  # ended since
                pass
    return sorted(cpus)


def print_summary(threads: dict, samples: list, ticks_per_s: int) -> None:
    first, last = samples[0], samples[-1]
    for tid, info in threads.items():
        cpus = sorted({seen[tid][0] for _, _, seen in samples if tid in seen})
        ticks = max((seen[tid][1] for _, _, seen in samples if tid in seen), default=0)
        ticks -= first[2].get(tid, [0, 0])[1]
        common.print_line(f"{tid} {info['comm']} {info['role']}: ran on CPU {','.join(map(str, cpus))}, "
                          f"{ticks / ticks_per_s:.2f} s of CPU")
    seconds = max(last[0] - first[0], 1e-9)
    for cpu, busy in last[1].items():
        common.print_line(f"CPU {cpu}: busy {(busy - first[1][cpu]) / ticks_per_s / seconds:.0%}")


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_linux(common.PROC)
    started_at = common.epoch_now()
    parents = procfs.processes()
    root = args.pid or procfs.find_server(parents)
    if root not in parents:
        raise common.ClientError(common.EXIT_FAILED, f"no process {root} here")
    threads, samples = {}, []
    deadline = time.monotonic() + args.duration
    while True:
        members = procfs.tree(root, procfs.processes())
        samples.append(sample([*members, os.getpid()], threads))
        if time.monotonic() + args.interval > deadline:
            break
        time.sleep(args.interval)
    roles(threads, members)
    print_summary(threads, samples, os.sysconf("SC_CLK_TCK"))
    if args.json:
        common.print_experiment_json("thread_cpus", started_at, root=root, ticks_per_s=os.sysconf("SC_CLK_TCK"),
                                     interval_s=args.interval, cpus=allowed(threads),
                                     threads=threads, samples=samples)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("thread_cpus", main)
