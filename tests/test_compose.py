"""The compose lab for real: the config, the image build (with the offline base on
machines without a registry), `up` to healthy, the article's client on every
published port, CPU pinning, non-root and hardened containers, Locust end to end,
scripts/lab pin, the runner's containers made as compose's are, and `down` within 10 s.

Needs a Docker Engine and Compose v2 (`docker compose`). With CI=true a missing
Engine or Compose v2 fails these tests; elsewhere they are skipped with the reason
(scripts/ci-prepare installs what is missing).

Every session uses its own compose project (labtest-...), on free host ports,
and a finalizer always runs `down -v`, so no container is left behind. Each
docker call has a time limit, so the module's setup is bounded.
"""

import json
import os
import socket
import sys
import time
import uuid

import pytest

from compose_lab import FORKED_WORKERS, built, lab, lab_env, server_services  # noqa: F401 (the fixtures)
from conftest import LAB_IMAGE as IMAGE, OFFLINE_BASE, REPO, clean_env, run
from lab.cpu.cpusets import parse_cpuset as parse_cpus, pinned
from lab.cpu.pin import own
from lab.experiments import perf1
from lab.pythons import version_tuple
from lab.runner.containers import Lab as RunnerLab
from server import placement, strategies
from server.affinity import wanted_cpus

LOAD_SERVICES = ["locust-master", "locust-worker"]
CLIENTS = "clients"                    # the article's clients in the lab's network, profile tools
LIVE_DIR = "/app/results/live"         # the master's one writable path, a named volume
LAB_UID = 10001
pytestmark = pytest.mark.docker

DOWN_LIMIT_S = 10.0        # how long `docker compose down` may take: a workshop waits on it


# --- the configuration ------------------------------------------------------------------------

def test_compose_config_is_valid_with_safe_defaults(docker_engine):
    """`docker compose config` accepts the file; with the .env defaults every service is hardened,
    published on 127.0.0.1 only, pinned as documented (LAB_CPUS, for the image's entrypoint; no cgroup
    cpuset, which fails on a Docker without one of its CPUs), and Locust waits for healthy servers. The
    clients service is there only with its profile (tools), so `up` does not start it."""
    env = clean_env()
    run(["docker", "compose", "config", "-q"], 60, env=env, check=True)
    plain = json.loads(run(["docker", "compose", "config", "--format", "json"], 60, env=env, check=True).stdout)
    cfg = json.loads(run(["docker", "compose", "--profile", "tools", "config", "--format", "json"], 60, env=env,
                         check=True).stdout)
    services = cfg["services"]
    server_names = sorted(server_services().values())
    assert sorted(plain["services"]) == sorted(server_names + LOAD_SERVICES)
    assert sorted(services) == sorted(server_names + LOAD_SERVICES + [CLIENTS])
    assert [s for s in services if "build" in services[s]] == ["server-sequential"], "the image is built once"
    assert len({services[s]["image"] for s in services}) == 1, "one lab image for every service"
    for name, svc in services.items():
        assert svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert svc["init"] is True, name
        assert svc["user"] == f"{LAB_UID}:{LAB_UID}", name
        assert any(t.startswith("/tmp") for t in svc["tmpfs"]), name
        for port in svc.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", (name, port)
        assert "healthcheck" in svc or name == CLIENTS, name
        assert "cpuset" not in svc and "cpus" not in svc, name
    assert services[CLIENTS]["profiles"] == ["tools"] and "depends_on" not in services[CLIENTS]
    published = []
    for strategy, name in server_services().items():
        svc = services[name]
        role = "pool" if strategies.load(strategy).MULTICORE else "server"  # LAB_POOL_CPUS or LAB_SERVER_CPUS
        assert name == f"server-{strategy}" and svc["environment"]["LAB_CPU_ROLE"] == role, name
        assert svc["environment"]["LAB_CPUS"] == "", (name, "as shipped: the layout for the machine")
        assert [p["target"] for p in svc["ports"]] == [25000], name
        published.append(str(svc["ports"][0]["published"]))
        test = " ".join(svc["healthcheck"]["test"])
        assert test.endswith("-m server.healthcheck 25000"), test
        assert svc["stop_grace_period"] == "3s", name  # the servers exit on SIGTERM within 2 s
    assert sorted(published) == [f"2500{i}" for i in range(1, len(published) + 1)]
    assert [(p["target"], str(p["published"])) for p in services["locust-master"]["ports"]] == [
        (8089, "8089"), (5557, "5557")]
    assert "ports" not in services["locust-worker"], "workers must be scalable: no fixed host port"
    for name in [*LOAD_SERVICES, CLIENTS]:
        assert services[name]["environment"]["LAB_CPUS"] == "" and services[name]["environment"]["LAB_CPU_ROLE"] == "load", name
    assert services[CLIENTS]["entrypoint"][:4] == ["python", "-S", "-m", "server.affinity"], "pinned as the image is"
    master = services["locust-master"]
    assert master["environment"]["LAB_LIVE_DIR"] == LIVE_DIR
    assert [(v["type"], v["target"]) for v in master["volumes"]] == [("volume", LIVE_DIR)], "one writable path"
    for name in LOAD_SERVICES:
        deps = services[name]["depends_on"]
        for server in server_names:
            assert deps[server]["condition"] == "service_healthy", (name, server)
    assert services["locust-worker"]["depends_on"]["locust-master"]["condition"] == "service_healthy"


