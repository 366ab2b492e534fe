"""asyncio: coroutines on one event loop, fib computed inline (C13).

Thousands of idle clients cost little, but one long fib blocks every other client until it is done.
"""
import asyncio

from server.lifecycle import ignore_shutdown_in_tasks
from server.listener import BACKLOG
from server.service import RECV_SIZE

USES = set()


def serve(listener, service):
    asyncio.run(serve_forever(listener, service))


async def serve_forever(listener, service):
    asyncio.get_running_loop().set_exception_handler(ignore_shutdown_in_tasks)
    server = await asyncio.start_server(lambda r, w: handle(r, w, service), sock=listener, backlog=BACKLOG)
    await server.serve_forever()


async def handle(reader, writer, service):
    with service.session(writer.get_extra_info("peername")) as session:
        try:
            while data := await reader.read(RECV_SIZE):
                for reply, close in session.replies(data):  # computes inline, in the loop
                    writer.write(reply)
                    await writer.drain()
                    if close:
                        return
        finally:
            writer.close()
