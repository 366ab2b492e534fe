"""Locust as the runner's load for the perf1 cells: the compose lab's master over its web endpoints
(the room watches every run live in the UI), or, without a running lab, a headless master with
distributed workers in the load container.

Locust's web endpoints (/swarm, /stop, /stats/reset, /stats/requests) are not a documented API:
they are used as Locust 2.47.0 (pinned in requirements/lab.txt) serves them.
"""
import json
import time

import requests

from lab.runner.compose import ROLE_LABEL, SERVICE_LABEL

LOCUSTFILES = "/app/locustfiles"
USER_CLASS = {"perf1": "Perf1User"}
HTTP_TIMEOUT_S = 10
START_TIMEOUT_S = 30
LIVE_MIN_WINDOW_S = 4
HEADLESS_WORKERS = 2
MASTER_PORT = 5557


def aggregated(stats):
    return next(row for row in stats["stats"] if row["name"] == "Aggregated")


class EmptyRun(RuntimeError):
    pass


class LiveLocust:
    """The compose lab's locust-master, found by its labels and published web port."""

    mode = "locust-live"

    def __init__(self, url, master):
        self.url, self.master = url, master

    @classmethod
    def find(cls, docker_client):
        """The running lab's master if its web UI answers on the host, else None."""
        for container in docker_client.containers.list(filters={"label": [f"{SERVICE_LABEL}=locust-master",
                                                                          f"{ROLE_LABEL}=load"]}):
            bindings = container.attrs["NetworkSettings"]["Ports"].get("8089/tcp") or []
            for binding in bindings:
                url = f"http://127.0.0.1:{binding['HostPort']}"
                try:
                    requests.get(f"{url}/stats/requests", timeout=HTTP_TIMEOUT_S).raise_for_status()
                    return cls(url, container)
                except requests.RequestException:
                    continue
        return None

    def reach(self, server):
        """Put the run's server on the lab's network too, under its own name, for the lab's workers."""
        server.container.reload()
        joined = server.container.attrs["NetworkSettings"]["Networks"]
        for name in self.master.attrs["NetworkSettings"]["Networks"]:
            if name not in joined:
                self.master.client.networks.get(name).connect(server.container, aliases=[server.host])

    def run(self, scenario, server, users, seconds, **options):
        """One Locust run of `scenario` against the server; returns (mean latency s, requests)."""
        self.reach(server)
        self._call("post", "/stop")
        self._call("post", "/stats/reset")
        reply = requests.post(f"{self.url}/swarm", timeout=HTTP_TIMEOUT_S, data={
            "user_count": users, "spawn_rate": 1000, "host": f"tcp://{server.host}:{server.port}",
            "user_classes": USER_CLASS[scenario], **options})
        reply.raise_for_status()
        if not reply.json().get("success"):
            raise RuntimeError(f"Locust refused the swarm: {reply.json().get('message')}")
        try:
            self._wait_for_requests(users)  # every user connected and answered: count from here
            self._call("post", "/stats/reset")
            # Workers report to the master every 3 s: a window longer than one interval (and its jitter)
            # sees at least one report of this phase, whose requests all ran with `users` users.
            seconds = max(seconds, LIVE_MIN_WINDOW_S)
            time.sleep(seconds)
            stats = self._call("get", "/stats/requests").json()
        finally:
            self._call("post", "/stop")
        total = aggregated(stats)
        if stats.get("fail_ratio"):
            raise RuntimeError(f"Locust counted failures: {stats.get('errors')}")
        if not total["num_requests"]:
            raise RuntimeError(f"Locust's users completed no request in {seconds:g} s")
        return total["avg_response_time"] / 1000, total["num_requests"]

    def _wait_for_requests(self, users):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            stats = self._call("get", "/stats/requests").json()
            if stats.get("user_count") == users and aggregated(stats)["num_requests"] >= users:
                return
            time.sleep(0.2)
        raise RuntimeError(f"Locust's {users} user(s) did not get replies within {START_TIMEOUT_S} s: "
                           f"{stats.get('errors') or 'no error reported'}")

    def _call(self, method, path):
        reply = requests.request(method, f"{self.url}{path}", timeout=HTTP_TIMEOUT_S)
        reply.raise_for_status()
        return reply


class HeadlessLocust:
    """A headless master and HEADLESS_WORKERS workers, exec'd in the run's load container."""

    mode = "locust-headless"

    def __init__(self, lab):
        self.lab = lab
        self.runs = self.retried = 0

    def run(self, scenario, server, users, seconds, **options):
        try:
            return self._run(scenario, server, users, seconds, **options)
        except EmptyRun:
            # Seen now and then on the first run in a fresh load container: its users never ran.
            self.retried += 1
            return self._run(scenario, server, users, seconds, **options)

    def _run(self, scenario, server, users, seconds, **options):
        self.runs += 1
        # A port of its own per run: a late worker of the previous run can never join this one.
        port = str(MASTER_PORT + 2 * (self.runs % 1000))
        prefix = f"/tmp/locust-{scenario}-{users}u-{self.runs}"
        locustfile = ["locust", "-f", f"{LOCUSTFILES}/{scenario}.py",
                      *[f"--{key.replace('_', '-')}={value}" for key, value in options.items()]]
        workers = [self.lab.exec_load([*locustfile, "--worker", "--master-host", "127.0.0.1", "--master-port", port],
                                      timeout=seconds + 60, detach=True) for _ in range(HEADLESS_WORKERS)]
        code, out, err = self.lab.exec_load(
            [*locustfile, "--headless", "--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", port,
             "--expect-workers", str(len(workers)), "--expect-workers-max-wait", "30",
             # every user at once, so that the whole run has `users` clients
             "-u", str(users), "-r", "1000", "-t", f"{max(1, round(seconds))}s", "--stop-timeout", "5",
             "--host", f"tcp://{server.host}:{server.port}", "--csv", prefix, "--only-summary"],
            timeout=seconds + 60)
        if code != 0:
            raise RuntimeError(f"headless Locust exited {code}: {(err or out).strip().splitlines()[-1:]}")
        code, out, err = self.lab.exec_load(["cat", f"{prefix}_hdr.json"], timeout=10)
        if code != 0:
            raise RuntimeError(f"Locust wrote no HDR summary at {prefix}_hdr.json: {err.strip()}")
        hdr = json.loads(out)
        if not hdr["total"]["count"]:
            raise EmptyRun(f"Locust recorded no request in {seconds:g} s (locust's own count: "
                           f"{hdr['locust']['num_requests']})")
        reported = len(hdr["requests_per_worker"])
        if reported < min(users, HEADLESS_WORKERS):
            # A worker whose final report comes later than the master waits at its quit (0.5 s) loses it.
            raise EmptyRun(f"only {reported} of the {min(users, HEADLESS_WORKERS)} workers with users reported "
                           "their requests before the master quit")
        if hdr["locust"]["num_failures"]:
            raise RuntimeError(f"Locust counted {hdr['locust']['num_failures']} failures")
        return hdr["total"]["mean"] / 1e6, hdr["total"]["count"]
