"""A process pool that starts warm, replaces itself if a worker dies, and stops at once."""
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from server.lifecycle import ignore_further_signals

log = logging.getLogger("server")


def _worker_init():
    # Ctrl-C in a terminal reaches the whole process group; only the server itself should react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Pool:
    """A ProcessPoolExecutor's submit(). The requests in flight when a worker dies fail (their clients
    get an ERR); the next submit starts a fresh executor instead of failing forever."""

    def __init__(self, workers):
        self.workers = workers
        self.replacing = threading.Lock()
        self.executor = self._start()

    def _start(self):
        # forkserver: workers never inherit the listening socket or the server's threads.
        executor = ProcessPoolExecutor(self.workers, initializer=_worker_init,
                                       mp_context=multiprocessing.get_context("forkserver"))
        for future in [executor.submit(os.getpid) for _ in range(self.workers)]:
            future.result()  # start the workers now, not on the first client's request
        return executor

    def submit(self, fn, *args):
        executor = self.executor
        try:
            return executor.submit(fn, *args)
        except BrokenProcessPool:
            pass
        with self.replacing:
            if self.executor is executor:  # the first thread to notice replaces it
                log.warning("a pool worker died; starting a new pool")
                _terminate(executor)
                self.executor = self._start()
        return self.executor.submit(fn, *args)

    def stop(self):
        _terminate(self.executor)


@contextmanager
def process_pool(workers):
    pool = Pool(workers)
    try:
        yield pool
    finally:
        ignore_further_signals()
        pool.stop()


def _terminate(executor):
    """Stop the workers even in the middle of a fib(40): shutdown(wait=True) would wait for it."""
    if hasattr(executor, "terminate_workers"):  # Python >= 3.14
        executor.terminate_workers()
        return
    processes = list((executor._processes or {}).values())  # no public way before 3.14
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
