"""A tiny generator-based scheduler, the coroutine idea without asyncio.

A task is a generator that yields ("recv", sock) or ("send", sock) to wait until that socket is
readable or writable, as in Beazley's follow-up installment. Runs until Shutdown.
"""
import logging
import selectors
from collections import deque

log = logging.getLogger("server")
EVENTS = {"recv": selectors.EVENT_READ, "send": selectors.EVENT_WRITE}


class Scheduler:
    def __init__(self):
        self.ready = deque()
        self.selector = selectors.DefaultSelector()

    def spawn(self, task):
        self.ready.append(task)

    def run(self):
        while True:
            while not self.ready:
                for key, _ in self.selector.select():
                    self.selector.unregister(key.fileobj)
                    self.ready.append(key.data)
            task = self.ready.popleft()
            try:
                why, sock = next(task)
            except StopIteration:
                continue
            except Exception:
                # One task's bug ends that task, never the loop that serves everybody else.
                log.exception("task failed")
                continue
            self.selector.register(sock, EVENTS[why], task)
