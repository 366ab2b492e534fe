"""gil_stall: one long C-level call stalls every other thread, and Ctrl-C too (claim C5)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

from clients import common

DESCRIPTION = """\
The article's experiment on uninterruptible instructions (claim C5). A ticker thread ticks every
10 ms while the main thread runs one long C-level call, 'spam' in range(SIZE): a single bytecode
instruction that never lets go of the GIL, so the ticker falls silent until it returns.

Two phases, in one process:
  1. stall:   the call, with the ticker running, and a SIGINT sent to this process by a child
              process at 20% of the call's expected duration (a Ctrl-C from elsewhere: a thread of
              ours could not send it, it is stalled too). It reports when the KeyboardInterrupt
              actually arrived.
  2. control: pure-Python bytecode for as long as the call took. The interpreter checks for
              thread switches between instructions, so the ticker keeps ticking.
The default SIZE is the article's 10**9: on the lab's 2-core machines one call takes 30-45 s, so
the whole run takes 1-1.5 minutes. --size 10**8 gives the same picture in under 15 s.
"""

OUTPUT_HELP = """\
output:
  per phase: its duration, the longest gap between two ticks (near the call's duration when the
  ticker was stalled, about 10 ms when it was not) and the ticks counted during the phase
  SIGINT: when it was sent and when the KeyboardInterrupt arrived, in seconds from the call's
  start, and whether the call had finished by then (the article: Ctrl-C does not work during it)
  with --json, a last line with one JSON object:
    tool, python, size, tick_interval_s, expected_call_s,
    stall {duration_s, longest_gap_s, ticks_during, completed},
    control {duration_s, longest_gap_s, ticks_during},
    sigint {sent, sent_after_s, interrupt_after_s, call_completed_first, delay_s, verdict} (times
    from the call's start; delay_s = from the signal to the KeyboardInterrupt; call_completed_first
    = the call's result was stored before the KeyboardInterrupt was raised; verdict: deferred = it
    arrived only after the call, interrupted = it cut the call short, sent-too-late = the call was
    over before the signal went out), started_at, ended_at
"""

# Times here come from time.monotonic rather than perf_counter: the SIGINT sender is another
# process, and on Linux monotonic is the system-wide CLOCK_MONOTONIC (with perf_counter's resolution),
# so its timestamps and ours are on one clock.
TICK_INTERVAL_S = 0.010
# The SIGINT goes out this far into the call: late enough to be clearly inside it.
SIGINT_FRACTION = 0.2
# Calibration call: long enough to time, short enough not to matter.
CALIBRATION_SIZE = 10**6
# Pure-bytecode iterations between two looks at the clock in the control phase.
CONTROL_CHUNK = 10_000


def size_argument(text: str) -> int:
    """Accept 1000000000, 10**9 or 1e9."""
    try:
        if "**" in text:
            base, exponent = text.split("**")
            value = int(base) ** int(exponent)
        else:
            value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 1000000, 10**8, 1e9)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def parse_args(argv=None):
    parser = common.make_parser("gil_stall", DESCRIPTION, OUTPUT_HELP, network=False)
    parser.add_argument(
        "--size", type=size_argument, default=10**9, help="length of the range searched (default: 10**9, the article's)"
    )
    parser.add_argument("--no-sigint", action="store_true", help="do not send the SIGINT during the call")
    # Internal: the child process that plays the user pressing Ctrl-C.
    parser.add_argument("--sigint-sender", nargs=2, type=float, metavar=("PID", "DELAY"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class Ticker:
    """A thread that notes the time every 10 ms, like the article's thread printing 'Hello'."""

    def __init__(self):
        self.ticks: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(TICK_INTERVAL_S):
            self.ticks.append(time.monotonic())

    def __enter__(self) -> "Ticker":
        self.thread.start()
        time.sleep(5 * TICK_INTERVAL_S)  # let it tick before the phase starts
        return self

    def __exit__(self, *exc_info) -> None:
        time.sleep(5 * TICK_INTERVAL_S)  # and after it ends, so the gap over the phase is closed
        self.stop.set()
        self.thread.join()

    def report(self, start: float, end: float) -> dict:
        """Ticks inside [start, end] and the longest gap between two ticks around it."""
        margin = 10 * TICK_INTERVAL_S
        around = [tick for tick in self.ticks if start - margin <= tick <= end + margin]
        gaps = [later - earlier for earlier, later in zip(around, around[1:])]
        return {
            "duration_s": end - start,
            "longest_gap_s": max(gaps) if gaps else None,
            "ticks_during": sum(1 for tick in self.ticks if start <= tick <= end),
        }


class SigintSender:
    """A child process that sends SIGINT to us DELAY seconds after it is told to go.

    The handshake (ready, go) keeps the child's start-up time out of the measurement. Its clock,
    time.monotonic, is system-wide on Linux, so its 'sent at' compares with ours.
    """

    def __init__(self, delay: float):
        command, env = common.child_command("gil_stall", ["--sigint-sender", str(os.getpid()), str(delay)])
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        if self.process.stdout.readline().strip() != "ready":
            raise common.ClientError(common.EXIT_FAILED, "the child process that sends the SIGINT did not start")

    def go(self) -> None:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def sent_at(self) -> float | None:
        """When the signal went out (time.monotonic), once the child has finished."""
        output, _ = self.process.communicate(timeout=60)
        return float(output) if output.strip() else None


