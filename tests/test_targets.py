"""The lab's load connects only to the lab's servers (lab.targets, locustfiles/_targets.py): the allow-list
itself, fast; then real Locust processes with a counting listener beside them, on this machine's own
non-loopback address (loopback is allowed), which must see 0 connections from a refused --host, a refused
Start in the web UI and a worker whose master let the host through, and more than 0 once the same target
is allowed on purpose, so that each test could fail; then the compose lab, with the listener in a container
on the lab's own network, where the tester's flood came from.

Every wait is bounded in count and time; every process and container is stopped at the end.
"""
import contextlib
import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from types import SimpleNamespace

import pytest

from browser import chromium_driver, screenshot, wait_for_text  # noqa: F401  (fixtures, by import)
from clients.common import free_port
from compose_lab import built, lab_env  # noqa: F401  (fixtures, by import)
from conftest import LAB_IMAGE, REPO, run, unavailable
from lab import targets
from lab.live.forms import PUBLISHED, service
from server.protocol import PORT

UI_TIMEOUT_S = 30
QUIET_S = 3  # how long a refused target is watched for a connection that must not come
REACHED_TIMEOUT_S = 20  # how long an allowed target may take to see its first connection
SINK_PORT = 9999
SINK_ALIAS = "room-probe-sink"  # the tester's name: refused
OPEN_ALIAS = "room-probe-open"  # the same listener allowed on purpose in this module's lab (LAB_EXTRA_TARGETS)
# A counting TCP server for a container: one line per accepted connection, read with docker logs.
SINK_CODE = ("import socket\ns = socket.create_server(('0.0.0.0', %d))\nprint('listening', flush=True)\n"
             "while True:\n    c, _ = s.accept()\n    print('accepted', flush=True)\n    c.close()\n") % SINK_PORT

ALLOWED = targets.Targets()


def locust(*args, locustfile="perf2.py"):
    """A Locust command line on one of the lab's locustfiles ('': the whole directory, as compose runs it)."""
    return [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / locustfile), "--loglevel", "WARNING",
            *args]


# --- the allow-list, fast ---------------------------------------------------------------------------------

@pytest.mark.fast
def test_the_compose_servers_are_allowed_on_their_port_only():
    for strategy in PUBLISHED:
        assert ALLOWED.refusal(f"tcp://{service(strategy)}:{PORT}") is None
        assert ALLOWED.refusal(f"{service(strategy).upper()}.:{PORT}") is None  # as DNS compares names
        assert ALLOWED.refusal(f"tcp://{service(strategy)}:{PORT + 1}")
    assert ALLOWED.refusal(f"tcp://server-nothing:{PORT}")


@pytest.mark.fast
def test_the_runners_own_servers_are_allowed_by_the_name_the_runner_gives_them():
    from lab.runner.containers import Server
    host = Server(SimpleNamespace(name="lab-run-20261206T091500Z-ab12cd"), "threaded", (), "0").host
    assert ALLOWED.refusal(f"tcp://{host}:{PORT}") is None
    assert ALLOWED.refusal(f"tcp://{host}:22")
    assert ALLOWED.refusal(f"tcp://x{host}:{PORT}")


@pytest.mark.fast
def test_loopback_is_allowed_on_any_port_and_only_loopback():
    for host in ("127.0.0.1", "127.3.2.1", "[::1]", "localhost", "LocalHost."):
        assert ALLOWED.refusal(f"tcp://{host}:1234") is None, host
    for host in ("192.0.2.2", "0.0.0.0", "127.0.0.1.nip.io", "localhost.example", "[fd00::2]", "room-probe-sink"):
        assert ALLOWED.refusal(f"tcp://{host}:1234"), host


@pytest.mark.fast
def test_an_outside_worker_reaches_the_published_ports_of_its_lab_servers_host_only():
    outside = targets.Targets.from_settings("teacher", "310")
    published = [f"teacher:310{n}" for n in range(1, len(PUBLISHED) + 1)]
    assert [outside.refusal(f"tcp://{address}") for address in published] == [None] * len(PUBLISHED)
    assert outside.refusal(f"tcp://teacher:310{len(PUBLISHED) + 1}") and outside.refusal("tcp://teacher:22")
    assert ALLOWED.refusal("tcp://teacher:3101")  # not without --lab-servers
    # one Host for every worker: a compose service, through its published port outside compose
    assert [outside.reach(f"tcp://{service(s)}:{PORT}") for s in PUBLISHED] == [f"tcp://{a}" for a in published]
    assert ALLOWED.reach(f"tcp://{service(PUBLISHED[1])}:{PORT}") == f"tcp://{service(PUBLISHED[1])}:{PORT}"
    assert outside.reach("tcp://127.0.0.1:25000") == "tcp://127.0.0.1:25000"


