"""Only the lab's workers count (lab.live.controller's WorkerGate, locustfiles/workshop.py's lab_hello), and
only the GIL sampler's posts that carry LAB_TOKEN reach the Lab view.

Fast: the gate, token_ok and the master's start check on their own, and the live controller with a token
(a refused worker's one-shot messages dropped, its users making the run partial). _latency's merge that
leaves out a refused worker's reports is checked in the room, where they would show.

Over real sockets: the compose lab as a room reaches it (compose_lab.room_lab: LAB_BIND=0.0.0.0, a
LAB_PASSWORD and a LAB_TOKEN of its own). A worker on this machine with --lab-token counts; the lab's
workers without it, or with a wrong one, are told so and stop; a worker that is not the lab's at all
(FAKE, in the test's folder) stays, is listed as refused in /lab/data and in the Lab view in Chromium, and
its absurdly fast requests (1 µs, about 1,000 a second, under C4's own request name) reach Locust's own
statistics but not the verdict, its percentiles, its per-second counts or its per-worker counts.
Screenshot: build/screenshots/lab-view-refused-worker.png (docs/images/ keeps one).
"""
import contextlib
import socket
import subprocess
import sys
import time
import types

import pytest

from browser import chromium_driver, screenshot, wait_for_text  # noqa: F401  (fixtures, by import)
from compose_lab import room_env, room_lab  # noqa: F401  (fixtures, by import)
from conftest import REPO, clean_env
from test_live_controller import FORMS, T0, TWO_CPUS, controller, tick_at
from test_workshop import END_S, open_lab_view, shape

from lab.live import controller as live_controller
from lab.live.controller import PROVE_S, WorkerGate, token_missing, token_ok, worker_proof

TOKEN = "room-token-for-the-test"
C4_REQUEST = FORMS["C4"].roles[0].request_name
REFUSED_S = 30  # a worker refused and gone (a wrong proof: at once; none: PROVE_S), here in 1 to 6 s
REPORTS_S = 4  # the workers' last reports after a run (every 3 s)

# A worker that is not the lab's: no token, and requests it never sent, reported as the lab's workers report
# theirs (_latency ships its histograms and per-second counts in every report), under C4's request name. It
# runs beside the lab's scenario locustfiles (fake_files below), not workshop.py, and names its user classes
# as workshop.py does: a worker must know every user class the master names, or its spawning fails. It finds
# _latency through worker()'s PYTHONPATH.
FAKE = '''
import gevent
import _latency  # noqa: F401
from locust import User, constant, events, task
from locust.runners import WorkerRunner
from lab.experiments import live


def fake_requests(environment):
    while True:
        for _ in range(100):
            environment.events.request.fire(request_type="TCP", name={name!r}, response_time=0.001,
                                            response_length=0, exception=None, context={{}})
        gevent.sleep(0.1)


@events.init.add_listener
def start(environment, **_):
    if isinstance(environment.runner, WorkerRunner):
        gevent.spawn(fake_requests, environment)


class FakeUser(User):
    abstract = True
    wait_time = constant(1)

    @task
    def nothing(self):
        pass


for form in live().values():
    for role in form.roles:
        name = form.key + "_" + role.key
        globals()[name] = type(name, (FakeUser,), {{"__module__": __name__}})
'''


# ---------------------------------------------------------------- fast: the gate, the token, the controller


@pytest.mark.fast
def test_the_gate_counts_a_right_proof_and_refuses_a_wrong_one_none_or_one_too_late():
    gate = WorkerGate(TOKEN)
    for worker in ("right", "wrong", "none", "silent"):
        gate.seen(worker, T0)
    assert gate.proved("right", worker_proof(TOKEN, "right"), T0 + 0.1) is None
    assert gate.proved("wrong", worker_proof(TOKEN, "right"), T0 + 0.1) == "its lab token is not this lab's"
    assert gate.proved("none", None, T0 + 0.1).startswith("it has no lab token")
    assert gate.overdue(T0 + PROVE_S - 0.1) == []
    assert [worker for worker, _ in gate.overdue(T0 + PROVE_S)] == ["silent"]
    assert gate.proved("silent", worker_proof(TOKEN, "silent"), T0 + PROVE_S + 1) is None  # too late: stays refused
    assert [worker for worker in ("right", "wrong", "none", "silent") if gate.counts(worker)] == ["right"]
    assert list(gate.refused) == ["wrong", "none", "silent"]
    for n in range(live_controller.REFUSED_KEPT + 5):
        gate.proved(f"flood-{n}", "nonsense", T0)
    assert len(gate.refused) == live_controller.REFUSED_KEPT
    nobody = WorkerGate("")  # no token: every worker counts, none is ever refused
    nobody.seen("any", T0)
    assert nobody.counts("any") and nobody.proved("any", None, T0) is None and nobody.overdue(T0 + 60) == []


