"""threshold-pool: short requests inline, long ones (n > threshold) in a process pool (C9)."""
from server.lifecycle import NEEDS_FORK
from server.listener import accept
from server.pool import process_pool
from server.threads import start_thread

NAME = "threshold-pool"
USES = {"workers", "threshold"}
MULTICORE = True
NEEDS = NEEDS_FORK
THREAD_PER_CONNECTION = True


def serve(listener, service):
    with process_pool(service.workers) as pool:

        def compute(request):
            if service.is_long(request):
                return pool.submit(service.reply, request).result()
            return service.reply(request)

        while True:
            client, addr = accept(listener)
            start_thread(service.handle, client, addr, compute)
