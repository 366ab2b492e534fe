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

from lab.pythons import offline_base

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


def pytest_terminal_summary(terminalreporter):
    """One line for the slowest shutdown that any test recorded with record_property("shutdown_s", seconds),
    passed or failed, so that a run shows how close it came to the 2 s contract; and each line a test
    recorded with record_property("summary", text): what it measured (versions, times), for CI's log."""
    times, summary = {}, []
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) != "call":
                continue
            for name, value in getattr(report, "user_properties", ()):
                if name == "shutdown_s":
                    times[report.nodeid] = max(value, times.get(report.nodeid, value))
                elif name == "summary":
                    summary.append(value)
    for line in summary:
        terminalreporter.write_line(line)
    if times:
        worst = max(times, key=times.get)
        terminalreporter.write_line(f"shutdown after SIGTERM/SIGINT: worst {times[worst]:.2f} s over "
                                    f"{len(times)} tests ({worst})")


IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
OFFLINE_BASE = offline_base()  # scripts/ci-prepare builds it; None where none can be built
LAB_IMAGE = "concurrency-lab:latest"
BUILD_TIMEOUT_S = 900  # a cold build takes 1-2 min here


def unavailable(reason):
    """Docker tests fail under CI (they must run there) and skip elsewhere, saying why."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}; scripts/ci-prepare sets the machine up", pytrace=False)
    pytest.skip(reason)


def run(cmd, timeout, env=None, check=False):
    """A command with a time limit; a timeout or (with check) a failure fails the test with its output."""
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n{out[-3000:]}", pytrace=False)
    if check and proc.returncode != 0:
        pytest.fail(f"exit {proc.returncode}: {' '.join(map(str, cmd))}\n"
                    f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    return proc


def clean_env():
    """The caller's environment without settings that would change the compose file's meaning."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("LAB_", "COMPOSE_")) and k != "BASE_IMAGE"}


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker Engine and Compose v2; returns the engine's CPU count."""
    try:
        server = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        unavailable(f"the docker CLI does not answer: {e}")
    if server.returncode != 0:
        unavailable(f"no Docker Engine: {server.stderr.strip()[:300]}")
    try:
        compose = subprocess.run(["docker", "compose", "version", "--short"],
                                 capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        unavailable("`docker compose version` hangs")
    if compose.returncode != 0 or not compose.stdout.strip().lstrip("v").startswith(("2", "3", "4", "5")):
        unavailable("Compose v2 is missing (`docker compose version` fails): run scripts/install-compose")
    return int(run(["docker", "info", "--format", "{{.NCPU}}"], 30, check=True).stdout.strip())


@dataclass
class LabImage:
    name: str
    base: str
    base_reason: str
    build_seconds: float
    build_output: str


@pytest.fixture(scope="session")
def lab_image(docker_engine):
    """The lab image, built once per session with `docker compose build`, so every Docker test runs
    today's code: from BASE_IMAGE if set, else the offline base if present, else python:3.13-slim."""
    if os.environ.get("BASE_IMAGE"):
        base, reason = os.environ["BASE_IMAGE"], "BASE_IMAGE from the environment"
    elif OFFLINE_BASE and run(["docker", "image", "inspect", OFFLINE_BASE], 30).returncode == 0:
        base, reason = OFFLINE_BASE, "the offline base image (scripts/build-offline-base)"
    elif IN_CI:
        pytest.fail(f"CI=true but the offline base image {OFFLINE_BASE} is missing: run scripts/ci-prepare",
                    pytrace=False)
    else:
        base, reason = "python:3.13-slim", "the .env default (needs a container registry)"
    started = time.monotonic()
    proc = run(["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"), "build"],
               BUILD_TIMEOUT_S, env={**clean_env(), "BASE_IMAGE": base})
    image = LabImage(LAB_IMAGE, base, reason, time.monotonic() - started, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in image.build_output:
            hint = ("\nHint: pip in the build cannot verify TLS. Run scripts/wheelhouse (offline install) "
                    "or put your CA bundle into ca-certs/ (docs/docker.md, 'TLS-intercepting proxy').")
        pytest.fail(f"`docker compose build` with BASE_IMAGE={base} ({reason}) failed after "
                    f"{image.build_seconds:.0f}s:\n{image.build_output[-5000:]}{hint}", pytrace=False)
    return image
