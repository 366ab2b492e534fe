"""The limit on open files (RLIMIT_NOFILE), raised at start by every lab process that holds connections.

Every connection is a file descriptor. Docker Engine >= 25 with containerd 2 starts every container with
a soft limit of 1024 (the hard limit is 524288), and so do many shells and systemd units: a threaded or
asyncio server then fails to accept past about 1,020 connections ("Too many open files"), though the
kernel would allow far more. The soft limit is only a default that a process may raise up to the hard
limit by itself, and Go programs have done so at start since Go 1.19; the lab's servers, clients and
Locust users do the same here. Windows has no such limit (nor the resource module): there this does nothing.
"""
try:
    import resource
except ImportError:  # Windows, where the lab's host side (python -m lab) runs too: docs/hosts.md
    resource = None

# What a process opens besides its connections: stdin/stdout/stderr, the listener, the selector, a pool's
# pipes and processes, Python's own imports.
SPARE = 200
# The most connections the lab holds to one server at once: C13's full run (lab/experiments/
# idle_connections.py). A server warns if its hard limit is below that and SPARE.
MOST_CONNECTIONS = 10000


def raise_open_files(needed=0):
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, and return None if that allows `needed`
    open files; else return one line that says what is allowed, what is needed and how to raise the hard
    limit (the caller logs it, or fails with it). Never raises. Children, forked or started afterwards,
    inherit the raised limit.
    """
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (macOS) cannot be the soft one: ask for what is needed only.
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, needed)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # e.g. macOS caps the soft limit below an unlimited hard one: the check below says so
    if soft >= needed:
        return None
    hard_text = "unlimited" if hard == resource.RLIM_INFINITY else f"{hard:,}"
    return (f"{needed:,} open files needed, but this process may open only {soft:,} (hard limit {hard_text}, "
            f"ulimit -Hn): connections past that fail with 'Too many open files'; raise the hard limit, e.g. "
            f"docker run --ulimit nofile={needed}:{needed}, ulimits: nofile in compose, or ulimit -Hn {needed} "
            "as root")
