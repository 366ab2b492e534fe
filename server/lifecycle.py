"""Shutdown and child processes, shared by every strategy.

SIGTERM and SIGINT raise Shutdown in the main thread. It is a SystemExit, so that it interrupts a
blocking accept() or an inline fib alike, and asyncio lets it through instead of keeping it in a task.
(In asyncio's own code it is raised from a callback instead, between two of asyncio's steps.)

The contract: the server exits with code 0 within 2 s of the signal and leaves no process behind,
however busy it is. So the first signal also
- stops the helper processes (pool workers, prefork children) at once, before the strategy unwinds:
  a worker's fib(40) neither outlives the server nor takes the CPUs that the cleanup needs;
- sets one deadline, DEADLINE_S away, for the whole cleanup: a wait of the cleanup ends by then, and
  if the process is still there at the deadline (asyncio cancelling thousands of tasks on a busy
  machine, say), it kills the helpers and leaves at once;
- makes every later SIGTERM or SIGINT do nothing: a second Ctrl-C must not cut the cleanup short.
The cleanup ends in exit_at_once(): nothing is left to wait for but daemon threads blocked in recv(),
thousands of them, and the interpreter's finalization, which would contend for the GIL with every thread
still computing.
"""
import asyncio
import logging
import os
import signal
import sys
import time
from collections import Counter

from server import placement

log = logging.getLogger("server")
DEADLINE_S = 1.0  # from the signal; the rest of the 2 s is the margin for a busy machine to end the process
STOP_GRACE_S = 0.3  # from SIGTERM to SIGKILL for a helper process (a pool worker ends at once on SIGTERM)
DEFER_S = 0.05  # how long a Shutdown deferred in asyncio waits for the loop to raise it (_on_signal)
RESPAWN_DELAY_S = 0.1

_stopping = False
_deadline = None  # time.monotonic() at which the cleanup must be over, once a signal has come
_deferred = False  # a Shutdown is waiting for asyncio's loop to raise it
_listener = None  # see stop_accepting_at_signal()
_helpers = []  # signal_helpers(signum) functions: see stop_with_the_server()


class Shutdown(SystemExit):
    def __init__(self):
        super().__init__(0)


def _on_signal(signum, frame):
    global _deadline, _deferred
    if _stopping:
        return  # a second Ctrl-C must not cut the cleanup short and leave orphans
    ignore_further_signals()
    _deadline = time.monotonic() + DEADLINE_S
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    _signal_helpers(signal.SIGTERM)
    loop = _running_loop()
    if loop is None:
        raise Shutdown()
    _stop_accepting(loop)
    if _in_server_code(frame):
        raise Shutdown()  # an inline fib, say: interrupt it where it is
    # Raised in the middle of asyncio's own code (a transport half-built and counted by its server, say),
    # Shutdown would leave it inconsistent, and asyncio.run's cleanup could wait for ever (for the
    # server's wait_closed()). Raised from a callback, it comes between two of asyncio's steps; if an
    # inline fib keeps the loop from the callback, the alarm raises it in the fib (_on_alarm).
    _deferred = True
    loop.call_soon_threadsafe(_raise_shutdown)
    signal.setitimer(signal.ITIMER_REAL, DEFER_S)


def _raise_shutdown():
    """Raise the Shutdown that _on_signal deferred, once (from asyncio's loop or from the alarm)."""
    global _deferred
    if _deferred:
        _deferred = False
        signal.setitimer(signal.ITIMER_REAL, max(_deadline - time.monotonic(), 1e-3))
        raise Shutdown()


def _in_server_code(frame):
    """Whether the main thread was interrupted in the server's own code (not this module's asyncio
    exception handler, which asyncio may call from a finalizer, where an exception is lost)."""
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return module.startswith("server.") and module != __name__


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _stop_accepting(loop):
    """Take the listening socket out of asyncio's loop. A connection accepted while asyncio.run's cleanup
    cancels the others is never cancelled, and from Python 3.12 on, its transport, collected when the
    loop closes, trips over CPython's gh-109564: a traceback for each."""
    if _listener is not None and _listener.fileno() >= 0:
        loop.remove_reader(_listener.fileno())


