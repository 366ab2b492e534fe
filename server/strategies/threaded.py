"""threaded: a thread per connection (C2, C4, C6). Under the GIL only one of them computes at a time."""
from server.listener import accept
from server.threads import start_thread

NAME = "threaded"
USES = set()
MULTICORE = True  # it could, but under the GIL it does not (C4, C6)
THREAD_PER_CONNECTION = True


def serve(listener, service):
    while True:
        client, addr = accept(listener)
        start_thread(service.handle, client, addr)  # a thread per connection
