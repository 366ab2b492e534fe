"""The compose lab as a test fixture, for every module that needs a real one (test_compose.py,
test_workshop.py): a unique project (labtest-...) on free host ports, built once per session by
conftest's lab_image, brought up to healthy, and always taken down with `down -v`.

Import all three fixtures into a test module (pytest finds fixtures in its namespace; each module
then gets its own lab, module-scoped):

    from compose_lab import lab_env, built, lab  # noqa: F401

The lab as a room reaches it, LAB_BIND=0.0.0.0 with a LAB_PASSWORD and a LAB_TOKEN made for it, on ports of
its own (never the defaults): room_env (not up) and room_lab (up), a RoomLab whose ui() goes through a
logged-in session (RoomLab.session()):

    from compose_lab import room_env, room_lab  # noqa: F401
"""
import contextlib
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from clients import procfs
from clients.common import free_port
from compose_text import services as compose_services
from conftest import REPO, clean_env, run
from lab.cpu.pin import PROBE
from lab.live import login
from lab.runner import compose as lab_compose
from lab.runner.run import dotenv_settings
from server import layouts

UP_TIMEOUT_S = 240         # up --wait; about 20 s here
# An exec skips the image's entrypoint: this before a command pins it as the container's own (its LAB_CPUS).
PINNED = ("python", "-S", "-m", "server.affinity")
SAMPLE_S = 0.1             # CpuWait's period: a thread that ends loses at most this much of its record


# A process forked from another keeps its command line: pool workers (from the forkserver) and prefork's
# children are the processes whose parent runs the same command.
FORKED_WORKERS = r"""
import os
procs = {}
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        ppid = int(open('/proc/%s/stat' % pid).read().rsplit(')', 1)[1].split()[1])
        procs[int(pid)] = (ppid, open('/proc/%s/cmdline' % pid, 'rb').read())
    except (OSError, IndexError, ValueError):
        continue
print(sum(1 for ppid, command in procs.values() if ppid in procs and procs[ppid][1] == command))
"""


def port_free(port, host="127.0.0.1"):
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def server_services():
    """{strategy: service} of compose.yaml's servers, by the --strategy each runs."""
    return lab_compose.server_services()


def choose_port_prefix(first="2500", host="127.0.0.1"):
    """`first` ('2500': ports 25001-2500N) when free on `host`, else another prefix whose N ports are free;
    first=None: never the default's."""
    rng = random.Random()
    count = len(server_services())
    for prefix in ([first] if first else []) + [str(p) for p in rng.sample(range(2510, 6500), 60)]:
        if all(port_free(int(f"{prefix}{i}"), host) for i in range(1, count + 1)):
            return prefix
    pytest.fail(f"no free block of {count} host ports found for the lab", pytrace=False)


def choose_port(preferred):
    if port_free(preferred):
        return preferred
    return free_port()


def free_ports(count, host):
    """`count` distinct ports, the kernel's picks, that are free on `host` too; at most 20 picks each."""
    found = set()
    for _ in range(20 * count):
        port = free_port()
        if port_free(port, host):
            found.add(port)
        if len(found) == count:
            return sorted(found)
    pytest.fail(f"no {count} free ports on {host} in {20 * count} picks", pytrace=False)


