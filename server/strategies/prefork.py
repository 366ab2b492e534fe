"""prefork: N processes forked after listen(), all accepting on one socket (C10).

No IPC at all, but only N clients are served at once: N long requests lock everyone else out.
"""
from server.lifecycle import NEEDS_FORK, run_forked
from server.listener import accept

NAME = "prefork"
USES = {"workers"}
MULTICORE = True
NEEDS = NEEDS_FORK
AT_ONCE = "workers"  # a child serves one client at a time (C10)


def serve(listener, service):
    def accept_forever():
        while True:
            client, addr = accept(listener)
            service.handle(client, addr)

    run_forked(service.workers, accept_forever)
