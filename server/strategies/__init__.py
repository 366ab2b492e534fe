"""The strategies: each module in this package is one, found here by its NAME.

A strategy module has serve(listener, service) and declares
  NAME          the strategy's name, as --strategy takes it (written nowhere else in the lab's code);
  USES          the options it honours (workers, threshold);
  MULTICORE     whether it could use more than one CPU (the runner gives it the pool's CPUs);
  PYTHON_SINCE  (optional) the first Python that can run it, and NEEDS: what this Python lacks, or None;
  AT_ONCE       (optional) how many clients it serves at once, a number or "workers"; any number if absent;
  THREAD_PER_CONNECTION  (optional) True if each client has a thread of its own (server.threads).
"""
import pkgutil
from importlib import import_module

ALL = {module.NAME: module for module in sorted(
    (import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)),
    key=lambda module: module.NAME)}


def load(name):
    return ALL[name]


def key(strategy):
    """A strategy's name, given its module or its name."""
    return getattr(strategy, "NAME", strategy)


def runs_on(strategy, version):
    """Whether a Python of `version` ((3, 13)) can run the strategy; None (unknown) runs every one."""
    since = getattr(load(key(strategy)), "PYTHON_SINCE", None)
    return version is None or since is None or tuple(version) >= since


def at_once(strategy, workers):
    """How many clients the strategy serves at once with `workers` workers, or None for any number."""
    count = getattr(load(key(strategy)), "AT_ONCE", None)
    return workers if count == "workers" else count


def thread_per_connection(strategy):
    return getattr(load(key(strategy)), "THREAD_PER_CONNECTION", False)


def summary(strategy):
    """The first line of the strategy's docstring: 'threaded: a thread per connection (C2, C4, C6). ...'"""
    return load(key(strategy)).__doc__.strip().splitlines()[0]