# --- build and up -----------------------------------------------------------------------------

def test_image_builds_from_the_chosen_base(built):
    """The one lab image builds (offline base on machines without a registry) and runs Python 3.13
    with the pinned Locust in it."""
    lab = built
    print(f"built with BASE_IMAGE={lab.base} ({lab.base_reason}) in {lab.build_seconds:.1f}s")
    out = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "python", IMAGE, "-c",
               "import sys, locust, docker, server, clients; "
               "print('%d.%d' % sys.version_info[:2], locust.__version__)"], 120, check=True).stdout.split()
    if lab.base == OFFLINE_BASE:
        assert out[0] == "3.13", out
    assert out[1] == "2.47.0", out


def test_compose_has_a_server_for_every_strategy_the_lab_image_can_run(built):
    """The strategies are server/strategies; compose.yaml must serve each one that the lab image's
    Python can run, and no other (one it cannot run would restart forever)."""
    out = run(["docker", "run", "--rm", "--network", "none", IMAGE, "python", "-m", "server.build", "--json"],
              120, check=True).stdout
    version = version_tuple(json.loads(out)["version"])
    runnable = sorted(name for name in strategies.ALL if strategies.runs_on(name, version))
    assert sorted(server_services()) == runnable


def test_up_brings_every_service_to_healthy(lab):
    services = lab.by_service()
    assert sorted(services) == sorted([*server_services().values(), *LOAD_SERVICES]), lab.diagnostics()
    for name, containers in services.items():
        for c in containers:
            state = c["State"]
            assert state["Running"], (name, state)
            assert state["Health"]["Status"] == "healthy", (name, state["Health"])


# --- the servers through their published ports ------------------------------------------------

def test_article_client_on_every_published_port(lab):
    """The article's perf1 style: send(b"20"), recv(100) -> b"6765\\n", on 127.0.0.1, for every server."""
    for service in server_services().values():
        mapped = lab.compose("port", service, "25000", timeout=30).stdout.strip()
        host, port = mapped.rsplit(":", 1)
        assert host == "127.0.0.1" and port.startswith(lab.prefix), mapped
        article_client(int(port))


def test_the_clients_service_runs_the_articles_client_by_service_name(lab):
    """docker compose run --rm clients request server-threaded 20: inside the lab's network, no published port."""
    proc = lab.compose("run", "--rm", "-T", CLIENTS, "request", "server-threaded", "20", timeout=120, check=True)
    assert proc.stdout.splitlines()[0] == "6765", proc.stdout
    assert CLIENTS not in lab.by_service(), "--rm removes it; up never starts it"


def article_client(port):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.settimeout(20)
        for _ in range(3):
            sock.send(b"20")
            assert sock.recv(100) == b"6765\n"


# --- pinning and privileges -------------------------------------------------------------------

def test_affinity_is_lab_cpus_in_every_container(lab):
    """Every process of a container's own command runs on its LAB_CPUS (from Config.Env, as compose set it)
    of the CPUs the container may use (an exec's: the probe's); not docker-init (PID 1) nor an exec
    (a health check, the probe), which the entrypoint does not pin."""
    for name, containers in lab.by_service().items():
        for c in containers:
            env = dict(e.split("=", 1) for e in c["Config"]["Env"])
            assert wanted_cpus(env, set(range(lab.ncpu))) == lab.cpus(name), name
            assert not c["HostConfig"]["CpusetCpus"], (name, "no cgroup cpuset")
            info = lab.probe(c["Id"])
            assert info["affinity"] == list(range(lab.ncpu)), (name, info["affinity"])
            wanted = pinned(parse_cpus(lab.cpus(name)), info["affinity"])
            procs = own(info["procs"])
            assert procs, (name, info)
            for p in procs:
                assert set(p["allowed"]) <= wanted, (name, p)  # a server places its threads within them
                assert set(p["ran_on"]) <= wanted, (name, p)
            if name in LOAD_SERVICES:
                assert all(set(p["allowed"]) == wanted for p in procs), (name, procs)


