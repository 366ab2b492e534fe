"""The web UI asks for a password whenever the lab listens beyond loopback (lab.live.login, Locust's own
--web-login), and on 127.0.0.1 nothing changes.

Over real sockets: a Locust master of the lab's locustfiles on this machine, with LAB_BIND as compose
passes it (no Docker: the password generated and printed in the log, 127.0.0.1 asking nothing), and the
compose lab as a room reaches it (compose_lab.room_lab: LAB_BIND=0.0.0.0 with a LAB_PASSWORD and a
LAB_TOKEN of its own), driven in a real headless Chromium: the login page, then C2 run from the Lab view.
Without a session, what starts, stops or resets a run and what downloads its files is refused (401) and
the runner stays as it was. Screenshot of the login page: build/screenshots/lab-login.png.
"""
import contextlib
import re
import subprocess
import sys
import time

import pytest

from browser import chromium_driver, screenshot, wait_for_text  # noqa: F401  (fixtures, by import)
from clients.common import free_port
from compose_lab import room_env, room_lab  # noqa: F401  (fixtures, by import)
from conftest import REPO, clean_env
from lab.live import login
from test_workshop import open_lab_view, run_experiment, shape

START_TIMEOUT_S = 30  # a master on this machine answers in 2 to 4 s here
SETTLE_S = 2  # a /swarm that got through would have started its shape by then
GENERATED = re.compile(r"generated at start: (\S+)")
# What changes the run, and what downloads its files: Locust's own routes and the Lab view's.
# A Host not the lab's gets the same 401: without a session, not even the allow-list is told.
CHANGES = [("/swarm", {"shape_class": shape("C2"), "user_count": "1", "spawn_rate": "1"}),
           ("/swarm", {"user_count": "1", "spawn_rate": "1", "host": "tcp://elsewhere.example:9"}), ("/stop", {}),
           ("/stats/reset", {}), ("/lab/gil", {})]
DOWNLOADS = ["/stats/requests/csv", "/stats/failures/csv", "/exceptions/csv", "/stats/report?download=1",
             "/lab/files/live.json", "/lab/files/locust_hdr.hgrm"]
PAGE = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # what a browser's address bar asks for


def plain_session():
    import requests

    session = requests.Session()
    session.trust_env = False  # never through a proxy of the environment
    return session


@pytest.mark.fast
@pytest.mark.parametrize("bind, password, asks", [
    ("127.0.0.1", "", False), ("", "", False), ("127.0.1.1", "", False), ("::1", "", False), ("[::1]", "", False),
    ("localhost", "", False), ("0.0.0.0", "", True), ("192.168.1.20", "", True), ("::", "", True),
    ("lab.example", "", True), ("127.0.0.1", "secret", True)])
def test_the_web_ui_asks_beyond_loopback_or_with_a_password(bind, password, asks):
    assert login.needed({"LAB_BIND": bind, "LAB_PASSWORD": password}) is asks


@pytest.mark.fast
def test_the_login_comes_back_only_to_a_page_of_this_server():
    assert login.safe_next("/lab?projector=1") == "/lab?projector=1"
    assert [login.safe_next(path) for path in (None, "", "//evil.example/", "/\\evil.example", "/login",
                                               "http://evil.example/")] == [None] * 6


@contextlib.contextmanager
def local_master(tmp_path, **settings):
    """A Locust master of the lab's locustfiles on 127.0.0.1 (web UI and master port the kernel's picks),
    with `settings` as compose would pass them; yields (its web UI's URL, its log's path); stopped on exit."""
    web_port, master_port = free_port(), free_port()
    log = tmp_path / "master.log"
    env = {**clean_env(), "LAB_LIVE_DIR": str(tmp_path / "live"), **settings}
    with open(log, "wb") as out:
        master = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles"), "--master", "--class-picker",
             "--web-host", "127.0.0.1", "--web-port", str(web_port), "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(master_port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{web_port}"
    try:
        session, deadline = plain_session(), time.monotonic() + START_TIMEOUT_S
        while True:
            assert master.poll() is None, log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                if session.get(f"{url}/", timeout=2).status_code in (200, 401):
                    break
            assert time.monotonic() < deadline, f"the master did not answer in {START_TIMEOUT_S} s:\n{log.read_text()}"
            time.sleep(0.2)
        yield url, log
    finally:
        master.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            master.wait(timeout=15)
        master.kill()  # nothing, once it has ended
        master.wait(timeout=15)


def refusals(session, url):
    """{path: status} of every change and download asked without a session: each should be 401."""
    statuses = {}
    for path, data in CHANGES:
        reply = session.post(f"{url}{path}", data=data, timeout=10)
        assert "LAB_EXTRA_TARGETS" not in reply.text, (path, reply.text)
        statuses[path] = reply.status_code if statuses.get(path, reply.status_code) == reply.status_code else "differ"
    for path in DOWNLOADS:
        reply = session.get(f"{url}{path}", timeout=10)
        assert "Type,Name" not in reply.text and "Percentile" not in reply.text, (path, reply.text[:200])
        statuses[path] = reply.status_code
    return statuses


