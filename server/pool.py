"""The pools. A process pool that starts warm, replaces itself if a worker dies, and stops at once;
an interpreter pool (Python >= 3.14) that starts warm and stops at once."""
import concurrent.futures
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from server import placement
from server.lifecycle import (STOP_GRACE_S, Shutdown, exit_at_once, ignore_further_signals, send_signal,
                              stop_with_the_server, wait_end)

log = logging.getLogger("server")


def _worker_init(cpus):
    placement.spread(cpus)  # workers compute: on all the server's CPUs, not on the main thread's one
    # Ctrl-C in a terminal reaches the whole process group; only the server itself should react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class Pool(Executor):
    """A ProcessPoolExecutor's submit(), which is all asyncio's run_in_executor needs. The requests in
    flight when a worker dies fail (their clients get an ERR); the next submit starts a fresh executor
    instead of failing forever. Once shutdown has begun, no executor starts again, and a request gets a
    future that is never done: its thread (or task) waits for the exit, instead of answering ERR to each
    of a pipeline's requests in a loop that would only compete with the cleanup for the GIL."""

    def __init__(self, workers):
        self.workers = workers
        self.replacing = threading.Lock()
        self.stopping = False
        self.executors = set()  # started and not terminated yet: whose workers a shutdown signal stops
        stop_with_the_server(self._signal_workers)
        self.executor = self._start()

    def _start(self):
        # forkserver: workers never inherit the listening socket or the server's threads.
        executor = ProcessPoolExecutor(self.workers, initializer=_worker_init, initargs=(placement.pool_cpus(),),
                                       mp_context=multiprocessing.get_context("forkserver"))
        self.executors.add(executor)
        return _warm(executor, self.workers)

    def submit(self, fn, *args):
        if self.stopping:
            return Future()
        executor = self.executor
        try:
            return executor.submit(fn, *args)
        except BrokenProcessPool:
            pass
        with self.replacing:
            if self.stopping:
                return Future()
            if self.executor is executor:  # the first thread to notice replaces it
                log.warning("a pool worker died; starting a new pool")
                self._terminate(executor)
                self.executor = self._start()
        return self.executor.submit(fn, *args)

    def stop(self):
        self.stopping = True
        with self.replacing:  # a replacement under way ends first; its workers are stopped too
            for executor in list(self.executors):
                self._terminate(executor)
        _stop_multiprocessing_helpers()

    def _terminate(self, executor):
        _terminate(executor)
        self.executors.discard(executor)

    def _signal_workers(self, signum):
        """At the shutdown signal (in its handler): no more replacements, and every worker gets signum now,
        not once the strategy has unwound."""
        self.stopping = True
        for executor in list(self.executors):
            for process in list((executor._processes or {}).values()):  # no public way before 3.14
                send_signal(process.pid, signum)


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
    executor = _warm(concurrent.futures.InterpreterPoolExecutor(
        workers, initializer=placement.spread, initargs=(placement.pool_cpus(),)), workers)
    try:
        yield executor
    except Shutdown:
        # Nothing can interrupt a fib running in an interpreter, and exit would wait for its thread.
        exit_at_once()


def _warm(executor, workers):
    for future in [executor.submit(os.getpid) for _ in range(workers)]:
        future.result()  # start the workers now, not on the first client's request
    return executor


def _stop_multiprocessing_helpers():
    """The forkserver and the resource tracker would end by themselves once the server has gone, then
    wait for init to reap them (as zombies, still in the process group: seconds where init reaps slowly).
    Stopped and reaped here, they are gone before the server exits. The forkserver first: it ends once
    no worker is left, and it holds the resource tracker open."""
    from multiprocessing import forkserver, resource_tracker
    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        stop = getattr(helper, "_stop", None)  # no public way; without it, they end as they did before
        if stop:
            stop()


def _terminate(executor):
    """Stop the workers even in the middle of a fib(40): shutdown(wait=True) would wait for it. SIGTERM
    ends a worker at once (_worker_init); one that is still there after the grace is killed."""
    if hasattr(executor, "terminate_workers"):  # Python >= 3.14
        executor.terminate_workers()
        return
    processes = list((executor._processes or {}).values())  # no public way before 3.14
    manager = executor._executor_manager_thread  # shutdown(wait=False) forgets it
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    end = wait_end(STOP_GRACE_S)  # one grace for them all, not one each
    for process in processes:
        process.join(timeout=max(0.0, end - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    # The manager thread closes the pool's wake-up pipe as it ends; at exit, concurrent.futures writes
    # to that pipe unless closed, and a thread still closing it races the exit into a traceback (EBADF,
    # Python 3.11).
    if manager is not None:
        manager.join(timeout=max(0.0, wait_end(STOP_GRACE_S) - time.monotonic()))