class Lab:
    def __init__(self, project, env, prefix, ui_port, base, base_reason, ncpu):
        self.project, self.env, self.prefix, self.ui_port = project, env, prefix, ui_port
        self.base, self.base_reason, self.ncpu = base, base_reason, ncpu
        self.build_seconds = None
        self.build_output = ""

    def compose(self, *args, timeout, check=True):
        cmd = ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
               "-p", self.project, *args]
        return run(cmd, timeout, env=self.env, check=check)

    def up(self, *args, timeout=UP_TIMEOUT_S):
        """`up -d --wait` (with args, e.g. --scale), or the test fails with the lab's state."""
        proc = self.compose("up", "-d", "--no-build", "--wait", "--wait-timeout", str(timeout - 30), *args,
                            timeout=timeout, check=False)
        if proc.returncode != 0:
            pytest.fail(f"`docker compose up --wait` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}\n"
                        f"{self.diagnostics()}", pytrace=False)

    def cpus(self, service):
        """The CPUs compose pins the service to in this lab: its variable from this env, else from .env,
        else its role's in the layout for the Docker's CPUs (server/layouts.py)."""
        variable = compose_services()[service]["cpus"][0]
        role = next(role for role, name in layouts.SETTINGS.items() if name == variable)
        return self.env.get(variable) or dotenv_settings()[variable] or layouts.layout(range(self.ncpu))[role]

    def containers(self):
        ids = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
                  30, check=True).stdout.split()
        if not ids:
            return []
        return json.loads(run(["docker", "inspect", *ids], 30, check=True).stdout)

    def by_service(self):
        found = {}
        for c in self.containers():
            found.setdefault(c["Config"]["Labels"]["com.docker.compose.service"], []).append(c)
        return found

    def probe(self, container_id):
        """lab.cpu.pin's PROBE in the container: its affinity and its processes, but for the runtime's own:
        `runc:[2:INIT]` starts a health check's exec (root, any CPU) for an instant before it becomes it."""
        out = run(["docker", "exec", container_id, "python", "-c", PROBE], 60, check=True).stdout
        info = json.loads(out.strip().splitlines()[-1])
        info["procs"] = [p for p in info["procs"] if not p["name"].startswith("runc:")]
        return info

    def parallelism(self, service):
        """clients.cpu_parallelism's record in the service's container, on its CPUs: its ratio, two bare fib
        processes over one (about 1 on two free CPUs, near 2 while another job holds one), and one_s."""
        proc = self.compose("exec", "-T", service, *PINNED, "python", "-m", "clients.cpu_parallelism", "--json",
                            timeout=60)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    @contextlib.contextmanager
    def cpu_wait(self, service):
        """A CpuWait on the service's server while the block runs, read from the host's /proc."""
        (container,) = self.by_service()[service]
        parents = procfs.processes()
        with CpuWait(procfs.tree(container["State"]["Pid"], parents)) as sampler:
            yield sampler

    def ui(self, path, data=None, timeout=10):
        url = f"http://127.0.0.1:{self.ui_port}{path}"
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        with urllib.request.urlopen(url, data=body, timeout=timeout) as resp:
            return json.loads(resp.read().decode())

    @contextlib.contextmanager
    def outside_worker(self, *args):
        """A Locust worker outside compose (here: on the host) that joined the lab's master through the
        published master port, as one on another machine would; stopped on exit."""
        before = self.ui("/stats/requests")["worker_count"]
        worker = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles"), "--worker",
                                   "--master-host", "127.0.0.1", "--master-port", self.env["LAB_MASTER_PORT"], *args],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while self.ui("/stats/requests")["worker_count"] != before + 1 and time.monotonic() < deadline:
                assert worker.poll() is None, worker.stderr.read()[-2000:]
                time.sleep(1)
            assert self.ui("/stats/requests")["worker_count"] == before + 1
            yield worker
        finally:
            worker.terminate()
            worker.wait(timeout=30)

    def diagnostics(self):
        ps = self.compose("ps", "-a", timeout=60, check=False)
        logs = self.compose("logs", "--no-color", "--tail", "25", timeout=60, check=False)
        return f"{ps.stdout}\n{ps.stderr}\n{logs.stdout[-6000:]}"

    def teardown(self):
        self.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180, check=False)
        left = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.project}"],
                   30).stdout.split()
        if left:
            run(["docker", "rm", "-f", *left], 120)
        nets = run(["docker", "network", "ls", "-q", "--filter",
                    f"label=com.docker.compose.project={self.project}"], 30).stdout.split()
        if nets:
            run(["docker", "network", "rm", *nets], 60)


class RoomLab(Lab):
    """A lab that listens beyond loopback (LAB_BIND=0.0.0.0): its web UI asks for LAB_PASSWORD, so ui() (and
    outside_worker()) go through a session logged in with it."""

    def __init__(self, *args):
        super().__init__(*args)
        self.password, self.token = self.env["LAB_PASSWORD"], self.env["LAB_TOKEN"]
        self.logged_in = None

    def url(self, path):
        return f"http://127.0.0.1:{self.ui_port}{path}"

    def session(self, password=None):
        """A requests session logged in with the lab's password (or `password`): the login page's form, sent
        as a browser sends it; the test fails if the master does not let it in."""
        import requests

        session = requests.Session()
        session.trust_env = False  # never through a proxy of the environment
        reply = session.post(self.url(login.SUBMIT_PATH), data={"password": password or self.password},
                             allow_redirects=False, timeout=10)
        assert reply.status_code == 302 and not reply.headers["Location"].endswith("/login"), (
            f"the lab's login refused the password: {reply.status_code} {reply.headers.get('Location')}")
        return session

    def ui(self, path, data=None, timeout=10):
        if self.logged_in is None:
            self.logged_in = self.session()
        if data is None:
            reply = self.logged_in.get(self.url(path), timeout=timeout)
        else:
            reply = self.logged_in.post(self.url(path), data=data, timeout=timeout)
        reply.raise_for_status()
        return reply.json()