@pytest.mark.fast
def test_the_token_is_compared_whole_and_needed_beyond_loopback():
    assert token_ok(None, {}) and token_ok("anything", {"LAB_TOKEN": ""})
    assert token_ok(TOKEN, {"LAB_TOKEN": TOKEN})
    assert not any(token_ok(value, {"LAB_TOKEN": TOKEN}) for value in (None, "", TOKEN[:-1], TOKEN + "x"))
    assert token_missing({"LAB_BIND": "127.0.0.1"}) is None and token_missing({}) is None
    assert token_missing({"LAB_BIND": "0.0.0.0", "LAB_TOKEN": TOKEN}) is None
    problem = token_missing({"LAB_BIND": "0.0.0.0"})
    assert "LAB_TOKEN is empty" in problem and "\n" not in problem
    assert worker_proof(TOKEN, "w1") != worker_proof(TOKEN, "w2") and TOKEN not in worker_proof(TOKEN, "w1")


@pytest.mark.fast
def test_a_refused_workers_one_shot_requests_are_dropped_and_its_users_make_the_run_partial():
    made, clock = controller(environ={**TWO_CPUS, "LAB_TOKEN": TOKEN})
    users = {"lab": 0, "fake": 0}
    told = []
    made.attach(types.SimpleNamespace(runner=None), workers=lambda: dict(users),
                refuse=lambda worker, why: told.append(worker))
    made.on_worker_connect("lab")
    made.on_worker_connect("fake")
    made.on_hello(None, types.SimpleNamespace(node_id="lab", data={"proof": worker_proof(TOKEN, "lab")}))
    clock.now = T0 + PROVE_S
    made.check_workers()
    assert told == ["fake"] and made.counts("lab") and not made.counts("fake")
    assert [w["id"] for w in made.refused_workers()] == ["fake"] and made.refused_workers()[0]["connected"]
    tick_at(made, clock, PROVE_S, "C6", starting=True)
    assert made.workers_at_start == {"lab"}
    assert any("worker fake is refused" in line for _, line in made.notes)
    role = FORMS["C6"].roles[-1].key
    for worker, user in (("lab", "u1"), ("fake", "u2")):
        made.on_once_message(None, types.SimpleNamespace(node_id=worker, data={"role": role, "user": user,
                                                                               "started_at": T0 + PROVE_S + 1}))
    assert list(made.run.once[role]) == ["u1"]
    users["fake"] = 1
    tick_at(made, clock, PROVE_S + 1, "C6")
    assert made.why_partial == "refused worker fake was given 1 of the users"


# ---------------------------------------------------------------- the room, over real sockets


@contextlib.contextmanager
def worker(lab, tmp_path, name, locustfile, *args):
    """A Locust worker on this machine that joins the room's master through its published port, as a laptop
    does; its stderr in tmp_path/NAME.log; stopped on exit."""
    log = tmp_path / f"{name}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "locust", "-f", str(locustfile), "--worker", "--master-host",
                                 "127.0.0.1", "--master-port", lab.env["LAB_MASTER_PORT"], *args],
                                cwd=REPO, env={**clean_env(), "PYTHONPATH": str(REPO / "locustfiles")},
                                stdout=subprocess.DEVNULL, stderr=err)
    proc.log = log
    try:
        yield proc
    finally:
        proc.terminate()  # Locust stops on SIGTERM in about a second
        proc.wait(timeout=30)


