"""The lab on linux/arm64, built and run on this amd64 machine under emulation (qemu-user-static
with binfmt_misc: scripts/install-qemu, which scripts/ci-prepare runs): the arm64 offline base and lab
image from the one Dockerfile with the README's command (scripts/build-platforms --platforms linux/arm64
--offline), then the image as a room would use it: uname -m inside, the article's clients against an
arm64 server, and an arm64 Locust worker that joins the amd64 lab image's master, as an Apple Silicon
laptop joins the teacher's, its µs histograms merged there.

Timings under emulation mean nothing (5 to 20 times slower): nothing here asserts one. Every container
runs on a network of its own with no way out (--internal), every command has a time limit, and a
finalizer removes them all.
"""
import json
import time
import uuid

import pytest

from conftest import LAB_IMAGE, REPO, run, unavailable

pytestmark = pytest.mark.docker

ARM64_IMAGE = "concurrency-lab:arm64"
# A cold build here (fresh-clone CI, 2026-12-04): the base about 6 min, the image about 11 min.
BUILD_TIMEOUT_S = 1500
JOIN_TIMEOUT_S = 300  # an emulated Locust takes tens of seconds to start
# A whole Locust run with the emulated worker is not tested here: under qemu-user 7.2 its user's spawn
# blocks it for seconds, so it sends no heartbeat and the master drops it as missing with no request
# counted (2026-12-06: every spawn of 12, through a headless master and through the web UI, before and
# after a 25 s wait for it to settle, with --rate 20). What such a run needs of the two architectures
# is tested apart: the join (Locust's messages) and the histograms' merge (what the worker ships).


@pytest.fixture(scope="module")
def arm64_image(docker_engine, lab_image):
    """The arm64 lab image, built by scripts/build-platforms (offline); its name."""
    check = run([str(REPO / "scripts" / "install-qemu"), "--check", "arm64"], 30)
    if check.returncode != 0:
        unavailable(f"arm64 programs do not run here: {(check.stderr or check.stdout).strip()} "
                    "(scripts/install-qemu sets that up)")
    started = time.monotonic()
    proc = run([str(REPO / "scripts" / "build-platforms"), "--platforms", "linux/arm64", "--offline"],
               BUILD_TIMEOUT_S, check=True)
    print(f"arm64 base and image in {time.monotonic() - started:.0f} s:\n{proc.stdout[-2000:]}")
    return ARM64_IMAGE


@pytest.fixture
def network():
    """A private network with no way out, and start(alias, *command) for arm64 containers on it; all removed
    at the end."""
    name = f"labtest-arm64-{uuid.uuid4().hex[:8]}"
    run(["docker", "network", "create", "--internal", name], 60, check=True)
    started = []

    def start(alias, *command):
        """An arm64 container of the lab image, in the background, known on the network as `alias`."""
        container = f"{name}-{alias}"
        run(["docker", "run", "-d", "--name", container, "--network", name, "--network-alias", alias,
             "--platform", "linux/arm64", ARM64_IMAGE, *command], 120, check=True)
        started.append(container)
        return container

    start.name = name
    yield start
    if started:
        run(["docker", "rm", "-f", *started], 120)
    run(["docker", "network", "rm", name], 60)


def in_arm64(*command, network=None, timeout=180):
    """A command in a new arm64 container of the lab image (on `network`, if given); its output."""
    where = ["--network", network] if network else ["--network", "none"]
    return run(["docker", "run", "--rm", *where, "--platform", "linux/arm64", ARM64_IMAGE, *command], timeout,
               check=True).stdout


def wait_until_answers(container, timeout=120):
    """The server's own health check in its container (fib(10) over a real connection), until it passes."""
    deadline = time.monotonic() + timeout
    while True:
        proc = run(["docker", "exec", container, "python", "-S", "-m", "server.healthcheck"], 120)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(2)


def test_the_image_is_arm64_inside_with_hdr_latency_and_no_compiler(arm64_image):
    inspect = json.loads(run(["docker", "image", "inspect", ARM64_IMAGE], 30, check=True).stdout)[0]
    assert (inspect["Os"], inspect["Architecture"]) == ("linux", "arm64"), inspect["Architecture"]
    assert in_arm64("uname", "-m").strip() == "aarch64"
    # hdrhistogram has no aarch64 wheel: the build stage compiled it, and the image has it
    out = in_arm64("python", "-c", "import platform, pyhdrh; from hdrh.histogram import HdrHistogram; "
                   "h = HdrHistogram(1, 3600000000, 3); h.record_value(250); "
                   "print(platform.machine(), h.get_value_at_percentile(50))")
    assert out.split() == ["aarch64", "250"], out
    # ... from its source, here (a wheel from the index would say manylinux), with a compiler in that
    # stage only
    wheel = in_arm64("sh", "-c", "cat /opt/lab/lib/python3*/site-packages/hdrhistogram-*.dist-info/WHEEL")
    assert "Tag: cp313-cp313-linux_aarch64" in wheel.splitlines(), wheel
    assert in_arm64("sh", "-c", "command -v gcc cc || echo none").strip() == "none"


