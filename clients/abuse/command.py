"""python -m clients.abuse: the abuse battery's command line."""

from __future__ import annotations

import ipaddress
import socket
import sys

from clients import common
from clients.abuse.cases import CASES, markdown
from clients.abuse.run import FRESH_N, LIMIT_S, OtherLoad, enough_files, run_case
from server import strategies

DESCRIPTION = """\
Run the abuse battery against one server on loopback or a private network (the lab's compose
network): garbage, NUL bytes, non-ASCII digits, over-long lines, half-closes, resets mid-compute,
connect floods, slowloris clients, thousands of idle connections, clients that pipeline without
reading. During each case and after it, a fresh client asks fib(20) and must be answered within
--limit seconds. Start the server first (python -m server --strategy NAME).
With --strategy, a case that holds as many connections open as the strategy serves at once lets the
fresh client wait until the case ends, as the article says it must: """ + "; ".join(
    f"{name} serves {strategies.at_once(name, 'its --workers')}" for name in strategies.ALL
    if strategies.at_once(name, "its --workers")) + ".\n"

OUTPUT_HELP = """\
output:
  one line per case: its name, 'ok' or 'FAILED: <why>', and the fresh client's fib(20) time during
  the case and after it, in ms; several times when a late one was starved and asked again
  (--server-pid); 'waited' when the strategy serves that client only after the case; 'C13's convoy'
  when, after the case, it took turns for the GIL with thousands of ending threads
  with --json, a last line with one JSON object: tool, python, host, port, strategy, limit_s, cases (a
  list of {case, ok, why, during_s, waited, convoy, after_s}), started_at, ended_at
  exit status 1 if any case failed
"""


def parse_args(argv=None):
    parser = common.make_parser("abuse", DESCRIPTION, OUTPUT_HELP, network=True)
    parser.add_argument("--case", action="append", choices=[one.name for one in CASES], metavar="NAME",
                        help="run only this case (repeatable; default: all): " + ", ".join(one.name for one in CASES))
    parser.add_argument("--strategy", choices=list(strategies.ALL),
                        help="the server's strategy: one that serves a limited number of clients at once "
                        "may serve the fresh client after a case that holds them all")
    common.add_positive(parser, "--workers", common.positive_int, 2,
                        "the server's --workers, for a strategy that serves that many at once")
    parser.add_argument("--server-pid", type=common.positive_int, metavar="PID",
                        help="the server's process (Linux: its /proc): a late fresh request is measured again while the "
                        "server's threads were starved of CPU by the rest of the machine (default: never again)")
    common.add_positive(parser, "--limit", common.positive_float, LIMIT_S, "seconds the fresh client's fib(20) may take")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--markdown", action="store_true", help="print the cases as the docs' table and exit")
    return parser.parse_args(argv)


def check_target(host):
    """Abuse only loopback or a private network (the lab's own): never somebody else's server."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as error:
        raise common.ClientError(common.EXIT_NETWORK, f"cannot resolve {host}: {error.strerror}") from None
    public = sorted(a for a in addresses if not (ipaddress.ip_address(a).is_loopback or ipaddress.ip_address(a).is_private))
    if public:
        raise common.ClientError(common.EXIT_BAD_ARGUMENTS,
                                 f"{host} is {public[0]}: the battery runs only against loopback or a private "
                                 "network (the lab's own servers)")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list or args.markdown:
        common.print_line(markdown() if args.markdown else "\n".join(f"{c.name}: {c.sends}" for c in CASES))
        return common.EXIT_OK
    check_target(args.host)
    enough_files()
    started_at = common.epoch_now()
    common.connect(args.host, args.port, args.timeout).close()  # a clear error if nothing listens
    others = OtherLoad(args.server_pid) if args.server_pid and common.has_proc() else None
    if args.server_pid and not others:
        print(f"abuse: --server-pid: {common.PROC} is missing here: a late request is not asked again if the "
              "machine was busy", file=sys.stderr, flush=True)
    outcomes = []
    for one in [c for c in CASES if not args.case or c.name in args.case]:
        outcome = run_case(one, (args.host, args.port), args.limit, args.strategy, args.workers, others)
        outcomes.append(outcome)
        during = "waited " if outcome.waited else ""
        convoy = " (a thread per connection: C13's convoy)" if outcome.convoy else ""
        during += "/".join(f"{s * 1000:.0f}" for s in outcome.during_s) or "-"
        after = "/".join(f"{s * 1000:.0f}" for s in outcome.after_s) or "-"
        common.print_line(f"{one.name:28} {'ok' if outcome.ok else 'FAILED: ' + outcome.why}  "
                          f"fib({FRESH_N}) during {during} ms, after {after} ms{convoy}")
    if args.json:
        common.print_experiment_json("abuse", started_at, host=args.host, port=args.port, strategy=args.strategy,
                                     limit_s=args.limit, cases=[{**vars(o), "ok": o.ok} for o in outcomes])
    return common.EXIT_OK if all(o.ok for o in outcomes) else common.EXIT_FAILED
