"""The strategies by name. Each module has serve(listener, service) and USES: the options it honours;
a module that this Python cannot run has NEEDS: what it lacks (the server then refuses to start)."""
from importlib import import_module

MODULES = {
    "sequential": "sequential",
    "threaded": "threaded",
    "process-pool": "process_pool",
    "threshold-pool": "threshold_pool",
    "prefork": "prefork",
    "asyncio": "asyncio_inline",
    "asyncio-pool": "asyncio_pool",
    "generators": "generators",
    "subinterpreters": "subinterpreters",
}


def load(name):
    return import_module(f"{__name__}.{MODULES[name]}")
