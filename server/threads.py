"""A thread per connection, shared by the thread-based strategies."""
import logging
import socket
from threading import Thread

from server import placement

log = logging.getLogger("server")


def start_thread(handle, client, addr, *args):
    """Serve one client in a daemon thread. If the OS refuses another thread (C13's limit), turn
    that one client away instead of letting the error end the accept loop and the server."""
    if already_gone(client):
        client.close()
        return
    try:
        Thread(target=placed, args=(handle, client, addr, *args), daemon=True).start()
    except RuntimeError as e:
        log.warning("turned away %s:%s: %s", addr[0], addr[1], e)
        client.close()


def placed(handle, *args):
    with placement.connection():  # on the server's CPU that serves the fewest connections
        handle(*args)


def already_gone(client):
    """Whether the client closed or reset the connection before it was accepted: in a flood of connects,
    a thread for each would only end at once, and thousands of them take turns for the GIL (C13)."""
    try:
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:  # open, and nothing sent yet
        return False
    except ConnectionError:
        return True
