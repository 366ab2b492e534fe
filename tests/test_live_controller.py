"""The live controller's tick (lab.live.controller), driven by a clock the test sets, with the registry's
live forms: each stage runs its seconds, a stage with until_done waits for its one-shot requests and
then forms.TAIL_S, every user stops between two stages, the run stops itself after the last one, and
each stage runs the users its roles count on the lab's CPUs. No Locust: the user classes are their names."""
import types

import pytest

from lab.experiments import live
from lab.live import forms
from lab.live.controller import SPAWN_RATE, LiveController

pytestmark = pytest.mark.fast

FORMS = live()
T0 = 1_800_000_000.0
TWO_CPUS = {"LAB_CPUS_AVAILABLE": "0-1"}  # compose's defaults on a 2-CPU Docker: the pools on 0-1
FOUR_CPUS = {"LAB_CPUS_AVAILABLE": "0-3"}  # the pools on 0-2


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now


def controller(environ=TWO_CPUS, spawned=None, check=lambda address: None):
    """(a controller, the clock it reads): what it spawns is kept in `spawned`, or run at once when that
    is None; check(address) says why a server does not answer."""
    def spawn(function, *args):
        if spawned is None:
            function(*args)
        else:
            spawned.append((function, args))

    classes = {key: {role.key: f"{key}_{role.key}" for role in form.roles} for key, form in FORMS.items()}
    clock = Clock()
    made = LiveController(classes, spawn=spawn, address=forms.Role.address, check=check, environ=environ, clock=clock)
    return made, clock


def tick_at(made, clock, seconds, claim_id, starting=False):
    clock.now = T0 + seconds
    return made.tick(FORMS[claim_id], starting=starting)


def once(made, role, user, **fields):
    """What a one-shot user of `role` reports (Locust's message lab_once), `fields` in seconds from T0."""
    made.on_once_message(None, types.SimpleNamespace(data={"role": role, "user": user,
                                                           **{k: T0 + v for k, v in fields.items()}}))


def test_each_stage_runs_its_seconds_every_user_stops_between_two_and_the_run_stops_after_the_last():
    spawned = []
    made, clock = controller(spawned=spawned)
    c4 = FORMS["C4"]
    assert [stage.seconds for stage in c4.stages] == [8, 8]
    one, two = (1, SPAWN_RATE, ["C4_first_client"]), (2, SPAWN_RATE, ["C4_first_client", "C4_second_client"])
    assert tick_at(made, clock, 0, "C4", starting=True) == one
    assert made.state == "running" and spawned == [(made.check_servers, (c4,))]
    assert tick_at(made, clock, 7.9, "C4") == one
    assert tick_at(made, clock, 8, "C4") == (0, SPAWN_RATE, None)
    assert tick_at(made, clock, 9, "C4") == two
    assert tick_at(made, clock, 16.9, "C4") == two
    assert tick_at(made, clock, 17, "C4") is None
    run = made.run
    assert made.state == "final" and run.ended_at == T0 + 17
    assert (run.stage_starts, run.stage_ends) == ([T0, T0 + 9], [T0 + 8, T0 + 17])
    assert tick_at(made, clock, 18, "C4") is None and run.stage_starts == [T0, T0 + 9]


def test_a_stage_until_done_waits_for_the_one_shot_request_then_the_tail():
    made, clock = controller()
    (stage,) = FORMS["C6"].stages
    assert stage.until_done == "long_request"
    both = (2, SPAWN_RATE, ["C6_perf2", "C6_long_request"])
    assert tick_at(made, clock, 0, "C6", starting=True) == both
    once(made, "long_request", "a", started_at=4)
    assert tick_at(made, clock, stage.seconds + 5, "C6") == both  # its seconds are over, the request is not
    once(made, "long_request", "a", ended_at=stage.seconds + 6, succeeded=True)
    assert tick_at(made, clock, stage.seconds + 6 + forms.TAIL_S - 0.1, "C6") == both
    assert tick_at(made, clock, stage.seconds + 6 + forms.TAIL_S, "C6") is None
    assert made.state == "final" and made.run.ended_at == T0 + stage.seconds + 6 + forms.TAIL_S