def log_in(session, url, password):
    """The login form sent as a browser sends it; the page it leads to."""
    return session.post(f"{url}{login.SUBMIT_PATH}", data={"password": password}, allow_redirects=False,
                        timeout=10).headers["Location"]


def test_on_loopback_nothing_asks_for_a_password(tmp_path):
    with local_master(tmp_path, LAB_BIND="127.0.0.1") as (url, log):
        session = plain_session()
        assert [session.get(f"{url}{path}", timeout=10).status_code for path in ("/", "/lab", "/lab/data")] == [200] * 3
        assert session.post(f"{url}/stats/reset", timeout=10).status_code == 200
        assert session.get(f"{url}/login", allow_redirects=False, timeout=10).status_code == 302  # to the UI
        assert "password" not in log.read_text().lower()


def test_beyond_loopback_a_password_generated_at_start_is_in_the_masters_log(tmp_path):
    with local_master(tmp_path, LAB_BIND="0.0.0.0", LAB_TOKEN="room-token") as (url, log):
        found = GENERATED.search(log.read_text())
        assert found, log.read_text()
        session = plain_session()
        assert set(refusals(session, url).values()) == {401}
        assert session.get(f"{url}/lab/data", timeout=10).status_code == 401
        page = session.get(f"{url}/lab?projector=1", headers=PAGE, allow_redirects=False, timeout=10)
        assert page.status_code == 302 and page.headers["Location"] == "/login"
        assert "Lab password" in session.get(f"{url}/login", timeout=10).text
        assert log_in(session, url, "not-the-password") == "/login"
        assert "Wrong password" in session.get(f"{url}/login", timeout=10).text
        assert log_in(session, url, found.group(1)) == "/lab?projector=1"  # back where it was going
        assert session.get(f"{url}/lab/data", timeout=10).json()["locust_state"] == "ready"
        # the GIL sampler has no session: its token gets its post to the controller (which finds no second in
        # it), a wrong one does not
        gil = f"{url}/lab/gil"
        assert plain_session().post(gil, json={}, headers={"X-Lab-Token": "room-token"}, timeout=10).status_code == 400
        assert plain_session().post(gil, json={}, headers={"X-Lab-Token": "wrong"}, timeout=10).status_code == 401


def test_a_password_in_env_is_asked_on_loopback_too_and_never_logged(tmp_path):
    with local_master(tmp_path, LAB_BIND="127.0.0.1", LAB_PASSWORD="room-password") as (url, log):
        session = plain_session()
        assert session.get(f"{url}/lab/data", timeout=10).status_code == 401
        assert log_in(session, url, "room-password") == "/"
        assert session.get(f"{url}/lab/data", timeout=10).status_code == 200
        assert "LAB_PASSWORD" in log.read_text() and "room-password" not in log.read_text()


def runner_state(room_lab):
    data = room_lab.ui("/lab/data")
    return data["locust_state"], data["run"]


def test_in_the_room_nothing_changes_or_downloads_without_a_session(room_lab):
    before = runner_state(room_lab)
    assert before[0] in ("ready", "stopped"), before
    session = plain_session()
    statuses = refusals(session, room_lab.url(""))
    time.sleep(SETTLE_S)
    assert statuses == {path: 401 for path in statuses}, statuses
    assert runner_state(room_lab) == before  # nothing started, nothing stopped
    with pytest.raises(AssertionError, match="refused the password"):
        room_lab.session("not-the-password")
    page = session.get(room_lab.url("/lab"), headers=PAGE, allow_redirects=False, timeout=10)
    assert page.status_code == 302 and page.headers["Location"] == "/login"
    # the GIL sampler's token, not a session
    posted = session.post(room_lab.url("/lab/gil"), json={}, headers={"X-Lab-Token": room_lab.token}, timeout=10)
    assert posted.status_code == 400, posted.text
    logs = room_lab.compose("logs", "--no-color", "locust-master", timeout=60).stdout
    assert "asks for LAB_PASSWORD" in logs and room_lab.password not in logs


def test_in_the_room_the_lab_view_asks_for_the_password_then_runs_c2(room_lab, chromium_driver):
    driver = chromium_driver
    driver.get(room_lab.url("/lab"))
    wait_for_text(driver, "body", lambda text: "Lab password" in text and "LAB_PASSWORD" in text,
                  what="Locust's login page with the lab's hint")
    screenshot(driver, "lab-login")
    field = driver.find_element("css selector", "input[name=password]")
    field.send_keys("not-the-password")
    field.submit()
    wait_for_text(driver, "body", lambda text: "Wrong password" in text, what="the wrong password refused")
    field = driver.find_element("css selector", "input[name=password]")
    field.send_keys(room_lab.password)
    field.submit()
    wait_for_text(driver, "#status", lambda text: text and not text.startswith("connecting"),
                  what="the Lab view, after the login")
    assert driver.current_url == room_lab.url("/lab")
    verdict, measured = run_experiment(driver, room_lab, "C2")
    assert verdict["state"] == "final" and verdict["verdict"], (verdict, measured)
    open_lab_view(driver, room_lab)  # the session holds: the view again, no login page
