"""loopback_floor: the fastest ping-pong a bare socket does here, the floor under every perf2 rate, with
both ends pinned to one CPU and across two (their ratio: this machine's cost of waking a CPU), and the
perf2 client's own ceiling in the lab's perf2 layout."""

from __future__ import annotations

import argparse
import os
import socket
import time
from dataclasses import dataclass

from clients import common, perf2
from server.cpusets import usable_cpus

DESCRIPTION = """\
A ping-pong on one connection to the barest possible server: a forked process that only echoes, on
127.0.0.1. No protocol, no fib, no threads. The echo process and this one are each pinned to one
CPU (os.sched_setaffinity), in two layouts:

  same CPU     both on --same-cpu CPU
  across CPUs  the echo on ECHO_CPU, this process on CLIENT_CPU (--across ECHO_CPU,CLIENT_CPU): the
               lab's perf2 layout, the server's answering thread on the first pool CPU and the client
               on the first load CPU

In each layout, the article's perf2 loop, bare (send b'1', recv(100)): its rate is that layout's
floor, which no strategy can beat there. The two floors' ratio is this machine's cost of waking a
CPU: across CPUs, every request wakes the other one (on a VM an idle CPU halts, and waking it can
cost more than the loop itself); on one CPU nothing sleeps. A perf2 rate is comparable only with the
floor of its own layout.

Then, in the across layout, the lab's own perf2 client loop (clients.perf2's, with its reply check
and its count) sends b'1\\n', whose echo is fib(1)'s reply: its rate is the perf2 client's ceiling,
the most perf2 can measure there. A perf2 rate near it may be the client's limit rather than the
server's. With one CPU there is no across layout: its floor is reported as not measurable, with
the reason, and perf2's layout is the same CPU.

Defaults, from the CPUs this process may use (os.sched_getaffinity): --across FIRST,LAST and
--same-cpu LAST, so that the client keeps its CPU in both layouts and only the echo moves. The
loops share --duration evenly (three loops; two on one CPU).
"""

OUTPUT_HELP = """\
output:
  'N requests/second (bare loop, same CPU: echo and client on CPU C)'
  'N requests/second (bare loop, across CPUs: echo on CPU E, client on CPU C)', or
    'across CPUs: not measurable: WHY'
  'N requests/second (perf2's loop, LAYOUT: its ceiling)'
  with --json, a last line with one JSON object:
    tool, python,
    same_cpu, same_cpu_total, same_cpu_duration_s, same_cpu_per_s (the bare loop on one CPU),
    echo_cpu, client_cpu, across_cpus_total, across_cpus_duration_s, across_cpus_per_s (the bare
      loop across CPUs; null when not measurable), across_cpus_not_measurable (why, or null),
    ran_on ({"same": {"echo": CPU, "client": CPU}, "across": {...} or null}: the CPU each process
      was on as its loop ended, from /proc/PID/stat),
    perf2_layout ('across CPUs', or 'same CPU' where there is no across layout),
    total, duration_s, rate_per_s (the bare loop in perf2_layout: the floor of perf2's rates),
    perf2_total, perf2_duration_s, perf2_ceiling_per_s (perf2's loop in perf2_layout),
    started_at, ended_at
"""

MAX_DURATION_S = 60.0
ACCEPT_TIMEOUT_S = 10.0  # an echo child whose client never connects leaves, rather than wait forever
SAME, ACROSS = "same CPU", "across CPUs"


def duration_s(text: str) -> float:
    value = common.positive_float(text)
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"at most {MAX_DURATION_S:g} s: {text!r}")
    return value


