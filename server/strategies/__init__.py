"""The strategies: each module in this package is one, found here by its NAME. This docstring is the
contract a strategy module keeps (docs/development.md#adding-a-strategy says what else a new one needs).

A strategy module declares
  NAME          the strategy's name, as --strategy takes it (written nowhere else in the lab's code);
  USES          the options it honours (workers, threshold); the server refuses the others;
  MULTICORE     whether it could use more than one CPU: compose and the runner give it the pool's CPUs,
                the others the server's (server/layouts.py);
  PYTHON_SINCE  (optional) the first Python that can run it, as (3, 14): the plan leaves its cells out
                on an older one;
  NEEDS         (optional) what this Python lacks to run it, or None: the server then refuses to start,
                with exit status 2, before it binds its port;
  AT_ONCE       (optional) how many clients it serves at once, a number or "workers"; any number if absent;
  THREAD_PER_CONNECTION  (optional) True if each client has a thread of its own (server.threads);
  serve(listener, service)  accept, hand off, compute, reply, with what server/ shares (the listener,
                the per-client session, the pool, shutdown).
Its docstring's first line is its summary: 'NAME: what it does (the claims it shows).'
"""
import pkgutil
from importlib import import_module

from server.strategies import (asyncio_inline, asyncio_pool, generators, prefork, process_pool, sequential, threaded,
                               threshold_pool)

ALL = {module.NAME: module for module in sorted(
    (import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)),
    key=lambda module: module.NAME)}

# The compose lab's servers, in the order of their published ports: server-NAME answers at
# ${LAB_PORT_PREFIX}N on the lab's host, N its place here, so that a port stays where a workshop's notes
# say it is. It holds every strategy that the lab image's Python can run, and no other (its server
# would refuse to start); compose.yaml, .env, the README and docs/docker.md follow it, and
# tests/test_compose_settings.py checks that they do.
PUBLISHED = (sequential, threaded, process_pool, threshold_pool, prefork, asyncio_inline, generators, asyncio_pool)


def load(name):
    return ALL[name]


def key(strategy):
    """A strategy's name, given its module or its name."""
    return getattr(strategy, "NAME", strategy)


def runnable():
    """The names of the strategies this Python can run (no NEEDS)."""
    return [name for name, module in ALL.items() if not getattr(module, "NEEDS", None)]


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