def test_pools_and_prefork_start_a_worker_per_cpu_of_their_cpuset(lab):
    """A worker per CPU its pool may use: on two CPUs (0-1), two each (server.placement)."""
    for strategy, service in server_services().items():
        if "workers" not in strategies.load(strategy).USES:
            continue
        (container,) = lab.by_service()[service]
        out = run(["docker", "exec", container["Id"], "python", "-c", FORKED_WORKERS], 60, check=True).stdout
        cpus = pinned(parse_cpus(lab.cpus(service)), range(lab.ncpu))
        assert int(out) == len(placement.worker_cpus(placement.FIXED, cpus)), (service, out)


def test_processes_are_not_root_and_containers_are_hardened(lab):
    for name, containers in lab.by_service().items():
        for c in containers:
            assert c["Config"]["User"] == f"{LAB_UID}:{LAB_UID}", name
            host = c["HostConfig"]
            assert host["ReadonlyRootfs"] is True, name
            assert host["Init"] is True, name
            assert "ALL" in (host["CapDrop"] or []), name
            assert any(o.startswith("no-new-privileges") for o in host["SecurityOpt"] or []), name
            for p in lab.probe(c["Id"])["procs"]:
                assert "0" not in p["uid"] and "0" not in p["gid"], (name, p)
                assert int(p["cap_eff"], 16) == 0, (name, p)
            # the root file system really is read-only
            write = run(["docker", "exec", c["Id"], "python", "-c", "open('/app/x', 'w')"], 60)
            assert write.returncode != 0 and "Read-only file system" in write.stderr, (name, write.stderr)


HARDENED = [("Config", "User"), ("HostConfig", "ReadonlyRootfs"), ("HostConfig", "Init"), ("HostConfig", "CapDrop"),
            ("HostConfig", "SecurityOpt"), ("HostConfig", "Tmpfs")]


def test_the_runners_containers_are_made_as_composes_are(lab):
    """The runner reads compose's hardening and the load container's sysctls from compose.yaml: its
    server and load containers come out with the same settings as the running lab's."""
    ours = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in lab.containers()}
    runner = RunnerLab(IMAGE, "0", "1" if lab.ncpu > 1 else "0")
    with runner.open(f"labtest-{uuid.uuid4().hex[:8]}"):
        with runner.server("threaded", cpus="0") as server:
            server.container.reload()
            served = server.container.attrs
        runner.load.reload()
        load = runner.load.attrs
    for section, key in HARDENED:
        assert served[section][key] == ours["server-threaded"][section][key], key
        assert load[section][key] == ours["locust-master"][section][key], key
    assert load["HostConfig"]["Sysctls"] == ours["locust-master"]["HostConfig"]["Sysctls"]
    assert load["HostConfig"]["Sysctls"]["net.ipv4.tcp_tw_reuse"] == "1"


# --- Locust -----------------------------------------------------------------------------------

def test_locust_workers_reach_a_server_by_service_name(lab):
    """A short swarm through the web UI's API: the worker's users talk to server-threaded:25000."""
    started = lab.ui("/swarm", {"user_count": 2, "spawn_rate": 2, "host": "tcp://server-threaded:25000",
                                "user_classes": "Perf2User"})
    assert started["success"], started
    try:
        deadline = time.monotonic() + 60
        stats = {}
        while time.monotonic() < deadline:
            stats = lab.ui("/stats/requests")
            total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
            if total["num_requests"] >= 20:
                break
            time.sleep(1)
        total = next(s for s in stats["stats"] if s["name"] == "Aggregated")
        assert total["num_requests"] >= 20, stats
        assert total["num_failures"] == 0, stats.get("errors")
        assert stats["worker_count"] >= 1
    finally:
        lab.ui("/stop", {})