@pytest.mark.fast
def test_an_extra_target_is_allowed_as_given_and_a_refusal_says_how_in_one_line():
    refusal = ALLOWED.refusal(f"tcp://{SINK_ALIAS}:{SINK_PORT}")
    assert "\n" not in refusal and f"add {SINK_ALIAS}:{SINK_PORT} to LAB_EXTRA_TARGETS" in refusal
    assert "--lab-extra-targets" in refusal and refusal.startswith(f"tcp://{SINK_ALIAS}:{SINK_PORT} is not")
    extra = targets.Targets.from_settings(extra=f" {SINK_ALIAS.upper()}:{SINK_PORT} , other:1,")
    assert extra.extra == {(SINK_ALIAS, SINK_PORT), ("other", 1)}
    assert extra.refusal(f"tcp://{SINK_ALIAS}:{SINK_PORT}") is None
    assert extra.refusal(f"tcp://{SINK_ALIAS}:{SINK_PORT + 1}") and extra.refusal(f"tcp://other:{SINK_PORT}")
    with pytest.raises(ValueError, match="^LAB_EXTRA_TARGETS takes NAME:PORT entries, comma-separated, got 'x'$"):
        targets.Targets.from_settings(extra="a:1,x")
    assert ALLOWED.refusal("http://x:1") == "the host must be tcp://NAME:PORT, got 'http://x:1'"


@pytest.mark.fast
def test_compose_gives_locust_the_extra_targets_and_env_ships_none():
    assert "\nLAB_EXTRA_TARGETS=\n" in (REPO / ".env").read_text()
    anchor = (REPO / "compose.yaml").read_text().split("environment: &load-cpus\n", 1)[1].split("\n  stop_", 1)[0]
    assert 'LAB_EXTRA_TARGETS: "${LAB_EXTRA_TARGETS:-}"' in anchor  # the master's and the workers' environment


# --- real Locust processes, a listener beside them ----------------------------------------------------------

def outside_address():
    """This machine's first non-loopback IPv4 address (`hostname -I`): not the lab's, yet only here."""
    try:
        found = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        found = []
    for address in found:
        if "." in address and not address.startswith("127."):
            return address
    unavailable("this machine has no non-loopback IPv4 address (hostname -I) for a listener the lab must not reach")


class Listener:
    """A TCP listener on `address`, on a free port, counting the connections it accepts (each closed at once)."""

    def __init__(self, address):
        self.sock = socket.create_server((address, 0))
        self.sock.settimeout(0.2)
        self.address, self.port = address, self.sock.getsockname()[1]
        self.url = f"tcp://{address}:{self.port}"
        self.count = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.count += 1
            connection.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def reached_within(self, seconds):
        deadline = time.monotonic() + seconds
        while self.count == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.count


@pytest.fixture
def sink():
    with Listener(outside_address()) as listener:
        yield listener


def headless(host, *args, users=5, seconds=3):
    return ["--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", host, *args]


def refusal_lines(stderr):
    return [line for line in stderr.splitlines() if "ERROR" in line]


def assert_refused_in_one_line(proc, listener):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = refusal_lines(proc.stderr)
    assert len(lines) == 1 and f"{listener.url} is not one of the lab's servers" in lines[0], proc.stderr[-2000:]


@contextlib.contextmanager
def started(*argv):
    """A Locust process running in the background; killed (its output kept in proc.output) at the end."""
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.output = proc.communicate(timeout=30)[1]


