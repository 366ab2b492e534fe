"""python -m clients NAME SERVICE [ARGS...]: run a network client against a server by name.

The entry point of compose's `clients` service (docker compose run --rm clients perf2 server-threaded),
so that the article's clients run inside the lab's network, at bridge speed, without a published port.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys

from clients import common

# The clients that talk to a server (make_parser(network=True)); tests/test_clients.py checks the list.
NETWORK_CLIENTS = ("perf1", "perf2", "request", "hold_connections", "abuse")

USAGE = "usage: python -m clients NAME SERVICE [ARGS...]"
HELP = f"""{USAGE}

Runs clients.NAME --host SERVICE ARGS..., on port {common.DEFAULT_PORT} unless ARGS give --port.
Inside the compose network SERVICE is a server's service name, e.g. server-threaded:

  docker compose run --rm clients perf2 server-threaded --duration 10
  docker compose run --rm clients request server-threaded 30

NAME: {", ".join(NETWORK_CLIENTS)}. Each one's own options: python -m clients NAME SERVICE --help.
Start the lab, or that one server, first (docker compose up -d): this service starts none.
Exit status: the client's own (its --help lists them); 2 for an unknown NAME or no SERVICE.
"""


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(HELP, end="")
        return common.EXIT_OK
    if not argv:
        return error("name a client and a server")
    name, *rest = argv
    if name not in NETWORK_CLIENTS:
        return error(f"unknown client {name!r} (choose from {', '.join(NETWORK_CLIENTS)})")
    if not rest or rest[0].startswith("-"):
        return error(f"{name}: the server's service name comes first, e.g. server-threaded")
    service, *args = rest
    module = importlib.import_module(f"clients.{name}")
    argv = ["--host", service, *args]
    parse_in_one_line(module, argv)
    common.run_tool(name, lambda: module.main(argv))


def parse_in_one_line(module, argv: list[str]) -> None:
    """The client's own argument errors as one line: argparse would print its usage before them."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            module.parse_args(argv)
    except SystemExit as exit:
        if exit.code:  # --help exits 0, its text already on stdout
            print(stderr.getvalue().strip().splitlines()[-1], file=sys.stderr)
        raise


def error(message: str) -> int:
    print(f"clients: error: {message}; {USAGE}", file=sys.stderr)
    return common.EXIT_BAD_ARGUMENTS


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