class CpuWait:
    """How long the threads of some processes waited for a CPU while they could run, and how much of the
    machine the hypervisor took (steal), sampled every SAMPLE_S in a thread of this process.

    /proc/PID/task/TID/schedstat holds a thread's time on a CPU and its time runnable on a run queue;
    a thread waiting for the GIL sleeps, so that wait is not in it: what it counts is another job (or
    another thread of the lab) holding the CPU the thread could have run on.
    """

    def __init__(self, pids):
        self.pids = pids
        self.first, self.last = {}, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample_until_stopped, daemon=True)

    def __enter__(self):
        self.steal_at_start = steal_s()
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)
        self.steal = (steal_s() - self.steal_at_start) / ((time.monotonic() - self.started) * os.cpu_count())

    def sample_until_stopped(self):
        while not self.stop.is_set():
            for pid in self.pids:
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue  # ended
                for tid in tids:
                    try:
                        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                            ran_ns, waited_ns = map(int, f.read().split()[:2])
                    except (OSError, ValueError):
                        continue
                    self.first.setdefault((pid, tid), (ran_ns, waited_ns))
                    self.last[(pid, tid)] = (ran_ns, waited_ns)
            self.stop.wait(SAMPLE_S)

    def busiest(self):
        """The thread that ran longest while sampled (C6's long request): {ran_s, waited_s, steal, off_cpu},
        off_cpu being the share of its runnable time spent off a CPU (waiting for one, or the machine's
        steal over its CPUs); None if no thread ran."""
        spans = {key: [(b - a) / 1e9 for a, b in zip(self.first[key], self.last[key])] for key in self.last}
        if not spans or max(ran for ran, _ in spans.values()) <= 0:
            return None
        ran, waited = max(spans.values())
        return {"ran_s": round(ran, 3), "waited_s": round(waited, 3), "steal": round(self.steal, 3),
                "off_cpu": round(waited / (ran + waited) + self.steal, 3)}


def steal_s():
    """CPU-seconds the hypervisor took from this machine since it booted, over all CPUs."""
    return procfs.machine_times()["steal"] / os.sysconf("SC_CLK_TCK")


def new_lab(kind, docker_engine, lab_image, prefix, ui_port, master_port, **settings):
    """A `kind` (Lab, RoomLab) of a unique project on these ports, with the base image chosen for this
    machine and `settings` (LAB_BIND, ...) over a clean environment."""
    env = clean_env()
    env.update(BASE_IMAGE=lab_image.base, LAB_PORT_PREFIX=prefix, LAB_UI_PORT=str(ui_port),
               LAB_MASTER_PORT=str(master_port), **settings)
    project = f"labtest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    return kind(project, env, prefix, ui_port, lab_image.base, lab_image.base_reason, docker_engine)


@pytest.fixture(scope="module")
def lab_env(docker_engine, lab_image):
    """A unique project on free ports, with the base image chosen for this machine."""
    lab = new_lab(Lab, docker_engine, lab_image, choose_port_prefix(), choose_port(8089), choose_port(5557),
                  LAB_BIND="127.0.0.1")
    yield lab
    lab.teardown()


@pytest.fixture(scope="module")
def built(lab_env, lab_image):
    """The image, built once per session by conftest's lab_image (the same `docker compose build`)."""
    lab_env.build_seconds, lab_env.build_output = lab_image.build_seconds, lab_image.build_output
    return lab_env


@pytest.fixture(scope="module")
def lab(built):
    built.up()
    return built


@pytest.fixture(scope="module")
def room_env(docker_engine, lab_image):
    """A RoomLab (not up): LAB_BIND=0.0.0.0, a LAB_PASSWORD and a LAB_TOKEN of its own, on ports free on every
    address and never the defaults (2500N, 8089, 5557), so that it clashes with no other lab."""
    wildcard = "0.0.0.0"
    ui_port, master_port = free_ports(2, wildcard)
    lab = new_lab(RoomLab, docker_engine, lab_image, choose_port_prefix(None, wildcard), ui_port, master_port,
                  LAB_BIND=wildcard, LAB_PASSWORD=secrets.token_urlsafe(12), LAB_TOKEN=secrets.token_urlsafe(18))
    yield lab
    lab.teardown()


@pytest.fixture(scope="module")
def room_lab(room_env, lab_image):
    """The RoomLab up to healthy (the image built once per session by conftest's lab_image)."""
    room_env.up()
    return room_env