def test_a_one_shot_request_that_never_ends_holds_its_stage_no_longer_than_max_wait():
    made, clock = controller()
    (stage,) = FORMS["C6"].stages
    tick_at(made, clock, 0, "C6", starting=True)
    once(made, "long_request", "a", started_at=4)
    assert tick_at(made, clock, stage.seconds + forms.MAX_WAIT_S - 0.1, "C6") is not None
    assert tick_at(made, clock, stage.seconds + forms.MAX_WAIT_S, "C6") is None and made.state == "final"


@pytest.mark.parametrize("environ, long_requests", [(TWO_CPUS, 2), (FOUR_CPUS, 3)], ids=["2 CPUs", "4 CPUs"])
def test_each_stage_runs_the_users_of_its_roles_one_long_request_per_pool_cpu(environ, long_requests):
    """C10: perf2 on threaded, perf2 on prefork, then a long request per prefork child (one per pool
    CPU) and a late client; the last stage waits until every long request has ended."""
    made, clock = controller(environ)
    assert [stage.seconds for stage in FORMS["C10"].stages] == [5, 5, 3]
    assert tick_at(made, clock, 0, "C10", starting=True) == (1, SPAWN_RATE, ["C10_perf2_alone"])
    assert tick_at(made, clock, 5, "C10") == (0, SPAWN_RATE, None)
    assert tick_at(made, clock, 6, "C10") == (1, SPAWN_RATE, ["C10_perf2"])
    assert tick_at(made, clock, 11, "C10") == (0, SPAWN_RATE, None)
    last = (long_requests + 1, SPAWN_RATE, ["C10_long_request", "C10_late_client"])
    assert tick_at(made, clock, 12, "C10") == last
    for user in range(long_requests - 1):
        once(made, "long_request", user, started_at=12.5, ended_at=14)
    assert tick_at(made, clock, 20, "C10") == last  # one long request has not reported yet
    once(made, "long_request", "last", started_at=12.5, ended_at=21)
    assert tick_at(made, clock, 21 + forms.TAIL_S, "C10") is None and made.state == "final"


def test_a_shape_picked_while_another_runs_ticks_on_for_the_one_running_until_locust_starts_anew():
    made, clock = controller()
    tick_at(made, clock, 0, "C4", starting=True)
    made.on_swarm_request(locust_stopped=False)
    assert tick_at(made, clock, 1, "C7") == (1, SPAWN_RATE, ["C4_first_client"])
    assert made.notes[-1][1].startswith("Start pressed while C4")
    assert tick_at(made, clock, 2, "C7", starting=True) == (1, SPAWN_RATE, ["C7_first_client"])
    assert made.run.experiment is FORMS["C7"] and made.run.stage_starts == [T0 + 2]


def test_a_server_that_does_not_answer_or_a_worker_that_drops_out_makes_the_run_partial():
    c8 = FORMS["C8"]
    down = forms.Role.address(c8.roles[-1])
    made, clock = controller(check=lambda address: f"{address} does not answer" if address == down else None)
    tick_at(made, clock, 0, "C8", starting=True)
    assert made.why_partial == f"{down} does not answer" and made.state == "running"
    assert made.verdict()["line"] == "partial run: no verdict"

    made, clock = controller()
    present = {"w1", "w2"}
    made.attach(None, workers=lambda: set(present))
    tick_at(made, clock, 0, "C8", starting=True)
    present.discard("w2")
    assert tick_at(made, clock, 3, "C8") == (1, SPAWN_RATE, ["C8_perf2_alone"])
    assert made.why_partial == "worker w2 dropped out" and "3 s into the run" in made.notes[-1][1]
