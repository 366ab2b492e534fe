"""The containers of one run, through the docker SDK: a private network, one load container that
runs the clients, and one server container at a time. Load never runs on the server's CPUs.

They are hardened as compose's are, from compose's own definition (lab.runner.compose); the engine's
default open-file limit (20,000 or more) covers C13's 10,000 connections.
"""
import contextlib
import json
import threading
import time

import docker

from clients import process_memory
from lab.cells import Background
from lab.pythons import image as python_image, offline_base
from lab.runner import compose
from server.protocol import PORT as SERVER_PORT  # every server listens here inside its container

LABEL = "org.concurrency-lab.run"
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 3
STATS_INTERVAL_S = 0.5
READ_TIMEOUT_S = 20  # one reading of the server's processes (clients.process_memory)


class LabError(Exception):
    """Something the user has to fix (no image, no engine, a CPU the host lacks)."""


class Lab:
    def __init__(self, image, server_cpus, load_cpus):
        try:
            self.docker = docker.from_env()
            self.docker.ping()
        except docker.errors.DockerException as e:
            raise LabError(f"cannot reach the Docker Engine: {e}") from None
        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            base = offline_base() or "$(scripts/build-offline-base --print-tag)"
            raise LabError(f"no image {image!r}: build it first with 'docker compose build' "
                           f"(without a registry: BASE_IMAGE={base} docker compose build, "
                           "after scripts/build-offline-base; see docs/docker.md)") from None
        try:
            self.hardening, self.load_sysctls = compose.hardening(), compose.load_sysctls()
        except compose.ComposeError as e:
            raise LabError(str(e)) from None
        self.image = image
        self.server_cpus, self.load_cpus = server_cpus, load_cpus
        self.run_id = self.name = self.network = self.load = None

    def open(self, run_id):
        """Use as `with lab.open(run_id):` the run's network and load container exist inside it."""
        self.run_id, self.name = run_id, f"lab-run-{run_id}"
        return self

    def __enter__(self):
        self.close()  # leftovers of an interrupted run with the same id (--resume)
        try:
            # internal: the run's containers reach each other and nothing else
            self.network = self.docker.networks.create(self.name, internal=True, labels={LABEL: self.run_id})
            self.load = self.start_container("load", ["sleep", "infinity"], self.load_cpus, sysctls=self.load_sysctls)
        except BaseException:
            self.close()  # a load container that could not start must not be left behind
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for container in self.docker.containers.list(all=True, filters={"label": f"{LABEL}={self.run_id}"}):
            container.remove(force=True)
        for network in self.docker.networks.list(filters={"label": f"{LABEL}={self.run_id}"}):
            network.remove()

    def start_container(self, role, command, cpus, python=None, **options):
        """Start `command`, detached, in the run's container named for `role`: on the run's network, on
        `cpus`, hardened as compose's are, from the lab image (with python: that Python's server image);
        `options` go to the docker SDK's containers.run. Returns the container."""
        return self._run_container(
            python_image(python) if python else self.image, command, name=f"{self.name}-{role}", detach=True,
            network=self.name, cpuset_cpus=cpus, labels={LABEL: self.run_id}, **self.hardening, **options)

    def _run_container(self, *args, **kwargs):
        """docker's containers.run(*args, **kwargs), made and started in a thread: a Ctrl-C in the middle would
        leave a container nobody holds (the daemon finishes a create whose request was sent, after the run's
        cleanup has looked for it), so on one the container is waited for and removed before it goes on."""
        starting = Background(self.docker.containers.run, *args, **kwargs)
        try:
            return starting.join()
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the runner takes it
            with contextlib.suppress(Exception):  # not made: nothing to remove
                starting.join(READY_TIMEOUT_S).remove(force=True)
            raise

    def server(self, strategy, *args, cpus=None, python=None):
        return Server(self, strategy, args, cpus or self.server_cpus, python)

    def exec_load(self, argv, timeout, on_line=None, detach=False):
        """Run argv in the load container, killed after `timeout` s; return (exit code, stdout, stderr).
        on_line(line) sees every stdout line as it comes; detach=True returns at once."""
        api = self.docker.api
        exec_id = api.exec_create(self.load.id, ["timeout", "-s", "KILL", str(int(timeout) + 1),
                                                 *map(str, argv)])["Id"]
        if detach:
            api.exec_start(exec_id, detach=True)
            return None
        out, err, partial = [], [], b""
        for stdout, stderr in api.exec_start(exec_id, stream=True, demux=True):
            err.append(stderr or b"")
            partial += stdout or b""
            *lines, partial = partial.split(b"\n")
            for line in lines:
                out.append(line.decode(errors="replace"))
                if on_line:
                    on_line(out[-1])
        out.append(partial.decode(errors="replace"))
        return api.exec_inspect(exec_id)["ExitCode"], "\n".join(out), b"".join(err).decode(errors="replace")

    def run_alone(self, python, argv, timeout):
        """Run argv in a container of its own from one Python's server image, on the load CPUs;
        return (exit code, stdout, stderr)."""
        container = self.start_container(f"py{python}", ["timeout", "-s", "KILL", str(int(timeout) + 1),
                                                         *map(str, argv)], self.load_cpus, python)
        return self._outcome(container, timeout)

    def run_on_cpus(self, cpus, argv, timeout):
        """Run argv in a container of the lab image of its own on `cpus` (a cpuset), with no network but its
        loopback, before the run's network exists or during the run; return (exit code, stdout, stderr)."""
        container = self._run_container(self.image, ["timeout", "-s", "KILL", str(int(timeout) + 1), *map(str, argv)],
                                        detach=True, network_disabled=True, cpuset_cpus=cpus,
                                        labels={LABEL: self.run_id} if self.run_id else None, **self.hardening)
        return self._outcome(container, timeout)

    @staticmethod
    def _outcome(container, timeout):
        """(exit code, stdout, stderr) of a container once its command ended; the container removed."""
        try:
            code = container.wait(timeout=timeout + 30)["StatusCode"]
            return (code, container.logs(stderr=False).decode(errors="replace"),
                    container.logs(stdout=False).decode(errors="replace"))
        finally:
            container.remove(force=True)

    def run_client(self, module, *args, timeout, on_line=None, python=None):
        """Run `python -m clients.MODULE ARGS` in the load container (with python: alone, in that
        Python's image) and return the JSON record it prints last. on_line(line) sees every stdout
        line as it comes (to act while a client holds)."""
        argv = ["python", "-m", f"clients.{module}", *args]
        if python:
            code, out, err = self.run_alone(python, argv, timeout)
        else:
            code, out, err = self.exec_load(argv, timeout, on_line)
        return client_record(module, code, out, err)


