"""What the clients share: exit codes, one-line errors, argument parsing, the connection, JSON output."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, NoReturn

from server import limits
from server.cpusets import CAN_PIN
from server.protocol import PORT, fib_reply

# Exit codes, one per kind of failure, so that scripts can tell them apart.
EXIT_OK = 0
EXIT_FAILED = 1  # an experiment's own child process failed in a way it does not measure
EXIT_BAD_ARGUMENTS = 2  # argparse's own code for a usage error
EXIT_REFUSED = 3  # nothing listens on HOST:PORT
EXIT_DROPPED = 4  # the server closed or reset the connection before replying
EXIT_ERR_REPLY = 5  # the server replied "ERR <reason>"
EXIT_TIMEOUT = 6  # no connection or no reply within --timeout
EXIT_BAD_REPLY = 7  # a reply that is neither a number nor ERR, or the wrong number
EXIT_NETWORK = 8  # any other network error (unknown host, unreachable network)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports it

EXIT_CODES_HELP = """\
exit codes:
  0    success
  2    bad arguments
  3    connection refused (no server on HOST:PORT)
  4    connection dropped by the server before its reply
  5    the server replied ERR
  6    timeout (no connection or no reply within --timeout)
  7    unexpected reply (not a number, or not fib(n))
  8    other network error
  130  interrupted with Ctrl-C (perf1/perf2 still print their summary first)
"""

EXPERIMENT_EXIT_CODES_HELP = """\
exit codes:
  0    success (a probe that crashed its child process is a result, not a failure)
  1    a child process failed in a way the experiment does not measure
  2    bad arguments
  130  interrupted with Ctrl-C
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = PORT
# fib(40), the article's longest request, takes seconds to a minute: wait that long, not forever.
DEFAULT_TIMEOUT_S = 120.0
# A fib reply is at most a few dozen digits; the article reads it with one recv(100).
REPLY_RECV_SIZE = 100


class ClientError(Exception):
    """A failure the user should see as one line on stderr, with its own exit code."""

    def __init__(self, exit_code: int, message: str):
        super().__init__(message)
        self.exit_code = exit_code


# What some tools read or do that only Linux has; macOS and Windows run the lab's host side too (docs/hosts.md).
PROC, PINNING, FORK = "Linux's /proc", "CPU pinning (os.sched_setaffinity)", "os.fork (Linux, macOS)"


def has_proc() -> bool:
    return os.path.exists("/proc/self/stat")


HAS = {PROC: has_proc, PINNING: lambda: CAN_PIN, FORK: lambda: hasattr(os, "fork")}


def require_linux(*needs: str) -> None:
    """Before a tool measures: a ClientError (exit 2, one line, no traceback) if it needs any of PROC,
    PINNING and FORK and this host lacks it."""
    missing = [need for need in needs if not HAS[need]()]
    if missing:
        raise ClientError(EXIT_BAD_ARGUMENTS, f"needs {' and '.join(missing)}, which this host lacks: run it "
                                              "on Linux, e.g. in the lab's containers")


# ---------------------------------------------------------------- argument parsing


def make_parser(prog: str, description: str, output_help: str, *, network: bool) -> argparse.ArgumentParser:
    """A parser whose --help explains the tool, what its output means and (for clients) its exit codes."""
    epilog = output_help.rstrip() + "\n\n" + (EXIT_CODES_HELP if network else EXPERIMENT_EXIT_CODES_HELP)
    parser = argparse.ArgumentParser(
        prog=f"python -m clients.{prog}",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if network:
        parser.add_argument("--host", default=DEFAULT_HOST, help="server address (default: %(default)s)")
        parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="server port (default: %(default)s)")
        parser.add_argument(
            "--timeout",
            type=positive_float,
            default=DEFAULT_TIMEOUT_S,
            help="seconds to wait for the connection and for each reply (default: %(default)s)",
        )
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    return parser


def positive_number(convert: Callable[[str], float], kind: str, text: str):
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0: {text!r}")
    return value


def positive_float(text: str) -> float:
    return positive_number(float, "a number", text)


def positive_int(text: str) -> int:
    return positive_number(int, "an integer", text)


# threading.stack_size() refuses less than 32 KiB.
MIN_STACK_KIB = 32


def stack_size_kib(text: str) -> int:
    value = positive_int(text)
    if value < MIN_STACK_KIB:
        raise argparse.ArgumentTypeError(f"threading.stack_size() needs at least {MIN_STACK_KIB} KiB: {text!r}")
    return value


def add_positive(parser: argparse.ArgumentParser, option: str, number: Callable[[str], float], default: float,
                 help: str) -> None:
    """An option that takes a finite number above 0 (number: positive_int or positive_float); its --help line
    ends with its default."""
    parser.add_argument(option, type=number, default=default, help=f"{help} (default: %(default)s)")


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return value


def add_fib_n_argument(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--n", type=int, default=default, help="the Fibonacci number to request (default: %(default)s, as in the article)"
    )
    parser.add_argument(
        "--newline",
        action="store_true",
        help="send 'N\\n' like nc instead of the article's bare 'N' (one send either way)",
    )


# ---------------------------------------------------------------- running a tool


def run_tool(prog: str, main: Callable[[], int]) -> NoReturn:
    """Run a tool's main(): a ClientError becomes one line on stderr and its exit code, never a traceback.
    Every tool may open as many files as its hard limit allows (limits.raise_open_files)."""
    limits.raise_open_files()
    try:
        code = main()
    except ClientError as error:
        print(f"{prog}: error: {error}", file=sys.stderr, flush=True)
        code = error.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed by the reader (for example `| head`): nothing left to say.
        sys.stderr.close()
        code = EXIT_OK
    sys.exit(code)


