"""A thread per connection, shared by the thread-based strategies."""
import logging
from threading import Thread

log = logging.getLogger("server")


def start_thread(handle, client, addr, *args):
    """Serve one client in a daemon thread. If the OS refuses another thread (C13's limit), turn
    that one client away instead of letting the error end the accept loop and the server."""
    try:
        Thread(target=handle, args=(client, addr, *args), daemon=True).start()
    except RuntimeError as e:
        log.warning("turned away %s:%s: %s", addr[0], addr[1], e)
        client.close()
