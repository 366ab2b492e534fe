"""subinterpreters: the process pool's listing with a pool of interpreters in one process (PEP 734).

Each interpreter has its own GIL, so requests compute in parallel without a process each.
"""
import concurrent.futures
import sys

from server.pool import interpreter_pool
from server.strategies import process_pool

NAME = "subinterpreters"
USES = {"workers"}
MULTICORE = True
THREAD_PER_CONNECTION = True
PYTHON_SINCE = (3, 14)  # InterpreterPoolExecutor
NEEDS = (None if hasattr(concurrent.futures, "InterpreterPoolExecutor")
         else f"Python {'.'.join(map(str, PYTHON_SINCE))} or newer (InterpreterPoolExecutor, PEP 734)")


def serve(listener, service):
    process_pool.serve(listener, service, start_pool=interpreter_pool)
