"""Shutdown and child processes, shared by every strategy.

SIGTERM and SIGINT raise Shutdown in the main thread. It is a SystemExit, so that it interrupts a
blocking accept() or an inline fib alike, and asyncio lets it through instead of keeping it in a task.
"""
import asyncio
import logging
import os
import signal
import sys
import time

log = logging.getLogger("server")
STOP_GRACE_S = 1.0
RESPAWN_DELAY_S = 0.1


class Shutdown(SystemExit):
    def __init__(self):
        super().__init__(0)


def _raise_shutdown(signum, frame):
    raise Shutdown()


def install_shutdown_handlers():
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _raise_shutdown)


def ignore_shutdown_in_tasks(loop, context):
    """asyncio exception handler: a task ended by Shutdown (or cancelled by it) is no error to log."""
    if not isinstance(context.get("exception"), (Shutdown, asyncio.CancelledError)):
        loop.default_exception_handler(context)


def ignore_further_signals():
    """While cleaning up, a second Ctrl-C must not cut the cleanup short and leave orphans."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


def exit_at_once():
    """Leave now, without joining threads: for work in flight that nothing can interrupt."""
    ignore_further_signals()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_forked(count, target):
    """Fork `count` children that each run target(); keep `count` alive until shutdown, then stop them."""
    children = set()
    try:
        while True:
            while len(children) < count:
                children.add(_fork(target))
            pid, status = os.wait()
            if pid in children:
                children.discard(pid)
                log.warning("child %d exited (%s); starting another", pid, _describe(status))
                time.sleep(RESPAWN_DELAY_S)  # a child that keeps failing must not make a fork storm
    finally:
        ignore_further_signals()
        _stop(children)


def _fork(target):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            target()
        except Shutdown:
            pass
        except BaseException:
            log.exception("child %d failed", os.getpid())
            code = 1
        finally:
            # Never return into the parent's code: leave at once, without its cleanup.
            os._exit(code)
    return pid


def _stop(children):
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    while children and time.monotonic() < deadline:
        children = {pid for pid in children if not _reaped(pid)}
        time.sleep(0.01)
    for pid in children:
        _signal(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def _reaped(pid):
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