def wait_for(what, check, timeout):
    """check()'s first true answer within timeout seconds (once a second), or the test fails."""
    deadline = time.monotonic() + timeout
    while not (answer := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(1)
    return answer


def log_in(driver, lab):
    """The Lab view in Chromium, through the room's login page."""
    driver.get(lab.url("/lab"))
    wait_for_text(driver, "body", lambda text: "Lab password" in text, what="the login page")
    field = driver.find_element("css selector", "input[name=password]")
    field.send_keys(lab.password)
    field.submit()
    open_lab_view(driver, lab)


def locust_requests(lab, name):
    """Locust's own count of the requests named `name`, from every worker that reports."""
    return sum(row["num_requests"] for row in lab.ui("/stats/requests")["stats"] if row["name"] == name)


def test_in_the_room_only_the_workers_with_the_token_count(room_lab, chromium_driver, tmp_path):
    lab = room_lab
    locustfiles = REPO / "locustfiles"
    fake = tmp_path / "fake_worker.py"
    fake.write_text(FAKE.format(name=C4_REQUEST))
    fake_files = ",".join([*(str(path) for path in sorted(locustfiles.glob("[!_]*.py")) if path.name != "workshop.py"),
                           str(fake)])
    lab.compose("stop", "locust-worker", timeout=60)  # the two users of C4's second stage: one on each host worker
    try:
        with lab.outside_worker("--lab-servers", "127.0.0.1", "--lab-port-prefix", lab.prefix,
                                "--lab-token", lab.token), \
                worker(lab, tmp_path, "fake", fake_files) as faker, \
                worker(lab, tmp_path, "none", locustfiles) as without, \
                worker(lab, tmp_path, "wrong", locustfiles, "--lab-token", "not-" + lab.token) as wrong:
            for honest, why in ((without, "it has no lab token"), (wrong, "its lab token is not this lab's")):
                assert honest.wait(timeout=REFUSED_S) == 1, honest.log.read_text()[-2000:]
                assert f"the master refused this worker: {why}" in honest.log.read_text()
            refused = wait_for("three workers refused, the fake one alone still connected", lambda: (
                len(rows := lab.ui("/lab/data")["refused_workers"]) == 3 and sum(r["connected"] for r in rows) == 1
                and rows), REFUSED_S)
            (fake_row,) = [row for row in refused if row["connected"]]
            assert fake_row["why"].startswith("it proved no lab token within") and faker.poll() is None
            assert lab.ui("/lab/data")["workers"] == 1  # the one with the token; the fake one is not counted

            assert lab.ui("/swarm", {"shape_class": shape("C4"), "user_count": 1, "spawn_rate": 1})["success"]
            wait_for("C4 ended by itself", lambda: lab.ui("/lab/data")["state"] in ("final", "partial"), END_S)
            time.sleep(REPORTS_S)
            data = lab.ui("/lab/data")
            faked = locust_requests(lab, C4_REQUEST)
            log_in(chromium_driver, lab)
            text = wait_for_text(chromium_driver, "#refused", lambda text: fake_row["id"] in text,
                                 what="the refused worker listed")
            chromium_driver.execute_script(  # the verdict and what happened, in the window
                "document.getElementById('refused').scrollIntoView({block: 'end'})")
            image = screenshot(chromium_driver, "lab-view-refused-worker")
            assert faker.poll() is None, faker.log.read_text()[-2000:]
    finally:
        lab.up()
    per_worker = data["requests_per_worker"]
    mine = [w for w in per_worker if w.startswith(socket.gethostname() + "_")]
    assert fake_row["id"] not in per_worker and len(mine) == 1 and per_worker[mine[0]] > 0, per_worker
    counted = sum(per_worker.values())
    latency = data["latency"][C4_REQUEST]
    assert latency["count"] == counted and latency["min"] >= 20, latency  # fib(30) over TCP, never 1 µs
    assert sum(row[1] for rows in data["series"].values() for row in rows) == counted, data["series"]
    assert faked >= counted + 10_000, (faked, counted)  # Locust's own statistics took the fake ones
    assert data["verdict"]["state"] == "partial", data["verdict"]  # the fake worker was given one of the users
    assert data["verdict"]["why_partial"].startswith(f"refused worker {fake_row['id']} was given"), data["verdict"]
    assert any(f"worker {fake_row['id']} is refused" in note["line"] for note in data["notes"]), data["notes"]
    assert "(still connected)" in text and image.is_file()


def test_in_the_room_the_gil_view_takes_only_posts_with_the_token(room_lab):
    import requests

    second = int(time.time())
    posts = {target: {"second": second, "target": target, "samples": 1, "free": 1.0, "threads": []}
             for target in ("no-token", "wrong-token", "the-token")}
    headers = {"no-token": {}, "wrong-token": {"X-Lab-Token": "not-" + room_lab.token},
               "the-token": {"X-Lab-Token": room_lab.token}}
    session = requests.Session()
    session.trust_env = False  # never through a proxy of the environment
    codes = {target: session.post(room_lab.url("/lab/gil"), json=body, headers=headers[target], timeout=10).status_code
             for target, body in posts.items()}
    # refused with 401: neither a session nor the token, the two credentials /lab/gil takes (lab.live.routes)
    assert codes == {"no-token": 401, "wrong-token": 401, "the-token": 200}, codes
    assert [s["target"] for s in room_lab.ui("/lab/data")["gil"] if s["second"] == second] == ["the-token"]
