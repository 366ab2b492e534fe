"""generators: coroutines as plain generators on a small select-based scheduler (the next installment).

Like asyncio, a long fib computed inline blocks every other client.
"""
from server.listener import accept
from server.scheduler import Scheduler
from server.service import RECV_SIZE

NAME = "generators"
USES = set()
MULTICORE = False


def serve(listener, service):
    scheduler = Scheduler()
    scheduler.spawn(accept_forever(scheduler, listener, service))
    scheduler.run()


def accept_forever(scheduler, listener, service):
    listener.setblocking(False)
    while True:
        yield "recv", listener
        try:
            client, addr = accept(listener)
        except BlockingIOError:  # the client gave up between select() and accept()
            continue
        client.setblocking(False)
        scheduler.spawn(handle(client, addr, service))


def handle(client, addr, service):
    with client, service.session(addr) as session:
        while True:
            yield "recv", client
            data = client.recv(RECV_SIZE)
            if not data:
                return
            for reply, close in session.replies(data):
                while reply:
                    yield "send", client
                    reply = reply[client.send(reply):]
                if close:
                    return