def test_an_arm64_server_answers_the_articles_clients(arm64_image, network):
    server = network("server", "python", "-m", "server", "--strategy", "threaded", "--host", "0.0.0.0",
                     "--port", "25000")
    assert wait_until_answers(server).returncode == 0, run(["docker", "logs", server], 30).stderr
    # the article's wire: a number and a newline as nc sends it, and the bare number perf1 sends
    assert in_arm64("python", "-m", "clients", "request", "server", "20", network=network.name).split()[0] == "6765"
    assert in_arm64("python", "-m", "clients", "request", "server", "20", "--bare",
                    network=network.name).split()[0] == "6765"
    perf1 = json.loads(in_arm64("python", "-m", "clients", "perf1", "server", "--n", "20", "--count", "5", "--json",
                                network=network.name).strip().splitlines()[-1])
    assert perf1["count"] == 5 and perf1["mean_s"] > 0, perf1
    # and the amd64 image's client against the arm64 server: one protocol across the room
    out = run(["docker", "run", "--rm", "--network", network.name, LAB_IMAGE, "python", "-m", "clients", "request",
               "server", "30"], 120, check=True).stdout
    assert out.split()[0] == "832040", out


def test_an_arm64_locust_worker_joins_an_amd64_master(arm64_image, network, tmp_path):
    """An Apple Silicon laptop's worker joins the teacher's amd64 master: Locust's ZeroMQ messages between
    the two architectures, over the lab's own network."""
    locustfile = "/app/locustfiles/perf2.py"
    network("worker", "locust", "-f", locustfile, "--worker", "--master-host", "master", "--master-port", "5557")
    master = f"{network.name}-master"
    run(["docker", "run", "-d", "--name", master, "--network", network.name, "--network-alias", "master",
         "--platform", "linux/amd64", LAB_IMAGE, "locust", "-f", locustfile, "--master", "--web-port", "8089",
         "--host", "tcp://server-threaded:25000"], 120, check=True)  # the lab's servers only (lab.targets)
    try:
        joined_in = wait_for_a_ready_worker(master)
        workers = ui(master, "/stats/requests")["workers"]
        logs = run(["docker", "logs", master], 30).stderr
    finally:
        run(["docker", "rm", "-f", master], 60)
    print(f"the emulated worker was ready {joined_in:.0f} s after the master started")
    assert [worker["state"] for worker in workers] == ["ready"], workers
    assert "reported as ready. 1 workers connected" in logs, logs[-3000:]


def test_an_arm64_workers_histograms_merge_on_an_amd64_master(arm64_image):
    """What a worker ships to the master (locustfiles/_latency: each request name's HDR histogram, encoded,
    and its per-second counts), made on arm64 and added on amd64, as the master adds it: the same counts
    and the same µs percentiles on both sides."""
    # (Locust ships the bytes with msgpack; here they cross as base64 in JSON)
    record = ("import base64, json, sys; import _latency\n"
              "recorder = _latency.LatencyRecorder()\n"
              "for i in range(1, 2001): recorder.on_request('fib(1)', response_time=i / 10)\n"
              "h = recorder.flush()['fib(1)']\n"
              "mine = [h.get_total_count(), *(h.get_value_at_percentile(p) for p in (50, 99, 100))]\n"
              "encoded, seconds = recorder.take_encoded()\n"
              "encoded = {name: base64.b64encode(blob).decode() for name, blob in encoded.items()}\n"
              "print(json.dumps({'mine': mine, 'encoded': encoded, 'seconds': seconds}))")
    shipped = json.loads(in_arm64("env", "PYTHONPATH=/app/locustfiles", "python", "-c", record).splitlines()[-1])
    add = ("import base64, json, sys; import _latency\n"
           "shipped = json.loads(sys.argv[1])\n"
           "encoded = {name: base64.b64decode(text) for name, text in shipped['encoded'].items()}\n"
           "recorder = _latency.LatencyRecorder()\n"
           "added = recorder.add_encoded(encoded, shipped['seconds'])\n"
           "h = recorder.flush()['fib(1)']\n"
           "print(json.dumps([added, h.get_total_count(), *(h.get_value_at_percentile(p) for p in (50, 99, 100))]))")
    proc = run(["docker", "run", "--rm", "--network", "none", "--platform", "linux/amd64", LAB_IMAGE,
                "env", "PYTHONPATH=/app/locustfiles", "python", "-c", add, json.dumps(shipped)], 120, check=True)
    added, *merged = json.loads(proc.stdout.splitlines()[-1])
    assert shipped["mine"][0] == 2000 and added == 2000, (shipped["mine"], added)
    assert merged == shipped["mine"], (merged, shipped["mine"])
    assert sum(row[1] for rows in shipped["seconds"].values() for row in rows) == 2000, shipped["seconds"]


def ui(master, path, form=None):
    """The master's web UI inside its container (the network has no way out): GET, or POST a form; JSON."""
    code = ("import json, sys, urllib.parse, urllib.request\n"
            "form = json.loads(sys.argv[2])\n"
            "body = urllib.parse.urlencode(form).encode() if form is not None else None\n"
            "print(urllib.request.urlopen('http://127.0.0.1:8089' + sys.argv[1], body, timeout=10).read().decode())")
    proc = run(["docker", "exec", master, "python", "-c", code, path, json.dumps(form)], 60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def wait_for_a_ready_worker(master):
    """Seconds until the master's web UI answers and its one worker is ready (bounded by JOIN_TIMEOUT_S)."""
    started = time.monotonic()
    while True:
        assert time.monotonic() - started < JOIN_TIMEOUT_S, (
            "the emulated worker did not join", run(["docker", "logs", master], 30).stderr[-3000:])
        time.sleep(1)
        try:
            workers = ui(master, "/stats/requests").get("workers", [])
        except AssertionError:  # the web UI is not up yet
            continue
        if [w["state"] for w in workers] == ["ready"]:
            return time.monotonic() - started