def run_sigint_sender(pid: int, delay: float) -> int:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    time.sleep(delay)
    if os.getppid() != pid:  # the tool is gone: never signal whoever got its pid
        return 1
    sent_at = time.monotonic()
    os.kill(pid, signal.SIGINT)
    print(sent_at, flush=True)
    return 0


def stall_phase(size: int, expected_call_s: float, send_sigint: bool) -> tuple[dict, dict | None]:
    """The article's call, 'spam' in range(size), with the ticker running and maybe a SIGINT arriving."""
    numbers = range(size)
    sender = SigintSender(SIGINT_FRACTION * expected_call_s) if send_sigint else None
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C raises KeyboardInterrupt
    found = None
    returned_at = interrupted_at = None
    with Ticker() as ticker:
        try:
            if sender:
                sender.go()
            call_start = time.monotonic()
            found = "spam" in numbers
            returned_at = time.monotonic()
            if sender:
                # If the call was shorter than expected, the signal is still on its way: take it here.
                sender.process.wait(timeout=60)
                time.sleep(0.1)
        except KeyboardInterrupt:
            interrupted_at = time.monotonic()
    # The KeyboardInterrupt may be raised right after the call, before returned_at is set:
    # the call completed if its result was stored.
    completed = found is not None
    call_end = returned_at or interrupted_at
    stall = ticker.report(call_start, call_end)
    stall["completed"] = completed
    if not sender:
        return stall, None
    sent_at = sender.sent_at()
    sigint = {
        "sent": sent_at is not None,
        "sent_after_s": None if sent_at is None else sent_at - call_start,
        "interrupt_after_s": None if interrupted_at is None else interrupted_at - call_start,
        "call_completed_first": completed,
        "delay_s": None if sent_at is None or interrupted_at is None else interrupted_at - sent_at,
    }
    if sent_at is not None and sent_at >= call_end:
        sigint["verdict"] = "sent-too-late"
    else:
        sigint["verdict"] = "deferred" if completed else "interrupted"
    return stall, sigint


def control_phase(duration: float) -> dict:
    """Pure-Python bytecode for `duration` seconds: the eval loop offers the GIL every 5 ms."""
    with Ticker() as ticker:
        start = time.monotonic()
        deadline = start + duration
        while time.monotonic() < deadline:
            counter = 0
            while counter < CONTROL_CHUNK:
                counter += 1
        end = time.monotonic()
    return ticker.report(start, end)


def expected_call_seconds(size: int) -> float:
    """Time a small search and scale it: the SIGINT must go out during the real one."""
    numbers = range(min(size, CALIBRATION_SIZE))
    start = time.perf_counter()
    "spam" in numbers  # noqa: B015 (the search is the point)
    return (time.perf_counter() - start) * size / len(numbers)


def describe_phase(name: str, phase: dict) -> str:
    gap = phase["longest_gap_s"]
    gap_text = "no tick at all" if gap is None else f"longest gap between ticks {gap:.3f} s"
    return f"{name}: {phase['duration_s']:.3f} s, {gap_text}, {phase['ticks_during']} ticks during it"


def describe_sigint(sigint: dict) -> str:
    if not sigint["sent"]:
        return "SIGINT: the sender did not report sending it"
    sent = f"SIGINT sent {sigint['sent_after_s']:.3f} s into the call"
    if sigint["interrupt_after_s"] is None:
        return f"{sent}; no KeyboardInterrupt arrived"
    arrived = f"KeyboardInterrupt at {sigint['interrupt_after_s']:.3f} s ({sigint['delay_s']:.3f} s after the signal)"
    if sigint["verdict"] == "sent-too-late":
        verdict = "but the call had already ended when it was sent: inconclusive, try a larger --size"
    elif sigint["verdict"] == "deferred":
        verdict = "only after the call had returned its result: Ctrl-C does not work during it"
    else:
        verdict = "while the call was running: this Python interrupts the call"
    return f"{sent}; {arrived}, {verdict}"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.sigint_sender:
        pid, delay = args.sigint_sender
        return run_sigint_sender(int(pid), delay)

    started_at = common.epoch_now()
    expected = expected_call_seconds(args.size)
    common.print_line(
        f"'spam' in range({args.size}): expected to take about {expected:.1f} s (python {common.python_version()})"
    )
    stall, sigint = stall_phase(args.size, expected, send_sigint=not args.no_sigint)
    common.print_line(describe_phase("stall   ('spam' in range)", stall))
    if sigint:
        common.print_line(describe_sigint(sigint))
    control = control_phase(stall["duration_s"])
    common.print_line(describe_phase("control (pure bytecode)  ", control))
    if args.json:
        common.print_experiment_json(
            "gil_stall",
            started_at,
            size=args.size,
            tick_interval_s=TICK_INTERVAL_S,
            expected_call_s=expected,
            stall=stall,
            control=control,
            sigint=sigint,
        )
    return common.EXIT_OK


if __name__ == "__main__":
    common.run_tool("gil_stall", main)
