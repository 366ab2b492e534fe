"""asyncio: coroutines on one event loop, fib computed inline (C13).

Thousands of idle clients cost little, but one long fib blocks every other client until it is done.
"""
import asyncio

from server.lifecycle import ignore_shutdown_in_tasks
from server.listener import BACKLOG
from server.service import RECV_SIZE

NAME = "asyncio"
USES = set()
MULTICORE = False


def serve(listener, service, compute=None):
    asyncio.run(serve_forever(listener, service, compute))


async def serve_forever(listener, service, compute):
    asyncio.get_running_loop().set_exception_handler(ignore_shutdown_in_tasks)
    server = await asyncio.start_server(lambda r, w: handle(r, w, service, compute), sock=listener,
                                        backlog=BACKLOG)
    await server.serve_forever()


async def handle(reader, writer, service, compute):
    with service.session(writer.get_extra_info("peername"), compute) as session:
        try:
            while data := await reader.read(RECV_SIZE):
                async for reply, close in session.replies_async(data):  # computes inline, in the loop
                    writer.write(reply)
                    await writer.drain()
                    if close:
                        return
        finally:
            writer.close()
