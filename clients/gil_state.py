"""gil_state: which thread of a CPython process (3.11 to 3.15) holds its GIL and which wait for it, read
from outside without stopping it. Standard library only; Linux, x86_64 or aarch64.

    with GilReader(pid) as reader:
        s = reader.sample()   # Sample(taken_at, switch_number, holder, threads, cpu_s, interpreters)

- holder: the native TID of the thread holding the main interpreter's GIL (its `locked` is 1: its
  `last_holder` PyThreadState's native_thread_id), read through /proc/PID/mem; None while it is free.
- threads: {tid: state} by /proc/PID/task/TID/syscall: HELD (a holder); WAIT (in futex on an address in
  a GIL struct: waiting to take it, or the old holder waiting for the hand-off it was forced into); OTHER
  (I/O, sleep, another lock, or on a CPU or runnable without the GIL, as a thread just woken to take it).
- switch_number: the GIL's count of hand-offs (it grows only when the holder changes).
- interpreters: (id, switch_number, holder) of each subinterpreter with a GIL of its own (3.12 on; 3.14's
  InterpreterPoolExecutor makes one per worker), found again at every sample; () without any. Its holder is
  HELD in threads, and a thread asleep on its GIL WAIT.
- No GIL (free-threaded, the GIL disabled): switch_number and holder None, every thread OTHER, and cpu_s
  is reader.cpu_seconds(), {tid: on-CPU s} (schedstat); else None. GilReader(pid, require_gil=True)
  refuses such a process instead.

Finding it: _PyRuntime, a symbol (.dynsym, else .symtab) of the python executable or libpython mapped in
the process, read through /proc/PID/root/PATH (the file as the process sees it, from a sidecar too), plus
the load bias from /proc/PID/maps. The version: 3.13 on, _Py_DebugOffsets at _PyRuntime+0 (cookie
"xdebugpy", PY_VERSION_HEX, free_threaded); 3.11, 3.12: Py_Version's value in memory; older ones have
neither (refused, with the version in the file's name). The GIL: LAYOUTS, checked at open against the
threads (each PyThreadState's native_thread_id must be a TID), so that a layout that does not fit is an
error, not wrong data. Needs ptrace access: CAP_SYS_PTRACE in the sidecar (as py-spy), or root. Reads are
not atomic: a sample is a snapshot of moments microseconds apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import struct
import time
from dataclasses import dataclass

from clients import common, procfs

HELD, WAIT, OTHER = "held", "wait", "other"
FUTEX = {"x86_64": b"202", "aarch64": b"98"}  # the futex system call's number
MUTEX_SIZE = {"x86_64": 40, "aarch64": 48}  # glibc's pthread_mutex_t; its pthread_cond_t is 48 on both
COND_SIZE = 48
PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT: a larger native_thread_id means a wrong layout
MAX_WALK = 100_000  # links followed in a list, against a loop read from a list being changed

# Where things are, per (major, minor). 3.11, 3.12: byte offsets, from gdb on the debug info of pyenv's 3.11.7
# and 3.12.1 (3.11's GIL: _PyRuntime.ceval.gil; 3.12's: the main interpreter's ceval.gil, a pointer, to
# _PyRuntime._main_interpreter._gil). 3.13 on: the names of _Py_DebugOffsets' uint64 fields after cookie,
# version and free_threaded, in order, per struct, to the last one read, from CPython's headers (3.13:
# Include/internal/pycore_runtime.h; 3.14, 3.15: Include/internal/pycore_debug_offsets.h; as in Debian's
# 3.13.18, 3.14.10 and 3.15.2); the process holds the values.
FIXED = {"runtime_state.interpreters_head": 40, "interpreter_state.next": 0, "thread_state.next": 8,
         "gil.locked": 16}  # struct _gil_runtime_state: interval, last_holder, locked, switch_number, ...
RUNTIME = "size finalizing interpreters_head"
INTERP_313 = ("size id next threads_head gc imports_modules sysdict builtins ceval_gil gil_runtime_state "
              "gil_runtime_state_enabled gil_runtime_state_locked gil_runtime_state_holder")
INTERP_314 = (INTERP_313.replace("threads_head", "threads_head threads_main")
              + " code_object_generation tlbc_generation")
LAYOUTS = {
    (3, 11): {**FIXED, "interpreter_state.threads_head": 16, "thread_state.native_thread_id": 160,
              "runtime.gil": 360},
    (3, 12): {**FIXED, "interpreter_state.threads_head": 72, "thread_state.native_thread_id": 144,
              "interpreter_state.ceval_gil": 384},
    (3, 13): (RUNTIME, INTERP_313, "size prev next interp current_frame thread_id native_thread_id"),
    (3, 14): (RUNTIME, INTERP_314, "size prev next interp current_frame thread_id native_thread_id"),
    (3, 15): (RUNTIME, INTERP_314, "size prev next interp current_frame base_frame last_profiled_frame "
                                   "last_profiled_frame_seq thread_id native_thread_id"),
}
DEBUG_STRUCTS = ("runtime_state", "interpreter_state", "thread_state")
PTRACE = "permission denied (the sampler needs CAP_SYS_PTRACE)"


class ReaderError(Exception):
    """Why a process cannot be read, in one line."""


@dataclass(frozen=True)
class Sample:
    taken_at: float  # time.time() as the sample began
    switch_number: int | None
    holder: int | None
    threads: dict[int, str]
    cpu_s: dict[int, float] | None = None
    interpreters: tuple[tuple[int | None, int, int | None], ...] = ()  # (id, switch_number, holder) of each own GIL


def elf_symbols(path: str, names: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """({name: st_value} of those names defined in .dynsym, else .symtab; the address that the file's offset 0
    is linked at: the lowest PT_LOAD's p_vaddr - p_offset, page-aligned). ELF64 little-endian only."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:6] != b"\x7fELF\x02\x01":
            raise ReaderError(f"{path} is not a 64-bit little-endian ELF file")
        phoff, shoff = struct.unpack_from("<QQ", header, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", header, 54)
        f.seek(phoff)
        programs = f.read(phentsize * phnum)
        loads = [struct.unpack_from("<IIQQ", programs, i * phentsize) for i in range(phnum)]
        linked = min((vaddr - offset) & ~0xFFF for kind, _, offset, vaddr in loads if kind == 1)  # PT_LOAD
        f.seek(shoff)
        table = f.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQI", table, i * shentsize) for i in range(shnum)]

        def read(section):
            f.seek(section[4])
            return f.read(section[5])

        found = {}
        for kind in (11, 2):  # SHT_DYNSYM, then SHT_SYMTAB
            for symbols in (s for s in sections if s[1] == kind):
                strings = read(sections[symbols[6]])  # sh_link: its string table
                starts = {m.start(): name for name in names  # a linker may share a name's tail with another's
                          for m in re.finditer(re.escape(name.encode()) + b"\0", strings)}
                for st_name, _, _, shndx, value, _ in struct.iter_unpack("<IBBHQQ", read(symbols)):
                    if st_name in starts and shndx:  # shndx 0: undefined here (an extension module's import)
                        found.setdefault(starts[st_name], value)
            if len(found) == len(names):
                break
    return found, linked


class GilReader:
    """The GIL of process pid's main interpreter, read from outside (the module's docstring)."""

    def __init__(self, pid: int, require_gil: bool = False):
        common.require_linux(common.PROC)
        self.pid, self.mem, self.calls, self.stats = pid, None, {}, {}
        machine = platform.machine()
        if machine not in FUTEX:
            raise ReaderError(f"{machine} is not supported (x86_64 and aarch64 are)")
        self.futex = FUTEX[machine]
        try:
            self.mem = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except FileNotFoundError:
            raise ReaderError(f"no process {pid}") from None
        except ProcessLookupError:  # a zombie: ended, its parent has not waited for it yet
            raise ReaderError(f"process {pid} ended") from None
        except PermissionError:
            raise ReaderError(f"cannot read /proc/{pid}/mem: {PTRACE}") from None
        try:
            self.locate(machine)
            if require_gil and not self.has_gil():
                raise ReaderError("free-threaded build with the GIL disabled: no GIL to wait for")
        except BaseException:
            self.close()
            raise

    def locate(self, machine: str) -> None:
        runtime, py_version, named = self.runtime()
        if self.read(runtime, 8) == b"xdebugpy":
            hexversion, free_threaded = struct.unpack("<QQ", self.read(runtime + 8, 16))
        else:  # 3.11, 3.12; no Py_Version: older
            hexversion, free_threaded = self.u64(py_version) if py_version else 0, 0
        self.version = (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF)
        self.free_threaded = bool(free_threaded)
        if self.version[:2] not in LAYOUTS:
            raise ReaderError(f"Python {'.'.join(map(str, self.version)) if hexversion else named} is not "
                              "supported: the reader knows 3.11 to 3.15")
        at = self.layout(runtime, LAYOUTS[self.version[:2]])
        self.runtime_at, self.at = runtime, at
        *_, interp = self.interpreters() or [0]
        self.main = interp
        if not interp:
            raise ReaderError(f"process {self.pid}: its Python has no interpreter (starting, or finalized)")
        self.gil = (runtime + at["runtime.gil"] if "runtime.gil" in at  # 3.11: one GIL, in the runtime
                    else self.u64(interp + at["interpreter_state.ceval_gil"]))  # a pointer, maybe to a shared one
        self.locked = at["gil.locked"]  # last_holder is 8 bytes before it, switch_number 8 after
        self.enabled = at["gil.enabled"] if self.free_threaded else None
        self.gil_size = self.locked + 16 + 2 * (COND_SIZE + MUTEX_SIZE[machine])  # then cond, mutex, twice
        self.native_tid = at["thread_state.native_thread_id"]
        tids, tstate, walked = set(), self.u64(interp + at["interpreter_state.threads_head"]), 0
        while tstate and walked < MAX_WALK:
            tids.add(self.u64(tstate + self.native_tid))
            tstate, walked = self.u64(tstate + at["thread_state.next"]), walked + 1
        if not tids & set(self.tasks()) or max(tids) >= PID_MAX:  # a thread that ended may linger in the list
            raise ReaderError(f"Python {'.'.join(map(str, self.version))} in process {self.pid} does not have "
                              f"the layout the reader knows (its threads' ids read {sorted(tids)[:4]})")

    def runtime(self) -> tuple[int, int | None, str]:
        """(_PyRuntime's address, Py_Version's or None, the version in the file's name), from the files mapped
        with python in their names: the executable first, then libpython."""
        mapped = {}
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                for line in f:
                    fields = line.split(maxsplit=5)
                    if len(fields) == 6 and int(fields[2], 16) == 0 and "python" in os.path.basename(fields[5]):
                        mapped.setdefault(fields[5].strip(), int(fields[0].split("-")[0], 16))
            exe = os.readlink(f"/proc/{self.pid}/exe")
        except (FileNotFoundError, ProcessLookupError):
            raise ReaderError(f"process {self.pid} ended") from None
        for path in sorted(mapped, key=lambda p: (p != exe, "libpython" not in p)):
            try:
                symbols, linked = elf_symbols(f"/proc/{self.pid}/root{path}", ("_PyRuntime", "Py_Version"))
            except OSError as e:
                raise ReaderError(f"cannot read {path} of process {self.pid}: {e.strerror or e}") from None
            if "_PyRuntime" in symbols:
                bias, named = mapped[path] - linked, re.search(r"python(\d+\.\d+)", os.path.basename(path))
                return (bias + symbols["_PyRuntime"],
                        bias + symbols["Py_Version"] if "Py_Version" in symbols else None,
                        named.group(1) if named else "of an unknown version")
        try:
            name = os.path.basename((procfs.command(self.pid) or ["?"])[0])
        except OSError:
            name = "?"
        raise ReaderError(f"process {self.pid} ({name}) is not CPython: no _PyRuntime in the files it maps")

    def layout(self, runtime: int, layout) -> dict[str, int]:
        """{"struct.field": byte offset}: the table's, or the values of the _Py_DebugOffsets fields it names."""
        if isinstance(layout, dict):
            return layout
        names = [f"{name}.{field}" for name, fields in zip(DEBUG_STRUCTS, layout) for field in fields.split()]
        at = dict(zip(names, struct.unpack(f"<{len(names)}Q", self.read(runtime + 24, 8 * len(names)))))
        at["gil.locked"] = at["interpreter_state.gil_runtime_state_locked"] - at["interpreter_state.gil_runtime_state"]
        at["gil.enabled"] = at["interpreter_state.gil_runtime_state_enabled"]  # already within the GIL struct
        return at

    def read(self, address: int, size: int) -> bytes:
        try:
            data = os.pread(self.mem, size, address)
        except OSError as e:
            raise ReaderError(f"cannot read the memory of process {self.pid}: {e.strerror or e}") from None
        if len(data) != size:
            raise ReaderError(f"process {self.pid} ended")
        return data

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    def has_gil(self) -> bool:
        """False while a free-threaded build's GIL is disabled (an old extension module may enable it)."""
        return self.enabled is None or struct.unpack("<i", self.read(self.gil + self.enabled, 4))[0] != 0

    def tasks(self) -> list[int]:
        try:
            return procfs.thread_ids(self.pid)
        except (FileNotFoundError, ProcessLookupError):
            raise ReaderError(f"process {self.pid} ended") from None

    def each(self, files: dict[int, int], name: str):
        """(tid, the start of /proc/PID/task/TID/name) of every thread; its file stays open between calls
        (a new thread's is opened, an ended one's closed)."""
        tids = self.tasks()
        for tid in set(files) - set(tids):
            os.close(files.pop(tid))
        for tid in tids:
            try:
                if tid not in files:
                    files[tid] = os.open(f"/proc/{self.pid}/task/{tid}/{name}", os.O_RDONLY)
                yield tid, os.pread(files[tid], 128, 0)
            except PermissionError:
                raise ReaderError(f"cannot read /proc/{self.pid}/task/{tid}/{name}: {PTRACE}") from None
            except OSError:  # it ended since the listing
                continue

    def schedstats(self) -> dict[int, tuple[float, float]]:
        """{tid: (seconds on a CPU, seconds runnable but waiting for one) so far}: /proc/PID/task/TID/schedstat."""
        return {tid: tuple(int(ns) / 1e9 for ns in text.split()[:2])
                for tid, text in self.each(self.stats, "schedstat") if text}

    def cpu_seconds(self) -> dict[int, float]:
        """{tid: seconds on a CPU so far}."""
        return {tid: on_cpu for tid, (on_cpu, _) in self.schedstats().items()}

    def other_gils(self) -> list[tuple[int | None, int]]:
        """[(interpreter id, its GIL's address)] of the subinterpreters with a GIL of their own (3.12 on, an
        isolated interpreter: PEP 684; 3.14's InterpreterPoolExecutor), newest first; the id is None on 3.12,
        whose layout the reader has no id for. [] on 3.11, whose interpreters share the runtime's one GIL."""
        if "runtime.gil" in self.at:
            return []
        found = []
        for interp in self.interpreters(until=self.main):
            gil = self.u64(interp + self.at["interpreter_state.ceval_gil"])
            if gil and gil != self.gil:  # a pointer: to the main one's GIL where it shares it
                named = "interpreter_state.id" in self.at
                found.append((self.u64(interp + self.at["interpreter_state.id"]) if named else None, gil))
        return found

    def interpreters(self, until: int | None = None) -> list[int]:
        """The addresses of the process's interpreters, from the runtime's list: newest first, the main one
        last; with until, those before it."""
        found, interp = [], self.u64(self.runtime_at + self.at["runtime_state.interpreters_head"])
        while interp and interp != until and len(found) < MAX_WALK:
            found.append(interp)
            interp = self.u64(interp + self.at["interpreter_state.next"])
        return found

    def read_gil(self, gil: int) -> tuple[int, int | None]:
        """(switch_number, the holder's TID or None while it is free) of the GIL at address gil."""
        last_holder, locked, _, switch_number = struct.unpack("<QiiQ", self.read(gil + self.locked - 8, 24))
        return switch_number, self.u64(last_holder + self.native_tid) if locked == 1 and last_holder else None

    def sample(self) -> Sample:
        taken_at = time.time()
        if not self.has_gil():
            cpu = self.cpu_seconds()
            return Sample(taken_at, None, None, dict.fromkeys(cpu, OTHER), cpu)
        switch_number, holder = self.read_gil(self.gil)
        own = self.other_gils()
        others = tuple((interp_id, *self.read_gil(gil)) for interp_id, gil in own)
        holders, gils = {holder, *(h for _, _, h in others)} - {None}, [self.gil, *(gil for _, gil in own)]
        threads = {}
        for tid, call in self.each(self.calls, "syscall"):
            number, *args = call.split(b" ", 2)  # "running", or the number, its arguments, sp, pc
            waiting = number == self.futex and any(gil <= int(args[0], 16) < gil + self.gil_size for gil in gils)
            threads[tid] = HELD if tid in holders else WAIT if waiting else OTHER
        return Sample(taken_at, switch_number, holder, threads, interpreters=others)

    def close(self) -> None:
        for fd in [self.mem, *self.calls.values(), *self.stats.values()]:
            if fd is not None:
                os.close(fd)
        self.mem, self.calls, self.stats = None, {}, {}

    def __enter__(self) -> "GilReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def collect(reader: GilReader, seconds: float, rate_hz: float) -> tuple[list[Sample], list[tuple[float, float]]]:
    """(the samples of about `seconds`, (wall s, CPU s) each took): one at a random point of each 1/rate_hz
    period, since a fixed one aliases with the switch interval (200 Hz is the default 5 ms)."""
    samples, costs, start = [], [], time.monotonic()
    for k in range(int(seconds * rate_hz) + 1):
        time.sleep(max(0.0, start + (k + random.random()) / rate_hz - time.monotonic()))
        if time.monotonic() - start > seconds:
            break
        wall, cpu = time.perf_counter(), time.thread_time()
        samples.append(reader.sample())
        costs.append((time.perf_counter() - wall, time.thread_time() - cpu))
    return samples, costs


def shares(samples: list[Sample]) -> dict[int, dict[str, float]]:
    """{tid: {held, wait, other}}: shares of the samples that the thread is in (it may start or end among them)."""
    counts = {}
    for s in samples:
        for tid, state in s.threads.items():
            counts.setdefault(tid, dict.fromkeys((HELD, WAIT, OTHER), 0))[state] += 1
    return {tid: {state: n / sum(c.values()) for state, n in c.items()} for tid, c in counts.items()}


def handoffs_per_s(first: Sample, last: Sample) -> float | None:
    """The GIL's hand-offs per second from first to last; None without a GIL."""
    return handoffs_between(first.taken_at, first.switch_number, last.taken_at, last.switch_number)


def handoffs_between(t0: float, n0: int | None, t1: float, n1: int | None) -> float | None:
    """Hand-offs per second from switch_number n0 at time t0 to n1 at t1; None without a GIL, or no time between."""
    if n0 is None or n1 is None or t1 <= t0:
        return None
    return (n1 - n0) / (t1 - t0)


def interpreter_gils(samples: list[Sample]) -> dict[int | None, dict]:
    """{interpreter id: {samples, holders {tid: share of its samples}, handoffs_per_s}} of the subinterpreters
    with a GIL of their own, over the samples they are in."""
    seen = {}
    for s in samples:
        for interp_id, switch_number, holder in s.interpreters:
            seen.setdefault(interp_id, []).append((s.taken_at, switch_number, holder))
    found = {}
    for interp_id, rows in seen.items():
        holders = {}
        for _, _, holder in rows:
            if holder is not None:
                holders[holder] = holders.get(holder, 0) + 1 / len(rows)
        (t0, first, _), (t1, last, _) = rows[0], rows[-1]
        found[interp_id] = {"samples": len(rows), "holders": holders,
                            "handoffs_per_s": handoffs_between(t0, first, t1, last)}
    return found


DESCRIPTION = """\
Which thread of a CPython process (3.11 to 3.15) holds its GIL and which wait for it, read from outside
without stopping it (how: python -m pydoc clients.gil_state; it needs ptrace access, as py-spy). Per window:
each thread's share of the samples in which it held the GIL, waited for it, or did something else, and the
hand-offs per second (no GIL, free-threaded: each thread's share on a CPU); then each subinterpreter with a
GIL of its own (3.12 on): who held it, and its hand-offs; at the end, a sample's cost.
"""
EPILOG = """\
exit codes:
  0    success
  1    the process ended, or could no longer be read, while sampling
  2    bad arguments, or a process it cannot read (not CPython, not supported, no permission)
  130  interrupted with Ctrl-C
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.gil_state", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pid", type=common.positive_int, help="the process, e.g. a server's (python -m server)")
    common.add_positive(parser, "--window", common.positive_float, 0.2, "seconds per window")
    common.add_positive(parser, "--windows", common.positive_int, 5, "windows to print")
    common.add_positive(parser, "--rate", common.positive_float, 200.0, "samples per second, at most 2000")
    args = parser.parse_args(argv)
    if args.rate > 2000 or args.window * args.windows > 3600:
        parser.error("--rate: at most 2000; --window times --windows: at most 3600 s")
    try:
        reader = GilReader(pid := args.pid)
    except ReaderError as e:
        raise common.ClientError(common.EXIT_BAD_ARGUMENTS, str(e)) from None
    costs = []
    with reader:
        version = ".".join(map(str, reader.version)) + "t" * reader.free_threaded
        common.print_line(f"# process {pid}, Python {version}, GIL at {reader.gil:#x}: {args.windows} windows of "
                          f"{args.window:g} s at {args.rate:g} Hz")
        try:
            previous = reader.sample()
            for window in range(1, args.windows + 1):
                samples, cost = collect(reader, args.window, args.rate)
                costs += cost
                if samples:
                    print_window(window, pid, previous, samples)
                    previous = samples[-1]
        except ReaderError as e:
            raise common.ClientError(common.EXIT_FAILED, str(e)) from None
        if costs:
            wall, cpu = (statistics.median(c[i] for c in costs) * 1e6 for i in (0, 1))
            threads = len(reader.calls or reader.stats)  # the files of the last sample
            common.print_line(f"# per sample ({threads} threads at the end): wall median {wall:.0f} us, CPU median "
                              f"{cpu:.0f} us")
    return common.EXIT_OK


def print_window(window: int, pid: int, previous: Sample, samples: list[Sample]) -> None:
    seconds, rate = samples[-1].taken_at - previous.taken_at, handoffs_per_s(previous, samples[-1])
    common.print_line(f"window {window}: {len(samples)} samples in {seconds:.2f} s, "
                      + (f"{rate:.0f} hand-offs/s" if rate is not None else "no GIL: each thread's share on a CPU"))
    for tid, share in sorted(shares(samples).items()):
        name = procfs.thread_name(pid, tid)
        if rate is None:
            cpu = (samples[-1].cpu_s or {}).get(tid, 0.0) - (previous.cpu_s or {}).get(tid, 0.0)
            common.print_line(f"  {tid:>7} {name:<15} on-CPU {cpu / max(seconds, 1e-9):.2f}")
        else:
            common.print_line(f"  {tid:>7} {name:<15} "
                              + "  ".join(f"{state} {share[state]:.2f}" for state in (HELD, WAIT, OTHER)))
    for interp_id, gil in sorted(interpreter_gils(samples).items(), key=lambda item: str(item[0])):
        held = ", ".join(f"{tid} {share:.2f}" for tid, share in sorted(gil["holders"].items())) or "nobody"
        handoffs = "" if gil["handoffs_per_s"] is None else f", {gil['handoffs_per_s']:.0f} hand-offs/s"
        common.print_line(f"  interpreter {'?' if interp_id is None else interp_id}'s own GIL: held by {held}"
                          f"{handoffs}")


if __name__ == "__main__":
    common.run_tool("gil_state", main)
