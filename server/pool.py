"""A process pool that starts warm and stops at once, shared by the pool strategies."""
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

from server.lifecycle import ignore_further_signals


def _worker_init():
    # Ctrl-C in a terminal reaches the whole process group; only the server itself should react.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def process_pool(workers):
    # forkserver: workers never inherit the listening socket or the server's threads.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_worker_init)
    try:
        for future in [pool.submit(os.getpid) for _ in range(workers)]:
            future.result()  # start the workers now, not on the first client's request
        yield pool
    finally:
        ignore_further_signals()
        _terminate(pool)


def _terminate(pool):
    """Stop the workers even in the middle of a fib(40): shutdown(wait=True) would wait for it."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    processes = list((pool._processes or {}).values())  # no public way before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=1)
        if process.is_alive():
            process.kill()
            process.join()
