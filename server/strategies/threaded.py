"""threaded: a thread per connection (C2, C4, C6). Under the GIL only one of them computes at a time."""
from threading import Thread

from server.listener import accept

USES = set()


def serve(listener, service):
    while True:
        client, addr = accept(listener)
        Thread(target=service.handle, args=(client, addr), daemon=True).start()
