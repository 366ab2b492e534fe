"""process_memory: what a whole server costs, every process of it summed: USS, PSS, RSS, threads (C11, C13)."""

from __future__ import annotations

import os

from clients import common, procfs

DESCRIPTION = """\
RSS overstates what forked workers and pools cost: a page shared by several processes (the
interpreter, the modules imported before the fork) is counted whole in each of them. This tool
reads /proc/PID/smaps_rollup of every process of one server, the `python -m server` process and
all its descendants (pool workers, the forkserver, forked children), and sums three views:

  USS  unique set size: the pages no other process maps (Private_Clean + Private_Dirty); summed,
       a floor under what the server would free, since pages its processes share with each
       other (a fork's copy-on-write pages) are in none of them
  PSS  proportional set size: each page divided by the number of processes that map it, so
       the PSS of all processes on a machine adds up to the memory they use
  RSS  resident set size: every resident page, shared ones counted in each process

with the threads (Threads in /proc/PID/status) and the processes. It reads the processes of its
own user only (the kernel asks for ptrace-read access to smaps_rollup: the same uid is enough, no
capability): run it in the server's container, or on the host next to a local server.
"""

OUTPUT_HELP = """\
output:
  one row per process (pid, parent, threads, USS, PSS, RSS in KiB, command), then the sums
  with --json, a last line with one JSON object:
    tool, python, root (the server's pid), processes, threads, uss_kib, pss_kib, rss_kib, vsz_kib
    (sums over the processes), members: per process {pid, ppid, command, threads, uss_kib, pss_kib,
    rss_kib, vsz_kib}, started_at, ended_at
  a process that ends while it is read, or that cannot be read, is an error (exit 1, one line):
  a sum without it would be wrong.
"""

ROLLUP_FIELDS = {"Rss": "rss_kib", "Pss": "pss_kib", "Private_Clean": "private_clean_kib",
                 "Private_Dirty": "private_dirty_kib"}
STATUS_FIELDS = {"Threads": "threads", "VmSize": "vsz_kib"}
SUMMED = ("threads", "uss_kib", "pss_kib", "rss_kib", "vsz_kib")
TOTALS = ("processes", *SUMMED)  # what a reading of a whole server is, without its members


def parse_args(argv=None):
    parser = common.make_parser("process_memory", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument("--pid", type=common.positive_int,
                        help="the server's pid (default: the one `python -m server` process that is not a child "
                             "of another, as in a server's container)")
    return parser.parse_args(argv)


def read_process(pid: int) -> dict:
    """One process: threads, USS, PSS, RSS and VSZ (KiB). A process that ended or that this user may not
    read raises a ClientError saying so, in one line."""
    try:
        argv = procfs.command(pid)
        status = procfs.fields(f"/proc/{pid}/status", STATUS_FIELDS)
        rollup = procfs.fields(f"/proc/{pid}/smaps_rollup", ROLLUP_FIELDS)
    except (FileNotFoundError, ProcessLookupError):
        raise common.ClientError(common.EXIT_FAILED, f"process {pid} ended while it was being read") from None
    except PermissionError as error:
        raise common.ClientError(common.EXIT_FAILED, f"cannot read {error.filename}: permission denied "
                                                     f"(this reader runs as uid {os.getuid()}; the kernel lets a "
                                                     "process read another's smaps_rollup as the same uid, or "
                                                     "with CAP_SYS_PTRACE)") from None
    if "rss_kib" not in rollup:  # a kernel thread, or a process that became a zombie between the reads
        raise common.ClientError(common.EXIT_FAILED, f"process {pid} has no memory to read (it has ended)")
    return {"pid": pid, "command": " ".join(argv)[:120], "threads": status["threads"],
            "uss_kib": rollup["private_clean_kib"] + rollup["private_dirty_kib"], "pss_kib": rollup["pss_kib"],
            "rss_kib": rollup["rss_kib"], "vsz_kib": status.get("vsz_kib", 0)}


def measure(root: int | None = None) -> dict:
    """The server's processes, each read, and their sums."""
    parents = procfs.processes()
    if root is None:
        root = procfs.find_server(parents)
    elif root not in parents:
        raise common.ClientError(common.EXIT_FAILED, f"no process {root}")
    members = [{**read_process(pid), "ppid": parents[pid]} for pid in procfs.tree(root, parents)]
    return {"root": root, "processes": len(members), **{key: sum(m[key] for m in members) for key in SUMMED},
            "members": members}


ROW_FORMAT = "{:>7}  {:>7}  {:>7}  {:>9}  {:>9}  {:>9}  {}"


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_linux(common.PROC)
    started_at = common.epoch_now()
    found = measure(args.pid)
    common.print_line(ROW_FORMAT.format("pid", "parent", "threads", "USS KiB", "PSS KiB", "RSS KiB", "command"))
    for m in found["members"]:
        common.print_line(ROW_FORMAT.format(m["pid"], m["ppid"], m["threads"], m["uss_kib"], m["pss_kib"],
                                            m["rss_kib"], m["command"][:60]))
    common.print_line(ROW_FORMAT.format("sum", f"{found['processes']} proc", found["threads"], found["uss_kib"],
                                        found["pss_kib"], found["rss_kib"], ""))
    if args.json:
        common.print_experiment_json("process_memory", started_at, **found)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("process_memory", main)
