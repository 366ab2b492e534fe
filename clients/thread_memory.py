"""thread_memory: what N idle threads cost in virtual and in resident memory (claim C11)."""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading

from clients import common, process_memory, procfs

DESCRIPTION = """\
The article's point on thread memory (claim C11): each thread reserves a whole stack (8 MiB by
default on Linux), so 1000 threads look like more than 8 GB, but that reservation is virtual:
the pages a thread never touches are never made resident. threading.stack_size() shrinks the
reservation itself.

The tool starts N idle threads (each blocked on an Event) and reads VmSize (virtual) and VmRSS
(resident) from /proc/self/status before and after, and USS and PSS from /proc/self/smaps_rollup
(clients.process_memory: the pages of this process alone, and its share of the shared ones). It does so twice, each time in a fresh child
process so that the two runs cannot share memory: once with the default stack size and once with
--stack-size KiB, and prints them side by side.
"""

OUTPUT_HELP = """\
output:
  one row per stack size: threads started, VmSize and VmRSS before -> after (MiB), and the growth
  per thread (KiB) in virtual, in resident and in unique (USS) memory. Virtual per thread is about
  the stack size; resident and unique per thread are a few pages.
  with --json, a last line with one JSON object:
    tool, python, threads, default_stack_kib (RLIMIT_STACK, what glibc gives a thread by default),
    variants: a list of {stack, stack_size_kib (null = default), threads_started, start_error,
    before {vm_size_kib, vm_rss_kib, threads, uss_kib, pss_kib}, after {...}, vm_size_per_thread_kib,
    vm_rss_per_thread_kib, uss_per_thread_kib, pss_per_thread_kib}, started_at, ended_at
"""

STATUS_FIELDS = {"VmSize": "vm_size_kib", "VmRSS": "vm_rss_kib", "Threads": "threads"}
CHILD_TIMEOUT_S = 120


def parse_args(argv=None):
    parser = common.make_parser("thread_memory", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument(
        "--threads", type=common.positive_int, default=1000, help="idle threads to start (default: %(default)s)"
    )
    parser.add_argument(
        "--stack-size",
        type=common.stack_size_kib,
        default=256,
        metavar="KiB",
        help="the small stack size shown next to the default one (default: %(default)s KiB)",
    )
    # Internal: one measurement, in the child process; 0 means the default stack size.
    parser.add_argument("--measure-in-child", type=int, metavar="KiB", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def read_status() -> dict:
    """VmSize, VmRSS, USS and PSS (all in KiB) and the thread count of this process."""
    own = process_memory.read_process(os.getpid())
    return {**procfs.fields("/proc/self/status", STATUS_FIELDS), "uss_kib": own["uss_kib"],
            "pss_kib": own["pss_kib"]}


def default_stack_kib() -> int | None:
    """glibc sizes a new thread's stack by RLIMIT_STACK (when it is finite)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return None if soft == resource.RLIM_INFINITY else soft // 1024


def measure(thread_count: int, stack_kib: int) -> dict:
    """Start thread_count idle threads and read /proc/self/status before and after."""
    if stack_kib:
        threading.stack_size(stack_kib * 1024)
    release = threading.Event()
    threads = []
    start_error = None
    before = read_status()
    for _ in range(thread_count):
        thread = threading.Thread(target=release.wait, daemon=True)
        try:
            thread.start()  # returns once the thread runs, so it is about to block in wait()
        except RuntimeError as error:  # "can't start new thread": a limit was hit, report it
            start_error = str(error)
            break
        threads.append(thread)
    after = read_status()
    release.set()
    for thread in threads:
        thread.join()
    started = len(threads)

    def per_thread(key):
        return (after[key] - before[key]) / started if started else None

    return {
        "stack": f"{stack_kib} KiB" if stack_kib else "default",
        "stack_size_kib": stack_kib or None,
        "threads_started": started,
        "start_error": start_error,
        "before": before,
        "after": after,
        "vm_size_per_thread_kib": per_thread("vm_size_kib"),
        "vm_rss_per_thread_kib": per_thread("vm_rss_kib"),
        "uss_per_thread_kib": per_thread("uss_kib"),
        "pss_per_thread_kib": per_thread("pss_kib"),
    }


def measure_in_child(thread_count: int, stack_kib: int) -> dict:
    result = common.run_child(
        "thread_memory", ["--threads", str(thread_count), "--measure-in-child", str(stack_kib)], CHILD_TIMEOUT_S
    )
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        raise common.ClientError(common.EXIT_FAILED, f"the measuring child process failed: {detail}")
    return common.last_json_line(result.stdout)


ROW_FORMAT = "{:>9}  {:>7}  {:>13}  {:>12}  {:>13}  {:>12}  {:>14}  {:>15}  {:>11}"


def describe(variant: dict) -> str:
    before, after = variant["before"], variant["after"]
    text = ROW_FORMAT.format(
        variant["stack"],
        variant["threads_started"],
        f"{before['vm_size_kib'] / 1024:.1f}",
        f"{after['vm_size_kib'] / 1024:.1f}",
        f"{before['vm_rss_kib'] / 1024:.1f}",
        f"{after['vm_rss_kib'] / 1024:.1f}",
        f"{variant['vm_size_per_thread_kib']:.1f}",
        f"{variant['vm_rss_per_thread_kib']:.1f}",
        f"{variant['uss_per_thread_kib']:.1f}",
    )
    if variant["start_error"]:
        text += f"  (stopped early: {variant['start_error']})"
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_linux(common.PROC)
    if args.measure_in_child is not None:
        common.print_line(json.dumps(measure(args.threads, args.measure_in_child)))
        return common.EXIT_OK

    started_at = common.epoch_now()
    variants = [measure_in_child(args.threads, 0), measure_in_child(args.threads, args.stack_size)]
    default_kib = default_stack_kib()
    default_text = "unlimited RLIMIT_STACK" if default_kib is None else f"{default_kib} KiB"
    common.print_line(f"{args.threads} idle threads; the default thread stack here is {default_text}")
    common.print_line(
        ROW_FORMAT.format(
            "stack", "threads", "VmSize before", "VmSize after", "VmRSS before", "VmRSS after",
            "virtual/thread", "resident/thread", "USS/thread",
        )
    )
    for variant in variants:
        common.print_line(describe(variant))
    common.print_line(
        "(VmSize and VmRSS in MiB, per thread in KiB. Virtual per thread = the stack + a guard page,\n"
        " plus glibc's per-thread malloc arenas, 64 MiB each and up to 8 per core, reserved, not resident.)"
    )
    if args.json:
        common.print_experiment_json(
            "thread_memory", started_at, threads=args.threads, default_stack_kib=default_kib, variants=variants
        )
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("thread_memory", main)
