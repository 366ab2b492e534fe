"""The listening socket and a robust accept(), shared by every strategy."""
import errno
import logging
import socket
import time

log = logging.getLogger("server")
BACKLOG = 4096  # the article used 5; C13 opens thousands of connections at once
# Failures that concern one connection or a passing shortage, not the server itself.
TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.ECONNABORTED, errno.EPROTO}
RETRY_DELAY_S = 0.1


def listen(host, port):
    return socket.create_server((host, port), backlog=BACKLOG)


def accept(listener):
    """listener.accept(), but running out of file descriptors is logged and retried, not fatal."""
    while True:
        try:
            return listener.accept()
        except OSError as e:
            if e.errno not in TRANSIENT:
                raise
            log.warning("accept failed: %s; retrying", e.strerror)
            time.sleep(RETRY_DELAY_S)
