"""asyncio-pool: the asyncio server, with long requests (n > threshold) awaited from a process pool.

A long fib no longer blocks the loop: it runs in a worker while the loop serves everyone else.
"""
import asyncio

from server.lifecycle import NEEDS_FORK
from server.pool import process_pool
from server.strategies import asyncio_inline

NAME = "asyncio-pool"
USES = {"workers", "threshold"}
MULTICORE = True
NEEDS = NEEDS_FORK


def serve(listener, service):
    with process_pool(service.workers) as pool:

        async def compute(request):
            if service.is_long(request):
                return await asyncio.get_running_loop().run_in_executor(pool, service.reply, request)
            return service.reply(request)  # short ones inline, as in asyncio

        asyncio_inline.serve(listener, service, compute)