def _on_alarm(signum, frame):
    """A Shutdown that asyncio's loop has not raised yet: raise it if the loop is busy in the server's own
    code; else look again shortly. At the deadline, the cleanup has run out of time: kill the helpers and
    leave, whatever the main thread was doing."""
    if _deadline is None:
        return  # not ours: no shutdown has begun
    left = _deadline - time.monotonic()
    if _deferred and left > 1e-3:
        if _in_server_code(frame):
            _raise_shutdown()
        signal.setitimer(signal.ITIMER_REAL, min(DEFER_S, left))
        return
    log.warning("shutdown: the cleanup took more than %.1f s; leaving now", DEADLINE_S)
    _signal_helpers(signal.SIGKILL)
    exit_at_once()


def install_shutdown_handlers():
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _on_signal)
    signal.signal(signal.SIGALRM, _on_alarm)


def stop_accepting_at_signal(listener):
    """The listening socket, which an asyncio loop stops accepting on as soon as the signal comes."""
    global _listener
    _listener = listener


def ignore_shutdown_in_tasks(loop, context):
    """asyncio exception handler: a task ended by Shutdown (or cancelled by it) is no error to log."""
    if not isinstance(context.get("exception"), (Shutdown, asyncio.CancelledError)):
        loop.default_exception_handler(context)


def ignore_further_signals():
    """While cleaning up, a second Ctrl-C must not cut the cleanup short and leave orphans. A flag, not
    a signal mask: a mask would hold in this thread only, the kernel hands a signal to any thread that
    does not block it, and CPython runs the handler in the main thread all the same."""
    global _stopping
    _stopping = True


def stop_with_the_server(signal_helpers):
    """Register signal_helpers(signum): it sends signum to helper processes that must not outlive the
    server. The first SIGTERM or SIGINT calls it with SIGTERM, the deadline with SIGKILL. It runs in the
    signal handler, in the middle of whatever the main thread was doing: it must take no lock."""
    _helpers.append(signal_helpers)


def _signal_helpers(signum):
    for signal_helpers in list(_helpers):
        try:
            signal_helpers(signum)
        except Exception:  # noqa: BLE001 - nothing may stop the shutdown; the next step kills anyway
            pass


def wait_end(grace):
    """When a wait of the cleanup must end: `grace` seconds from now, and never after the deadline."""
    end = time.monotonic() + grace
    return end if _deadline is None else min(end, _deadline)


def exit_at_once():
    """Leave now with code 0, without joining threads or finalizing the interpreter: the cleanup is over,
    or work in flight cannot be interrupted."""
    ignore_further_signals()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, RuntimeError):  # closed, or in the middle of a write we interrupted
            pass
    os._exit(0)


def run_forked(count, target):
    """Fork `count` children that each run target(); keep `count` alive until shutdown, then stop them."""
    children = {}  # pid -> the CPU it is placed on (None: placement free)
    stop_with_the_server(lambda signum: [send_signal(pid, signum) for pid in list(children)])
    try:
        while True:
            while len(children) < count:
                cpu = child_cpu(children.values())
                children[_fork(target, cpu)] = cpu
            pid, status = os.wait()
            if pid in children:
                del children[pid]
                log.warning("child %d exited (%s); starting another", pid, _describe(status))
                time.sleep(RESPAWN_DELAY_S)  # a child that keeps failing must not make a fork storm
    finally:
        ignore_further_signals()
        _stop(set(children))


# A strategy that forks (prefork, the process pools) declares this as its NEEDS: Linux and macOS have
# os.fork, Windows does not, and there its servers run in the lab's containers (docs/hosts.md).
NEEDS_FORK = None if hasattr(os, "fork") else "os.fork, which Windows lacks (run it in the lab's containers)"

def child_cpu(taken):
    """The CPU for a new child with placement fixed: the pool's CPU with the fewest children (None: free)."""
    cpus = placement.pool_cpus()
    return placement.fewest(sorted(cpus), Counter(taken)) if cpus else None


def _fork(target, cpu=None):
    pid = os.fork()
    if pid == 0:
        _helpers.clear()  # the parent's: a child stops itself, not its siblings
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
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
    """SIGTERM, SIGKILL after the grace, and reap. A reaped child leaves the set at once: its pid may be
    reused, and the deadline signals whatever pids the set holds."""
    for pid in list(children):
        send_signal(pid, signal.SIGTERM)
    end = wait_end(STOP_GRACE_S)
    while children and time.monotonic() < end:
        children.difference_update([pid for pid in children if _reaped(pid)])
        time.sleep(0.01)
    for pid in list(children):
        send_signal(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        children.discard(pid)


def _reaped(pid):
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def send_signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _describe(status):
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
