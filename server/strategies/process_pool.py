"""process-pool: a thread per connection; every request is computed in a process pool (C7, C8)."""
from server.lifecycle import NEEDS_FORK
from server.listener import accept
from server.pool import process_pool
from server.threads import start_thread

NAME = "process-pool"
USES = {"workers"}
MULTICORE = True
NEEDS = NEEDS_FORK
THREAD_PER_CONNECTION = True


def serve(listener, service, start_pool=process_pool):
    with start_pool(service.workers) as pool:

        def compute(request):
            return pool.submit(service.reply, request).result()

        while True:
            client, addr = accept(listener)
            start_thread(service.handle, client, addr, compute)