def test_a_local_run_to_a_host_not_the_labs_exits_2_in_one_line_and_sends_nothing(sink):
    proc = subprocess.run(locust(*headless(sink.url)), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_refused_in_one_line(proc, sink)
    time.sleep(1)
    assert sink.count == 0


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_same_host_allowed_on_purpose_is_reached(sink, how):
    extra = f"{sink.address}:{sink.port}"
    opt_in = {"flag": (["--lab-extra-targets", extra], None), "env": ([], {"LAB_EXTRA_TARGETS": extra})}[how]
    env = {**os.environ, **(opt_in[1] or {})}
    proc = subprocess.run(locust(*headless(sink.url, *opt_in[0])), cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: its requests fail, the listener closes them
    assert sink.count > 0


def test_a_master_and_a_worker_with_a_host_not_the_labs_exit_2_in_one_line(sink):
    master_port = free_port()
    proc = subprocess.run(locust("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                         str(master_port), "--expect-workers", "1", *headless(sink.url)),
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_refused_in_one_line(proc, sink)
    # A worker's init comes once a master has answered it: a master with a host of the lab's, for the worker.
    with started(*locust("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                                 str(master_port), "--expect-workers", "1", "--expect-workers-max-wait", "60",
                                 *headless("tcp://127.0.0.1:1"))):
        worker = subprocess.run(locust("--worker", "--master-host", "127.0.0.1", "--master-port",
                                               str(master_port), "--host", sink.url),
                                cwd=REPO, capture_output=True, text=True, timeout=60)
    assert_refused_in_one_line(worker, sink)
    assert sink.count == 0


def test_a_worker_refuses_a_host_its_master_let_through_and_reports_it_once(sink, tmp_path):
    master_port, prefix = free_port(), tmp_path / "run"
    worker_argv = locust("--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port))
    with started(*worker_argv) as worker:
        master = subprocess.run(
            locust("--master", "--master-bind-host", "127.0.0.1", "--master-bind-port",
                           str(master_port), "--expect-workers", "1", "--expect-workers-max-wait", "30",
                           "--lab-extra-targets", f"{sink.address}:{sink.port}", "--csv", str(prefix),
                           *headless(sink.url, users=20)),
            cwd=REPO, capture_output=True, text=True, timeout=90)
        worker.wait(timeout=30)  # the master tells its worker to quit
    assert master.returncode == 1, master.stderr[-2000:]  # a failure: the refusal
    assert sink.count == 0
    with open(f"{prefix}_failures.csv", newline="") as failures:
        rows = list(csv.DictReader(failures))
    assert [row["Occurrences"] for row in rows] == ["1"], rows
    assert targets.Targets().refusal(sink.url) in rows[0]["Error"]
    assert len([line for line in worker.output.splitlines() if "is not one of the lab's servers" in line]) == 1


def post_swarm(ui, host):
    """POST /swarm as the start form does, with Perf2User; (status, body)."""
    body = urllib.parse.urlencode({"user_count": 5, "spawn_rate": 5, "host": host, "user_classes": "Perf2User"})
    return post(urllib.request.Request(f"{ui}/swarm", data=body.encode()))


def post_user_settings(ui, host):
    """POST /user as the start form's user class editor does, for Perf2User; (status, body)."""
    body = json.dumps({"user_class_name": "Perf2User", "host": host}).encode()
    request = urllib.request.Request(f"{ui}/user", data=body, headers={"Content-Type": "application/json"})
    return post(request)


def post(request):
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def ui_state(ui):
    with urllib.request.urlopen(f"{ui}/stats/requests", timeout=10) as reply:
        stats = json.loads(reply.read().decode())
    return stats["state"], stats["user_count"]


def wait_for_ui(ui, proc):
    deadline = time.monotonic() + UI_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            return ui_state(ui)
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"Locust's web UI at {ui} did not answer within {UI_TIMEOUT_S} s")


def assert_start_refused(ui, listener):
    status, body = post_swarm(ui, listener.url)
    assert status == 200 and "\n" not in body.strip(), (status, body)  # as Locust's own refusals: its form shows it
    assert json.loads(body) == {"success": False, "message": targets.Targets().refusal(listener.url)}
    time.sleep(QUIET_S)
    assert listener.count == 0
    assert ui_state(ui)[1] == 0


def test_the_web_uis_start_refuses_a_host_not_the_labs_and_starts_the_one_allowed_on_purpose(sink):
    with Listener(sink.address) as allowed:
        ui_port = free_port()
        ui = f"http://127.0.0.1:{ui_port}"
        with started(*locust("--class-picker", "--web-host", "127.0.0.1", "--web-port", str(ui_port),
                                     "--lab-extra-targets", f"{allowed.address}:{allowed.port}",
                                     locustfile="")) as proc:
            assert wait_for_ui(ui, proc)[0] == "ready"
            assert_start_refused(ui, sink)
            status, body = post_user_settings(ui, sink.url)  # the user class's own host, from the web
            assert status == 400 and json.loads(body)["message"] == targets.Targets().refusal(sink.url), body
            status, body = post_swarm(ui, allowed.url)
            assert status == 200 and json.loads(body)["success"], body
            assert allowed.reached_within(REACHED_TIMEOUT_S) > 0


def test_locusts_start_form_shows_the_refusal_in_one_line_and_sends_nothing(sink, chromium_driver):
    """In the real browser: the Host typed in Locust's own start form, Start pressed; the form shows the
    line (Locust's forms show a refusal's message only from a 200 with success false)."""
    from selenium.webdriver.common.keys import Keys

    ui_port = free_port()
    with started(*locust("--web-host", "127.0.0.1", "--web-port", str(ui_port))) as proc:
        ui = f"http://127.0.0.1:{ui_port}"
        assert wait_for_ui(ui, proc)[0] == "ready"
        driver = chromium_driver
        driver.get(ui)
        wait_for_text(driver, "form", lambda text: "Start" in text or "START" in text, what="Locust's start form")
        host = driver.find_element("css selector", "form input[name='host']")
        host.send_keys(Keys.CONTROL, "a")
        host.send_keys(Keys.DELETE, sink.url)
        driver.find_element("css selector", "form button[type='submit']").click()
        shown = wait_for_text(driver, "form", lambda text: "is not one of the lab's servers" in text,
                              what="the refusal under Locust's start form")
        screenshot(driver, "start-form-refused-host")
        assert targets.Targets().refusal(sink.url) in shown
        time.sleep(QUIET_S)
        assert sink.count == 0
        assert ui_state(ui)[1] == 0


# --- the compose lab: a listener on the lab's own network ---------------------------------------------------

@pytest.fixture(scope="module")
def lab(built):
    """This module's compose lab, with OPEN_ALIAS:SINK_PORT allowed on purpose (LAB_EXTRA_TARGETS)."""
    built.env["LAB_EXTRA_TARGETS"] = f"{OPEN_ALIAS}:{SINK_PORT}"
    built.up()
    return built


@contextlib.contextmanager
def sink_container(lab, alias):
    """The counting server in a container beside the lab, on its compose network as `alias`; removed at the end.
    Yields a function that counts the connections it accepted so far."""
    name = f"{alias}-{uuid.uuid4().hex[:8]}"
    run(["docker", "run", "-d", "--name", name, "--network", f"{lab.project}_default", "--network-alias", alias,
         LAB_IMAGE, "python", "-c", SINK_CODE], 60, check=True)

    def accepted():
        return run(["docker", "logs", name], 30, check=True).stdout.splitlines().count("accepted")
    try:
        deadline = time.monotonic() + 30
        while "listening" not in run(["docker", "logs", name], 30).stdout and time.monotonic() < deadline:
            time.sleep(0.5)
        yield accepted
    finally:
        run(["docker", "rm", "-f", name], 60)


def test_the_labs_start_refuses_a_listener_on_its_own_network_and_reaches_one_allowed_on_purpose(lab):
    ui = f"http://127.0.0.1:{lab.ui_port}"
    with sink_container(lab, SINK_ALIAS) as refused, sink_container(lab, OPEN_ALIAS) as allowed:
        status, body = post_swarm(ui, f"tcp://{SINK_ALIAS}:{SINK_PORT}")
        assert status == 200 and "\n" not in body.strip(), (status, body)
        assert not json.loads(body)["success"]
        assert json.loads(body)["message"] == targets.Targets().refusal(f"tcp://{SINK_ALIAS}:{SINK_PORT}")
        time.sleep(QUIET_S * 2)
        assert refused() == 0
        assert ui_state(ui)[1] == 0
        try:
            status, body = post_swarm(ui, f"tcp://{OPEN_ALIAS}:{SINK_PORT}")
            assert status == 200 and json.loads(body)["success"], body
            deadline = time.monotonic() + REACHED_TIMEOUT_S
            while allowed() == 0 and time.monotonic() < deadline:
                time.sleep(1)
            assert allowed() > 0
        finally:
            urllib.request.urlopen(f"{ui}/stop", data=b"", timeout=10).close()
        assert refused() == 0
