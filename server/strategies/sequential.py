"""sequential: one client at a time, the article's first listing (C1)."""
from server.listener import accept

NAME = "sequential"
USES = set()
MULTICORE = False
AT_ONCE = 1  # the next client waits in the backlog (C1)


def serve(listener, service):
    while True:
        client, addr = accept(listener)
        service.handle(client, addr)  # the next client waits in the backlog until this one leaves
