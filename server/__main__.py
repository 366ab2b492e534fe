"""python -m server --strategy NAME: run one of the article's servers."""
import argparse
import logging
import platform
import sys

from server import build, limits, placement, strategies
from server.cpusets import usable_cpus
from server.lifecycle import Shutdown, exit_at_once, install_shutdown_handlers, stop_accepting_at_signal
from server.listener import listen
from server.protocol import PORT
from server.service import Service

OPTION_FLAGS = {"workers": "--workers", "threshold": "--threshold"}


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def positive_float(text):
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m server",
        description="Run one of the article's concurrency strategies behind the lab's wire protocol:\n"
        "send a number n (bare, as perf1/perf2 do, or a line, as nc does) and get fib(n) and a newline back.",
        epilog="strategies:\n" + "\n".join(f"  {strategies.summary(name)}" for name in strategies.ALL) +
        "\n\nThe first stdout line is 'listening on HOST:PORT'; stderr names the Python build. "
        "SIGTERM or Ctrl-C stops it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--strategy", required=True, choices=list(strategies.ALL),
                        help="how clients are served")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=non_negative_int, default=PORT,
                        help="TCP port; 0 lets the OS pick a free one (default %(default)s)")
    parser.add_argument("--handler", choices=["fib", "echo"], default="fib",
                        help="fib: reply fib(n); echo: return the bytes received (default %(default)s)")
    parser.add_argument("--workers", type=positive_int,
                        help="how many pool workers or forked processes: "
                        + ", ".join(name for name, module in strategies.ALL.items() if "workers" in module.USES)
                        + " (default: one per CPU they may run on: --placement)")
    parser.add_argument("--threshold", type=non_negative_int,
                        help=", ".join(name for name, module in strategies.ALL.items() if "threshold" in module.USES)
                        + ": n above this goes to the pool (default 15, as in the article)")
    parser.add_argument("--max-n", type=non_negative_int, default=40,
                        help="largest n accepted; above it the reply is ERR (default %(default)s)")
    parser.add_argument("--switch-interval", type=positive_float, metavar="SECONDS",
                        help="sys.setswitchinterval(): how long a thread may hold the GIL (default 0.005)")
    parser.add_argument("--placement", choices=placement.CHOICES, default=placement.FIXED,
                        help="fixed: the main thread on the first of the server's CPUs, each connection's thread "
                        "on the CPU serving the fewest connections, pool workers on the others (on all of them with "
                        "two CPUs or fewer), so that a "
                        "client's requests cross CPUs the same way throughout a run; free: the scheduler "
                        "moves them (default %(default)s; docs/servers.md)")
    parser.add_argument("--quiet", action="store_true", help="no per-connection log lines on stderr")
    args = parser.parse_args(argv)
    args.module = strategies.load(args.strategy)
    if getattr(args.module, "NEEDS", None):  # before anything binds a port
        parser.exit(2, f"{parser.prog}: error: --strategy {args.strategy} needs {args.module.NEEDS}; "
                       f"this is Python {platform.python_version()}\n")
    for option, flag in OPTION_FLAGS.items():
        if getattr(args, option) is not None and option not in args.module.USES:
            parser.error(f"{flag} does nothing for --strategy {args.strategy}")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="server[%(process)d]: %(message)s")
    logging.getLogger("server").info("%s", build.text())  # even with --quiet: a result needs its build
    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    # Each connection is a file: raise the soft limit before the first one (pool workers and forked
    # children inherit it), and warn once if the hard limit would turn the lab's connections away.
    too_few = limits.raise_open_files(limits.MOST_CONNECTIONS + limits.SPARE)
    if too_few:
        logging.getLogger("server").warning("%s", too_few)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    settings = dict(handler=args.handler, max_n=args.max_n,
                    workers=args.workers or len(placement.worker_cpus(args.placement, usable_cpus())))
    if args.threshold is not None:
        settings["threshold"] = args.threshold
    service = Service(**settings)
    install_shutdown_handlers()
    try:
        listener = listen(args.host, args.port)
    except OSError as e:
        sys.exit(f"server: cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    stop_accepting_at_signal(listener)
    host, port = listener.getsockname()[:2]
    placed = placement.place_main(args.placement)  # before 'listening on': a client finds the threads placed
    print(f"listening on {host}:{port}", flush=True)
    logging.getLogger("server").info("%s", placed)
    try:
        args.module.serve(listener, service)
    except Shutdown:
        pass
    finally:
        listener.close()
    # The strategy has stopped its workers or children. What is left, daemon threads blocked in recv()
    # (thousands of them) and the interpreter's finalization, is not worth a share of the 2 s.
    exit_at_once()


if __name__ == "__main__":
    sys.exit(main())