def enough_files(needed: int) -> None:
    """Raise the limit on open files (limits.raise_open_files); a ClientError, before any connection, if
    the hard limit is below `needed`."""
    too_few = limits.raise_open_files(needed)
    if too_few:
        raise ClientError(EXIT_BAD_ARGUMENTS, too_few)


def print_line(text: str) -> None:
    """Progress output is flushed at once: it is read live, by eye or through a pipe."""
    print(text, flush=True)


def print_json(record: dict) -> None:
    print(json.dumps(record, separators=(",", ":")), flush=True)


def print_experiment_json(tool: str, started_at: float, **fields) -> None:
    """An experiment's record: which tool, on which Python (the GIL's behaviour depends on it), when."""
    print_json(
        {"tool": tool, "python": python_version(), **fields, "started_at": started_at, "ended_at": epoch_now()}
    )


def epoch_now() -> float:
    return time.time()


def python_version() -> str:
    """Recorded with every experiment: the GIL's behaviour is a property of the interpreter."""
    return platform.python_version()


# ---------------------------------------------------------------- the connection


def connect(host: str, port: int, timeout: float) -> socket.socket:
    """Open one TCP connection, turning each way it can fail into a ClientError."""
    where = f"{host}:{port}"
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        raise ClientError(EXIT_REFUSED, f"connection refused by {where} (is a server running there?)") from None
    except TimeoutError:
        raise ClientError(EXIT_TIMEOUT, f"no connection to {where} within {timeout:g} s") from None
    except OSError as error:
        raise ClientError(EXIT_NETWORK, f"cannot connect to {where}: {error.strerror or error}") from None


def request_payload(n: int | str, newline: bool) -> bytes:
    """The article's clients send the bare number (b'30'); nc sends a line (b'30\\n')."""
    payload = str(n).encode("ascii")
    return payload + b"\n" if newline else payload


class FibConnection:
    """One connection that asks fib(n) the article's way: one send, one recv(100) per reply.

    Only if that recv returns part of a line does it read on to the newline, so that a reply split
    in transit cannot shift every later latency by one request.
    """

    def __init__(self, host: str, port: int, timeout: float):
        self.where = f"{host}:{port}"
        self.timeout = timeout
        self.sock = connect(host, port, timeout)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "FibConnection":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def ask(self, payload: bytes) -> bytes:
        """Send one request and return the reply line without its newline; raise ClientError on failure."""
        try:
            self.sock.send(payload)
            return self.finish(payload, self.sock.recv(REPLY_RECV_SIZE))
        except OSError as error:
            raise self.failure(error) from None

    def failure(self, error: OSError) -> ClientError:
        """The ClientError of a socket error met while asking."""
        if isinstance(error, TimeoutError):
            return ClientError(EXIT_TIMEOUT, f"no reply from {self.where} within {self.timeout:g} s")
        if isinstance(error, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return ClientError(EXIT_DROPPED, f"connection to {self.where} was reset by the server before its reply")
        return ClientError(EXIT_NETWORK, f"network error talking to {self.where}: {error.strerror or error}")

    def finish(self, payload: bytes, reply: bytes) -> bytes:
        """The reply line begun by one recv, read on to its newline, without it; a ClientError for an ERR
        reply or a closed connection. A socket error goes to the caller."""
        while reply and not reply.endswith(b"\n"):
            more = self.sock.recv(REPLY_RECV_SIZE)
            if not more:
                break
            reply += more
        if reply.startswith(b"ERR"):
            text = reply.decode("ascii", "replace").strip()
            raise ClientError(EXIT_ERR_REPLY, f"server replied: {text} (request was {payload!r})")
        if not reply.endswith(b"\n"):
            raise ClientError(
                EXIT_DROPPED, f"connection to {self.where} closed by the server before a full reply (got {reply!r})"
            )
        return reply.rstrip(b"\r\n")


def check_fib_reply(n: int, reply: bytes) -> int:
    """The reply (without its newline) must be fib(n); anything else means the framing or the server is wrong."""
    expected = fib_reply(n)
    if reply + b"\n" != expected:
        if not reply.isdigit():
            raise ClientError(EXIT_BAD_REPLY, f"unexpected reply {reply!r} to fib({n})")
        raise ClientError(EXIT_BAD_REPLY, f"wrong reply {reply!r} to fib({n}): expected {expected.strip().decode()}")
    return int(reply)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now (the kernel's pick), for a listener to start on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- statistics


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies: list[float]) -> dict:
    if not latencies:
        return {"mean_s": None, "p50_s": None, "p99_s": None, "min_s": None, "max_s": None}
    return {
        "mean_s": statistics.fmean(latencies),
        "p50_s": percentile(latencies, 0.50),
        "p99_s": percentile(latencies, 0.99),
        "min_s": min(latencies),
        "max_s": max(latencies),
    }


# ---------------------------------------------------------------- child processes


def child_command(module: str, args: list[str]) -> tuple[list[str], dict]:
    """The command and environment for `python -m clients.<module> ARGS` in a fresh interpreter.
    The child finds this package even when the current directory is elsewhere."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    return [sys.executable, "-m", f"clients.{module}", *args], env


def pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that pins a child process (and the threads it will start) to `cpus`; None, no pinning,
    without cpus."""
    return (lambda: os.sched_setaffinity(0, cpus)) if cpus else None


def run_child(module: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run a tool's probe in a child process, so a crash or a polluted address space stays there."""
    command, env = child_command(module, args)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def last_json_line(stdout: str) -> dict:
    """The JSON record a child (or a tool run with --json) printed last."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])
