"""process-pool: a thread per connection; every request is computed in a process pool (C7, C8)."""
from threading import Thread

from server.listener import accept
from server.pool import process_pool

USES = {"workers"}


def serve(listener, service):
    with process_pool(service.workers) as pool:

        def compute(request):
            return pool.submit(service.reply, request).result()

        while True:
            client, addr = accept(listener)
            Thread(target=service.handle, args=(client, addr, compute), daemon=True).start()