def parse_args(argv=None):
    parser = common.make_parser("loopback_floor", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument("--duration", type=duration_s, default=3.0,
                        help=f"seconds in all, shared evenly by the loops (at most {MAX_DURATION_S:g}; "
                             "default: %(default)s)")
    parser.add_argument("--same-cpu", metavar="CPU",
                        help="the CPU of both ends in the same-CPU layout (default: the last CPU this process "
                             "may use)")
    parser.add_argument("--across", metavar="ECHO_CPU,CLIENT_CPU",
                        help="the echo's CPU and the client's in the across layout; the same CPU twice: not "
                             "measurable (default: the first and the last CPU this process may use)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Layouts:
    same_cpu: int
    echo_cpu: int
    client_cpu: int
    not_measurable: str | None  # why there is no across layout, or None


def cpu_number(text: str, option: str) -> int:
    """The CPU `text` names, if this process may pin itself to it: a CPU outside its affinity but inside its
    container's (a process pinned by affinity alone may move) will do; a ClientError (exit 2) for another."""
    text = text.strip()
    if not text.isdigit():
        raise common.ClientError(common.EXIT_BAD_ARGUMENTS, f"{option}: {text!r} is not a CPU number")
    cpu, before = int(text), usable_cpus()
    try:
        os.sched_setaffinity(0, {cpu})  # the kernel knows best which CPUs the cgroup and the machine give
    except (OSError, ValueError, OverflowError) as error:
        raise common.ClientError(common.EXIT_BAD_ARGUMENTS, f"{option}: CPU {cpu} is not one this process may use "
                                 f"({getattr(error, 'strerror', None) or error})") from None
    finally:
        os.sched_setaffinity(0, before)
    return cpu


def layouts(same_text: str | None, across_text: str | None, allowed: set[int]) -> Layouts:
    """The two layouts, from the options (None: the default, from `allowed`, the CPUs this process may use now)."""
    if across_text is None:
        echo, client = min(allowed), max(allowed)
    else:
        parts = across_text.split(",")
        if len(parts) != 2:
            raise common.ClientError(common.EXIT_BAD_ARGUMENTS,
                                     f"--across {across_text!r}: expected ECHO_CPU,CLIENT_CPU, e.g. 0,1")
        echo, client = (cpu_number(part, "--across") for part in parts)
    same = max(allowed) if same_text is None else cpu_number(same_text, "--same-cpu")
    why = None
    if echo == client:
        why = (f"--across gives the echo and the client the same CPU ({echo})" if across_text is not None
               else f"this process may use one CPU only ({echo})")
    return Layouts(same, echo, client, why)


def current_cpu() -> int:
    """The CPU this process runs on: field 39 of /proc/self/stat."""
    with open("/proc/self/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[36])


def echo_once(listener, cpu, report):
    """The child: on `cpu`, echo one connection until it closes, write the CPU it ran on to `report`,
    then leave without the parent's cleanup."""
    try:
        os.sched_setaffinity(0, {cpu})
        listener.settimeout(ACCEPT_TIMEOUT_S)
        client, _ = listener.accept()
        while data := client.recv(100):
            client.send(data)
        os.write(report, str(current_cpu()).encode())
    finally:
        os._exit(0)


def in_layout(listener, echo_cpu, client_cpu, loops):
    """Each of loops (loop(connection) -> (replies, seconds)) in turn on one connection to a fresh echo
    child on echo_cpu, this process on client_cpu: ([their results], {'echo': CPU, 'client': CPU}, the
    CPU each was on as its loop ended)."""
    os.sched_setaffinity(0, {client_cpu})  # before the fork: the child starts on this CPU, then moves
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        echo_once(listener, echo_cpu, writer)
    os.close(writer)
    try:
        with common.FibConnection(*listener.getsockname(), timeout=10) as connection:
            results = [loop(connection) for loop in loops]
            client_ran_on = current_cpu()
        with os.fdopen(reader) as report:
            echo_ran_on = report.read()
    finally:
        os.waitpid(child, 0)
    return results, {"echo": int(echo_ran_on) if echo_ran_on else None, "client": client_ran_on}


def perf2_loop(connection, seconds):
    """clients.perf2's own loop for `seconds`, asking fib(1) with a newline, which the echo returns as
    fib(1)'s reply: (replies, seconds it took)."""
    buckets = perf2.Buckets(seconds, 1)  # one bucket, the whole loop: perf2's per-interval count, at no extra cost
    perf2.ask_in_a_loop(connection, common.request_payload(1, newline=True), 1, buckets, seconds)
    return buckets.counts[0], time.perf_counter() - buckets.loop_start


def measure(layout: Layouts, duration: float) -> dict:
    """Both floors and perf2's ceiling, the loops sharing `duration`: the JSON record's measured fields."""
    across = layout.not_measurable is None
    share = duration / (3 if across else 2)

    def bare(connection):
        return perf2.bare_loop(connection.sock, b"1", share)

    def perf2_ceiling(connection):
        return perf2_loop(connection, share)

    listener = socket.create_server(("127.0.0.1", 0))
    allowed = usable_cpus()
    try:
        if across:
            (same,), same_on = in_layout(listener, layout.same_cpu, layout.same_cpu, [bare])
            (floor, ceiling), across_on = in_layout(listener, layout.echo_cpu, layout.client_cpu,
                                                    [bare, perf2_ceiling])
        else:
            (same, ceiling), same_on = in_layout(listener, layout.same_cpu, layout.same_cpu, [bare, perf2_ceiling])
            floor, across_on = same, None
    finally:
        listener.close()
        os.sched_setaffinity(0, allowed)
    return {
        "same_cpu": layout.same_cpu, "same_cpu_total": same[0], "same_cpu_duration_s": same[1],
        "same_cpu_per_s": same[0] / same[1],
        "echo_cpu": layout.echo_cpu, "client_cpu": layout.client_cpu,
        "across_cpus_total": floor[0] if across else None, "across_cpus_duration_s": floor[1] if across else None,
        "across_cpus_per_s": floor[0] / floor[1] if across else None,
        "across_cpus_not_measurable": layout.not_measurable,
        "ran_on": {"same": same_on, "across": across_on},
        "perf2_layout": ACROSS if across else SAME,
        "total": floor[0], "duration_s": floor[1], "rate_per_s": floor[0] / floor[1],
        "perf2_total": ceiling[0], "perf2_duration_s": ceiling[1], "perf2_ceiling_per_s": ceiling[0] / ceiling[1],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    common.require_linux(common.PROC, common.PINNING)
    layout = layouts(args.same_cpu, args.across, usable_cpus())
    started_at = common.epoch_now()
    record = measure(layout, args.duration)
    common.print_line(f"{record['same_cpu_per_s']:.0f} requests/second (bare loop, {SAME}: echo and client on "
                      f"CPU {layout.same_cpu})")
    if layout.not_measurable:
        common.print_line(f"{ACROSS}: not measurable: {layout.not_measurable}")
    else:
        common.print_line(f"{record['across_cpus_per_s']:.0f} requests/second (bare loop, {ACROSS}: echo on CPU "
                          f"{layout.echo_cpu}, client on CPU {layout.client_cpu})")
    common.print_line(f"{record['perf2_ceiling_per_s']:.0f} requests/second (perf2's loop, {record['perf2_layout']}: "
                      "its ceiling)")
    if args.json:
        common.print_experiment_json("loopback_floor", started_at, **record)
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("loopback_floor", main)