def client_record(module, code, out, err):
    """The JSON record a client printed last; its last line of error if it failed or printed none."""
    records = [line for line in out.splitlines() if line.startswith("{")]
    if code != 0 or not records:
        lines = err.strip().splitlines() or out.strip().splitlines() or [""]
        raise RuntimeError(f"clients.{module} exited {code}: {lines[-1].strip()}")
    return json.loads(records[-1])


class Server:
    """One strategy's container, pinned, started and ready (a real fib request answered)."""

    def __init__(self, lab, strategy, args, cpus, python=None):
        self.lab, self.strategy, self.args, self.cpus, self.python = lab, strategy, args, cpus, python
        self.host, self.port = f"{lab.name}-server", SERVER_PORT
        self.container = None
        self.stats = []

    def __enter__(self):
        command = ["python", "-m", "server", "--strategy", self.strategy, "--host", "0.0.0.0",
                   "--port", str(self.port), "--quiet", *map(str, self.args)]
        self.container = self.lab.start_container("server", command, self.cpus, self.python)
        try:
            self._wait_ready()
        except BaseException:
            self.container.remove(force=True)
            raise
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample_stats, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc):
        self._stop_sampling.set()
        self._sampler.join(timeout=5)
        self.container.stop(timeout=STOP_TIMEOUT_S)
        self.container.remove(force=True)

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                # any reply will do (echo servers too); a wrong fib shows up in the experiments
                self.lab.run_client("request", "--host", self.host, "--port", self.port, "--timeout", 2, "--json",
                                    "--no-check", 10, timeout=5)
                return
            except RuntimeError as e:
                self.container.reload()
                if self.container.status != "running":
                    logs = self.container.logs(tail=5).decode(errors="replace").strip()
                    raise RuntimeError(f"server {self.strategy} exited: {logs}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server {self.strategy} not ready after {READY_TIMEOUT_S} s: {e}")
                time.sleep(0.2)

    def _sample_stats(self):
        """docker stats (one-shot samples, so stopping is immediate) every STATS_INTERVAL_S."""
        while not self._stop_sampling.wait(STATS_INTERVAL_S):
            try:
                sample = self.container.stats(stream=False, one_shot=True)
            except (docker.errors.APIError, docker.errors.NotFound, ValueError):
                return
            self.stats.append({"t": time.time(),
                               "cpu_total_ns": sample.get("cpu_stats", {}).get("cpu_usage", {}).get("total_usage"),
                               "memory_bytes": sample.get("memory_stats", {}).get("usage")})

    def run_client(self, module, *args, timeout):
        """Run `python -m clients.MODULE ARGS` in this server's container, on its CPUs and its Python,
        and return the JSON record it prints last: how the machine treats the server's own CPUs."""
        code, output = self.container.exec_run(
            ["timeout", "-s", "KILL", str(int(timeout) + 1), "python", "-m", f"clients.{module}", *map(str, args)],
            demux=True)
        out, err = ((part or b"").decode(errors="replace") for part in output)
        return client_record(module, code, out, err)

    def process_status(self):
        """The whole server, read inside its container by clients.process_memory: its processes (the
        server, pool workers, forked children; not docker-init) and the sums of their threads, USS, PSS,
        RSS and VSZ (KiB). A process that ends while it is read, or cannot be read, raises RuntimeError
        with the reader's one line."""
        record = self.run_client("process_memory", "--json", timeout=READ_TIMEOUT_S)
        return {key: record[key] for key in process_memory.TOTALS}
