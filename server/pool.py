"""The pools. A process pool that starts warm, replaces itself if a worker dies, and stops at once;
an interpreter pool (Python >= 3.14) that starts warm and stops at once."""
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from server.lifecycle import Shutdown, exit_at_once, ignore_further_signals

log = logging.getLogger("server")


def _worker_init():
    # Ctrl-C in a terminal reaches the whole process group; only the server itself should react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Pool(Executor):
    """A ProcessPoolExecutor's submit(), which is all asyncio's run_in_executor needs. The requests in
    flight when a worker dies fail (their clients get an ERR); the next submit starts a fresh executor
    instead of failing forever."""

    def __init__(self, workers):
        self.workers = workers
        self.replacing = threading.Lock()
        self.executor = self._start()

    def _start(self):
        # forkserver: workers never inherit the listening socket or the server's threads.
        executor = ProcessPoolExecutor(self.workers, initializer=_worker_init,
                                       mp_context=multiprocessing.get_context("forkserver"))
        return _warm(executor, self.workers)

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


@contextmanager
def interpreter_pool(workers):
    """An InterpreterPoolExecutor (PEP 734): each interpreter has its own GIL. Its workers import the
    server's modules afresh, from the module search path (and PYTHONPATH) that they inherit."""
    executor = _warm(concurrent.futures.InterpreterPoolExecutor(workers), workers)
    try:
        yield executor
    except Shutdown:
        # Nothing can interrupt a fib running in an interpreter, and exit would wait for its thread.
        exit_at_once()


def _warm(executor, workers):
    for future in [executor.submit(os.getpid) for _ in range(workers)]:
        future.result()  # start the workers now, not on the first client's request
    return executor


def _terminate(executor):
    """Stop the workers even in the middle of a fib(40): shutdown(wait=True) would wait for it."""
    if hasattr(executor, "terminate_workers"):  # Python >= 3.14
        executor.terminate_workers()
        return
    processes = list((executor._processes or {}).values())  # no public way before 3.14
    manager = executor._executor_manager_thread  # shutdown(wait=False) forgets it
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
    # The manager thread closes the pool's wake-up pipe as it ends; at exit, concurrent.futures writes
    # to that pipe unless closed, and a thread still closing it races the exit into a traceback (EBADF,
    # Python 3.11).
    if manager is not None:
        manager.join(timeout=1)
