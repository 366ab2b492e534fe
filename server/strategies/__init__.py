"""The strategies by name. Each module has serve(listener, service) and USES: the options it honours."""
from importlib import import_module

MODULES = {
    "sequential": "sequential",
    "threaded": "threaded",
    "process-pool": "process_pool",
    "threshold-pool": "threshold_pool",
    "prefork": "prefork",
    "asyncio": "asyncio_inline",
    "generators": "generators",
}


def load(name):
    return import_module(f"{__name__}.{MODULES[name]}")
