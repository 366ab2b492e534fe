"""The live forms of the experiments, on records of real runs in the compose lab (tests/data/live/:
the live.json the Lab view saved, 2 CPUs, defaults): the same claim, judged again by the runner's
own rule, gives the verdict the Lab view showed; a run cut short gives none."""
import copy
import json

import pytest

from lab import experiments, live
from lab.experiment import NOT_RUN, REPRODUCED
from conftest import REPO

pytestmark = pytest.mark.fast
RECORDS = sorted((REPO / "tests" / "data" / "live").glob("*.json"))
FORMS = experiments.live()


def load(path):
    return json.loads(path.read_text())


def rebuilt(record):
    form = FORMS[record["run"]["experiment"]["key"]]
    return form, live.LiveRun.from_record(form, record)


@pytest.mark.parametrize("path", RECORDS, ids=[path.stem for path in RECORDS])
def test_a_live_run_judged_again_gives_the_verdict_the_lab_view_showed(path):
    record = load(path)
    form, run = rebuilt(record)
    row = form.judge(run, run.settings)
    shown = record["verdict"]
    assert (row["verdict"], row["measured"]) == (shown["verdict"], shown["measured"])
    assert row["rule"] == form.claim.rule_text and row["rule_version"] == form.claim.version


def test_the_records_hold_a_run_of_every_claim_shown_live():
    verdicts = {(load(p)["run"]["experiment"]["key"], load(p)["verdict"]["verdict"]) for p in RECORDS}
    assert ("C6", REPRODUCED) in verdicts
    assert {key for key, _ in verdicts} >= {"C2", "C4", "C6", "C7", "C8", "C9", "C10"}


def test_every_live_form_is_judged_by_a_claim_of_its_own_module():
    for key, form in FORMS.items():
        assert form.claim in experiments.claims_of(form.module), key
        assert form.claim.id == key
        roles = {role.key for role in form.roles}
        for stage in form.stages:
            assert set(stage.roles) <= roles and stage.seconds > 0
            assert stage.until_done is None or form.role(stage.until_done).once
    assert len({form.shape_name for form in FORMS.values()}) == len(FORMS)


@pytest.mark.parametrize("path", RECORDS, ids=[path.stem for path in RECORDS])
def test_a_run_cut_short_has_not_enough_data_and_no_final_verdict(path):
    record = load(path)
    form, run = rebuilt(record)
    cut = run.stage_starts[-1]  # stopped as its last stage began
    run.stage_starts, run.stage_ends = [s for s in run.stage_starts if s <= cut], [e for e in run.stage_ends if e < cut]
    run.ended_at, run.once = cut, {role: {user: {k: v for k, v in r.items() if v is None or k == "succeeded" or v <= cut}
                                          for user, r in by_user.items()} for role, by_user in run.once.items()}
    run.series = {name: {s: row for s, row in rows.items() if s + 1 <= cut} for name, rows in run.series.items()}
    row = form.judge(run, run.settings)
    assert row["verdict"] == NOT_RUN and row["measured"].startswith("not enough data yet"), row
    assert live.verdict_line(row, "running") == "not enough data yet"
    assert live.verdict_line(row, "partial") == "partial run: no verdict"


def test_a_partial_run_never_shows_its_verdict_as_final():
    record = load(next(p for p in RECORDS if p.stem.endswith("C4")))
    form, run = rebuilt(record)
    row = form.judge(run, run.settings)
    assert row["verdict"] == REPRODUCED
    assert live.verdict_line(row, "final") == REPRODUCED
    assert live.verdict_line(row, "running") == "so far: reproduced"
    assert live.verdict_line(row, "partial") == "partial run: no verdict"


def test_c7_live_needs_two_pool_cpus_as_the_runner_does():
    record = copy.deepcopy(load(next(p for p in RECORDS if p.stem.endswith("C7"))))
    record["run"]["settings"]["pool_cpus"] = "1"
    form, run = rebuilt(record)
    row = form.judge(run, run.settings)
    assert row["verdict"] == NOT_RUN and "C7 needs 2 or more" in row["measured"]


def test_published_addresses_follow_compose():
    assert live.published_address(live.PUBLISHED[1], "10.0.0.5", "2500") == "10.0.0.5:25002"
    served = {live.service(s) for s in live.PUBLISHED}
    for form in FORMS.values():  # every server a live form loads is one the compose lab runs
        assert {role.service for role in form.roles} <= served, form.key


def test_the_clients_kept_a_request_in_flight_and_a_starved_load_side_shows():
    for path in RECORDS:
        record = load(path)
        form, run = rebuilt(record)
        for stage in range(len(form.stages)):
            share = run.in_flight_share(stage)
            assert share is None or 0.9 <= share <= 1.1, (path.stem, stage, share)  # a request counts in the second it ended
    form, run = rebuilt(load(next(p for p in RECORDS if p.stem.endswith("C4"))))
    for rows in run.series.values():  # the clients spent half of each second outside a request
        for second, row in rows.items():
            rows[second] = [row[0], row[1] // 2, row[2]]
    assert run.in_flight_share(0) < 0.6 and run.in_flight_share(1) < 0.6
