"""The GIL sampler (clients.gil_sampler) beside a server of the run, from the host: its side container
started, waited for, stopped, and its record read."""
import json
import time

from docker.errors import APIError

from clients.gil_sampler import READY

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


class Sampling:
    """The sampler beside a running lab.runner.containers.Server, in the run's side container:

        with Sampling(server, rate_hz, max_s, dump_rate_hz) as sampled:
            ...  # the clients
        sampled.record  # clients.gil_sampler's record, or None, and then sampled.error says why in one line

    It shares only the server's PID namespace, and has CAP_SYS_PTRACE (clients.gil_state and py-spy read
    another process's memory) on top of the lab's hardening; it runs on the load CPUs, never on the server's
    own. rate_hz: GIL samples a second; dump_rate_hz: py-spy's dumps a second (the sampler's default if None)."""

    def __init__(self, server, rate_hz, max_s, dump_rate_hz=None):
        self.server, self.rate_hz, self.max_s, self.dump_rate_hz = server, rate_hz, max_s, dump_rate_hz
        self.container = self.record = self.error = None

    def __enter__(self):
        lab = self.server.lab
        self.container = lab.start_container(
            "gil", ["python", "-m", "clients.gil_sampler", "--rate", str(self.rate_hz), "--max-s", str(self.max_s),
                    *(["--dump-rate", str(self.dump_rate_hz)] if self.dump_rate_hz is not None else [])],
            lab.load_cpus, pid_mode=f"container:{self.server.container.id}", cap_add=["SYS_PTRACE"])
        deadline = time.monotonic() + START_TIMEOUT_S
        while READY not in self._stderr():
            self.container.reload()
            if self.container.status != "running" or time.monotonic() > deadline:
                self.error = self._last_line() or f"the sampler did not start within {START_TIMEOUT_S} s"
                self._remove()
                break
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.container is None:
            return
        try:
            self.container.kill(signal="SIGTERM")
        except APIError:  # it has ended already (its record or error is in its logs)
            pass
        code = self.container.wait(timeout=STOP_TIMEOUT_S)["StatusCode"]
        out = self.container.logs(stdout=True, stderr=False).decode(errors="replace")
        records = [line for line in out.splitlines() if line.startswith("{")]
        if code == 0 and records:
            self.record = json.loads(records[-1])
        else:
            self.error = self._last_line() or f"the sampler exited {code} with no record"
        self._remove()

    def _stderr(self):
        return self.container.logs(stdout=False, stderr=True).decode(errors="replace")

    def _last_line(self):
        lines = [line for line in self._stderr().splitlines() if line.strip() and READY not in line]
        return lines[-1].removeprefix("gil_sampler: ").strip() if lines else None

    def _remove(self):
        self.container.remove(force=True)
        self.container = None
