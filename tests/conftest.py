"""Fixtures that run the lab's real servers as real processes on loopback."""
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT_S = 20


@dataclass
class Server:
    proc: subprocess.Popen
    host: str
    port: int
    stderr_path: Path

    @property
    def address(self):
        return (self.host, self.port)

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def stop(self, signum=signal.SIGTERM, timeout=5):
        """Signal the server; return (exit code, seconds it took to exit)."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        code = self.proc.wait(timeout=timeout)
        return code, time.monotonic() - started

    def leftover_processes(self, wait_s=2.0):
        """True if any process of the server's process group is still alive after wait_s."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return False
            if time.monotonic() > deadline:
                return True
            time.sleep(0.05)


def launch_server(strategy, *args, stderr_path, preexec_fn=None):
    """Start `python -m server` in its own process group and wait for its 'listening on' line."""
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--strategy", strategy, "--port", "0", *args],
            cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, start_new_session=True,
            preexec_fn=preexec_fn,
        )
    ready, _, _ = select.select([proc.stdout], [], [], STARTUP_TIMEOUT_S)
    line = proc.stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise RuntimeError(f"server did not start: {line!r}; stderr: {Path(stderr_path).read_text()}")
    host, port = line.split()[-1].rsplit(":", 1)
    return Server(proc, host, int(port), Path(stderr_path))


@pytest.fixture
def start_server(tmp_path):
    """start_server(strategy, *extra_args, preexec_fn=None) -> Server.

    Every server is killed, process group and all, at teardown. preexec_fn runs in the child before
    exec, e.g. to pin CPUs or set resource limits."""
    started = []

    def start(strategy, *args, preexec_fn=None):
        server = launch_server(strategy, *args, stderr_path=tmp_path / f"server-{len(started)}.err",
                               preexec_fn=preexec_fn)
        started.append(server)
        return server

    yield start
    for server in started:
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.proc.wait(timeout=10)
        server.proc.stdout.close()
    for server in started:
        # Whatever a test did, a server never prints a traceback: errors are ERR replies or log lines.
        assert "Traceback" not in server.stderr(), server.stderr()
