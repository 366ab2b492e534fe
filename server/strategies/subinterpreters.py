"""subinterpreters: process-pool's listing with a pool of interpreters in one process (PEP 734).

Each interpreter has its own GIL, so requests compute in parallel without a process each: Python >= 3.14.
"""
import concurrent.futures

from server.pool import interpreter_pool
from server.strategies import process_pool

USES = {"workers"}
NEEDS = (None if hasattr(concurrent.futures, "InterpreterPoolExecutor")
         else "Python 3.14 or newer (InterpreterPoolExecutor, PEP 734)")


def serve(listener, service):
    process_pool.serve(listener, service, start_pool=interpreter_pool)
