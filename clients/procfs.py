"""procfs: what the tools read of Linux's /proc: a process's command line and parent, whether it ended, every
process visible here, a process tree, the `python -m server` process, a process's and the machine's CPU time,
and a file of `Key: value` lines (status, smaps_rollup)."""

from __future__ import annotations

import os

from clients import common


def command(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().decode(errors="replace").split("\0")[:-1]


def stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the name (state, parent, ...): the name in parentheses may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()


def parent(pid: int) -> int:
    return int(stat_fields(pid)[1])


def ended(pid: int) -> bool:
    """Whether process pid has ended: gone, or a zombie that its parent has not waited for yet."""
    try:
        return stat_fields(pid)[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def cpu_seconds(pid: int) -> float:
    """The CPU time of process pid so far, its threads' (the ended ones' too) and its children's that it has
    waited for: utime + stime + cutime + cstime of /proc/PID/stat."""
    return sum(map(int, stat_fields(pid)[11:15])) / os.sysconf("SC_CLK_TCK")


def thread_ids(pid: int) -> list[int]:
    """The TIDs of process pid's threads (FileNotFoundError once it has ended)."""
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def thread_name(pid: int, tid: int) -> str:
    """Thread tid's name as the OS knows it (/proc's comm, at most 15 characters); '?' once it has ended."""
    try:
        with open(f"/proc/{pid}/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def processes() -> dict[int, int]:
    """{pid: parent pid} of every process visible here; one that ends during the scan is left out. Without
    /proc (macOS, Windows): common.require_linux's ClientError."""
    common.require_linux(common.PROC)
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                found[int(entry)] = parent(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


MACHINE_TIMES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_times() -> dict[str, int]:
    """The machine's CPU time since it booted, over all its CPUs, in clock ticks (os.sysconf("SC_CLK_TCK")
    a second): the first line of /proc/stat, by MACHINE_TIMES; steal is what the hypervisor took."""
    with open("/proc/stat") as f:
        return dict(zip(MACHINE_TIMES, map(int, f.readline().split()[1:9])))


def is_server(pid: int) -> bool:
    try:
        argv = command(pid)
    except OSError:
        return False
    # not docker-init, whose arguments hold the same words
    return bool(argv) and "python" in os.path.basename(argv[0]) and argv[1:3] == ["-m", "server"]


def find_server(parents: dict[int, int]) -> int:
    """The pid of the one `python -m server` process whose parent is not one too (prefork's children are)."""
    roots = [pid for pid in parents if is_server(pid) and not is_server(parents[pid])]
    if len(roots) != 1:
        found = f"{len(roots)} ({', '.join(map(str, sorted(roots)))})" if roots else "none"
        raise common.ClientError(common.EXIT_FAILED, f"expected one `python -m server` process here, found {found}: "
                                                     "name the server with --pid")
    return roots[0]


def tree(root: int, parents: dict[int, int]) -> list[int]:
    """root and its descendants, parents first; never this reader itself."""
    members, i = [root], 0
    while i < len(members):
        members += sorted(pid for pid, ppid in parents.items() if ppid == members[i] and pid != os.getpid())
        i += 1
    return members


def fields(path: str, wanted: dict[str, str]) -> dict[str, int]:
    """The numbers of the `Key: value` lines of `path` (/proc/PID/status, smaps_rollup) whose keys are in
    wanted, under wanted's names for them."""
    values = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in wanted:
                values[wanted[key]] = int(rest.split()[0])
    return values
