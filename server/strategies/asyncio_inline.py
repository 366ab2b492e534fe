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
FAIR_SHARE = 32  # pipelined requests answered in a row before the loop serves the others: a few ms


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
            answered = 0
            while data := await reader.read(RECV_SIZE):
                async for reply, close in session.replies_async(data):  # computes inline, in the loop
                    writer.write(reply)
                    await writer.drain()  # a client that does not read its replies waits, alone
                    if close:
                        return
                    answered += 1
                    if answered % FAIR_SHARE == 0:
                        # Neither read() of buffered data nor drain() below the high-water mark gives the
                        # loop back: without this, one client's pipeline holds it for seconds.
                        await asyncio.sleep(0)
        finally:
            writer.close()