def test_the_runner_drives_the_running_labs_locust_master(lab, tmp_path):
    """With the lab up, the runner's perf1 cells run through the lab's Locust master, where the room
    watches them: the swarms land in the master's stats, and the cell is measured from them."""
    # A starved or drifting cell is measured again, up to perf1.ATTEMPTS times: under a CPU hog each
    # attempt through the lab's Locust took over 100 s here.
    proc = run([sys.executable, "-m", "lab", "run", "--quick", "--experiments", "perf1",
                "--strategies", "threaded", "--results", str(tmp_path)], 200 * perf1.ATTEMPTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "load: the running lab's Locust master" in proc.stderr
    (record_path,) = tmp_path.glob("*/results.json")
    cell = json.loads(record_path.read_text())["cells"]["perf1/threaded"]
    assert cell["status"] == "ok", cell.get("error")
    assert cell["measurements"]["load"] == "locust-live"
    assert cell["measurements"]["samples"] > 10
    total = next(s for s in lab.ui("/stats/requests")["stats"] if s["name"] == "Aggregated")
    assert total["num_requests"] > 0  # the last swarm, as the UI shows it


def test_locust_workers_scale(lab):
    lab.up("--no-recreate", "--scale", "locust-worker=2", timeout=180)
    assert len(lab.by_service()["locust-worker"]) == 2
    deadline = time.monotonic() + 60
    while lab.ui("/stats/requests")["worker_count"] != 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert lab.ui("/stats/requests")["worker_count"] == 2


def test_a_worker_on_another_host_joins_the_labs_master(lab):
    """A Locust worker outside compose (here: on the host) joins the lab's master through the
    published master port, as one on another machine would."""
    with lab.outside_worker():
        pass


# --- lab pin ----------------------------------------------------------------------------------

def pin(lab, *args):
    return run([sys.executable, "-m", "lab", "pin", "--project", lab.project, *args], 120)


def test_lab_pin_shows_and_repins(lab):
    shown = pin(lab)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    for name, containers in lab.by_service().items():
        for c in containers:
            line = next(l for l in shown.stdout.splitlines() if l.startswith(c["Name"].lstrip("/") + " "))
            assert line.split()[1] == name and line.split()[-1] == "yes", line

    target = lab.by_service()["server-threaded"][0]
    original = target["HostConfig"]["CpusetCpus"] or f"0-{lab.ncpu - 1}"  # unset: every CPU
    if lab.ncpu >= 2:
        repinned = pin(lab, "server-threaded", "0-1")
        assert repinned.returncode == 0, repinned.stderr
        try:
            assert lab.probe(target["Id"])["affinity"] == [0, 1]
            assert " 0-1 " in next(l for l in pin(lab).stdout.splitlines() if "server-threaded" in l)
        finally:
            back = pin(lab, "server-threaded", original)
            assert back.returncode == 0, back.stderr
        assert set(lab.probe(target["Id"])["affinity"]) == parse_cpus(original)

    refused = pin(lab, "server-threaded", str(lab.ncpu))
    assert refused.returncode != 0
    assert "refusing" in refused.stderr and f"has {lab.ncpu} CPU" in refused.stderr, refused.stderr
    bad = pin(lab, "server-threaded", "zero")
    assert bad.returncode != 0 and "bad CPU list" in bad.stderr, bad.stderr
    unknown = pin(lab, "no-such-service", "0")
    assert unknown.returncode != 0 and "no running lab container" in unknown.stderr, unknown.stderr


# --- the master's live runs ---------------------------------------------------------------------

WRITE_RUN = "import os, sys; d = os.path.join(os.environ['LAB_LIVE_DIR'], sys.argv[1]); os.makedirs(d); " \
            "open(os.path.join(d, 'stats.csv'), 'w').write('ok')"


def test_live_runs_reach_the_host_and_survive_down(lab, tmp_path):
    """The master (read-only, user 10001) writes its runs into LAB_LIVE_DIR and nowhere else; `docker
    compose cp` brings them to the host; `down` without -v keeps them for the next master."""
    (master,) = lab.by_service()["locust-master"]
    stamp = f"labtest-{uuid.uuid4().hex[:8]}"
    run(["docker", "exec", master["Id"], "python", "-c", WRITE_RUN, stamp], 60, check=True)
    for elsewhere in ("/app/results/x", "/app/x", "/opt/lab/x"):
        write = run(["docker", "exec", master["Id"], "python", "-c", f"open({elsewhere!r}, 'w')"], 60)
        assert "Read-only file system" in write.stderr, (elsewhere, write.stderr)
    lab.compose("cp", f"locust-master:{LIVE_DIR}/.", str(tmp_path), timeout=60, check=True)
    assert (tmp_path / stamp / "stats.csv").read_text() == "ok"

    lab.compose("down", "--timeout", "5", timeout=120, check=True)
    seen = lab.compose("run", "--rm", "--no-deps", "-T", "locust-master", "cat", f"{LIVE_DIR}/{stamp}/stats.csv",
                       timeout=120, check=True)
    assert seen.stdout == "ok"
    lab.up()  # for the test after this one


# --- down (keep last: it stops the lab) -------------------------------------------------------

def test_down_completes_within_10s(lab):
    since = time.time()
    started = time.monotonic()
    proc = lab.compose("down", "-v", timeout=120, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(f"docker compose down took {elapsed:.1f}s")
    if elapsed >= DOWN_LIMIT_S:
        # say which container was slow: the engine's events during the down
        events = run(["docker", "events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                      "--filter", f"label=com.docker.compose.project={lab.project}", "--filter", "type=container",
                      "--format", "{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}"], 60).stdout
        timeline = "\n".join(f"{(int(t) / 1e9 - since):6.2f}s {rest}" for t, rest in
                              (line.split(" ", 1) for line in events.splitlines() if line and "exec_" not in line))
        pytest.fail(f"down took {elapsed:.1f}s (limit {DOWN_LIMIT_S:.0f}s); load average {os.getloadavg()}; "
                    f"events:\n{timeline}", pytrace=False)
    assert lab.containers() == []
