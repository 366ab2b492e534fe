"""recursion_depth: how deep recursion gets in a thread before it fails, per stack size (claim C12)."""

from __future__ import annotations

import argparse
import json
import mmap
import operator
import resource
import signal
import struct
import sys
import tempfile
import threading

from clients import common

DESCRIPTION = """\
The article's remark on thread stacks (claim C12): deep recursion is the real stack risk, and
"it takes nearly 15,000 levels of recursive function calls" to blow the stack.

Each probe runs in a child process: a thread with the given stack size (threading.stack_size) and
a recursion limit raised far out of the way (sys.setrecursionlimit) recurses until something
fails. A crash of the child (a segfault when the C stack overflows) is contained, reported and
counted; the child notes its depth in shared memory at every level, so the depth is known even
then. Two kinds of recursion are probed, because Python 3.11 changed the picture:
  python  f calls f directly. Since 3.11 such calls no longer nest the C stack, so this runs
          until the recursion limit (or memory) and not into the stack.
  c       f calls f through a C function (operator.call), as recursion through __getattr__,
          __eq__, sorted(key=...) or a C extension does: each level nests the interpreter on
          the C stack, as every call did in the article's Python 3.4.
"""

OUTPUT_HELP = """\
output:
  one row per stack size and kind: the deepest level reached and how the probe ended:
  RecursionError (the limit), MemoryError, or crashed (killed by a signal, usually SIGSEGV: the
  thread ran off its stack). Then the number of crashes, which the tool survives.
  with --json, a last line with one JSON object:
    tool, python, recursion_limit, probes: a list of {stack, stack_size_kib (null = default),
    kind, depth, outcome (recursion-error|memory-error|crashed|failed), signal (name, if crashed),
    detail}, crashes, started_at, ended_at
"""

KINDS = ("python", "c")
DEFAULT_STACK_SIZES_KIB = (256, 1024)  # plus the default stack, always probed
DEFAULT_RECURSION_LIMIT = 200_000
PROBE_TIMEOUT_S = 300
DEPTH_FORMAT = struct.Struct("q")


def parse_args(argv=None):
    parser = common.make_parser("recursion_depth", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument(
        "--stack-size",
        type=common.stack_size_kib,
        action="append",
        metavar="KiB",
        help="a thread stack size to probe, repeatable; the default stack is always probed too "
        f"(default: {', '.join(map(str, DEFAULT_STACK_SIZES_KIB))} KiB)",
    )
    parser.add_argument(
        "--kind", choices=(*KINDS, "both"), default="both", help="which recursion to probe (default: %(default)s)"
    )
    parser.add_argument(
        "--limit",
        type=common.positive_int,
        default=DEFAULT_RECURSION_LIMIT,
        help="sys.setrecursionlimit in the probe (default: %(default)s)",
    )
    # Internal: one probe, in the child process: KIND STACK_KIB (0 = default) DEPTH_FILE.
    parser.add_argument("--probe-in-child", nargs=3, metavar=("KIND", "KiB", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.stack_size = sorted(set(args.stack_size or DEFAULT_STACK_SIZES_KIB))
    return args


# ---------------------------------------------------------------- the probe (child process)


def probe(kind: str, stack_kib: int, limit: int, depth_file: str) -> dict:
    """Recurse in a fresh thread until something stops it; the depth goes to depth_file as we go."""
    # A crash is expected here: leave no core file behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    sys.setrecursionlimit(limit)
    if stack_kib:
        threading.stack_size(stack_kib * 1024)
    with open(depth_file, "r+b") as file:
        depth_memory = mmap.mmap(file.fileno(), DEPTH_FORMAT.size)
    record_depth = DEPTH_FORMAT.pack_into

    def down_python(depth: int) -> int:
        record_depth(depth_memory, 0, depth)
        return down_python(depth + 1)

    def down_through_c(depth: int) -> int:
        record_depth(depth_memory, 0, depth)
        return operator.call(down_through_c, depth + 1)

    recurse = down_python if kind == "python" else down_through_c
    result = {}

    def run() -> None:
        try:
            recurse(1)
        except RecursionError as error:
            result.update(outcome="recursion-error", detail=str(error))
        except MemoryError:
            result.update(outcome="memory-error", detail="MemoryError")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    result["depth"] = DEPTH_FORMAT.unpack_from(depth_memory)[0]
    return result


# ---------------------------------------------------------------- the tool (parent process)


def run_probe(kind: str, stack_kib: int, limit: int) -> dict:
    """One probe in a child process; a crash of the child is a result, not an error."""
    with tempfile.NamedTemporaryFile(prefix="recursion-depth-") as depth_file:
        depth_file.write(bytes(DEPTH_FORMAT.size))
        depth_file.flush()
        child = common.run_child(
            "recursion_depth",
            ["--limit", str(limit), "--probe-in-child", kind, str(stack_kib), depth_file.name],
            PROBE_TIMEOUT_S,
        )
        depth_file.seek(0)
        depth = DEPTH_FORMAT.unpack(depth_file.read(DEPTH_FORMAT.size))[0]
    row = {
        "stack": f"{stack_kib} KiB" if stack_kib else "default",
        "stack_size_kib": stack_kib or None,
        "kind": kind,
        "depth": depth,
        "outcome": "failed",
        "signal": None,
        "detail": None,
    }
    if child.returncode < 0:
        row.update(outcome="crashed", signal=signal.Signals(-child.returncode).name)
        row["detail"] = f"killed by {row['signal']}"
    elif child.returncode == 0:
        row.update(common.last_json_line(child.stdout))
    else:
        lines = child.stderr.strip().splitlines()
        row["detail"] = lines[-1] if lines else f"exit code {child.returncode}"
    return row


def describe(row: dict) -> str:
    ending = {
        "recursion-error": f"RecursionError: {row['detail']}",
        "memory-error": "MemoryError",
        "crashed": f"crashed: {row['detail']} (the thread ran off its stack)",
    }.get(row["outcome"], f"failed: {row['detail']}")
    return f"{row['stack']:>9}  {row['kind']:>6}  {row['depth']:>9,}  {ending}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.probe_in_child:
        kind, stack_kib, depth_file = args.probe_in_child
        common.print_line(json.dumps(probe(kind, int(stack_kib), args.limit, depth_file)))
        return common.EXIT_OK

    started_at = common.epoch_now()
    kinds = KINDS if args.kind == "both" else (args.kind,)
    # 0 stands for the default stack size (RLIMIT_STACK, 8 MiB on most Linux systems).
    stack_sizes = [*args.stack_size, 0]
    common.print_line(f"recursion limit {args.limit:,}, python {common.python_version()}")
    common.print_line(f"{'stack':>9}  {'kind':>6}  {'depth':>9}  outcome")
    probes = []
    for kind in kinds:
        for stack_kib in stack_sizes:
            row = run_probe(kind, stack_kib, args.limit)
            common.print_line(describe(row))
            probes.append(row)
    crashes = sum(1 for row in probes if row["outcome"] == "crashed")
    common.print_line(f"crashes: {crashes} of {len(probes)} probes (each contained in its child process)")
    if args.json:
        common.print_experiment_json(
            "recursion_depth", started_at, recursion_limit=args.limit, probes=probes, crashes=crashes
        )
    failures = sum(1 for row in probes if row["outcome"] == "failed")
    return common.EXIT_FAILED if failures else common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("recursion_depth", main)
