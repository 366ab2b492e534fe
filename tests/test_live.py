"""The live forms of the experiments, on records of real runs in the compose lab (tests/data/live/:
the live.json the Lab view saved, 2 CPUs, defaults): the same claim, judged again by the runner's
own rule, gives the verdict the Lab view showed; a run cut short gives none."""
import copy
import json

import pytest

from conftest import REPO
from lab import experiments
from lab.claims import NOT_RUN, REPRODUCED, Measured
from lab.experiments import perf1
from lab.live import forms

pytestmark = pytest.mark.fast
RECORDS = sorted((REPO / "tests" / "data" / "live").glob("*.json"))
FORMS = experiments.live()


def load(path):
    return json.loads(path.read_text())


def rebuilt(record):
    form = FORMS[record["run"]["experiment"]["key"]]
    return form, forms.LiveRun.from_record(form, record)


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
    assert forms.verdict_line(row, "running") == "not enough data yet"
    assert forms.verdict_line(row, "partial") == "partial run: no verdict"


def test_a_partial_run_never_shows_its_verdict_as_final():
    record = load(next(p for p in RECORDS if p.stem.endswith("C4")))
    form, run = rebuilt(record)
    row = form.judge(run, run.settings)
    assert row["verdict"] == REPRODUCED
    assert forms.verdict_line(row, "final") == REPRODUCED
    assert forms.verdict_line(row, "running") == "so far: reproduced"
    assert forms.verdict_line(row, "partial") == "partial run: no verdict"


def test_c7_live_needs_two_pool_cpus_as_the_runner_does():
    record = copy.deepcopy(load(next(p for p in RECORDS if p.stem.endswith("C7"))))
    record["run"]["settings"]["pool_cpus"] = "1"
    form, run = rebuilt(record)
    row = form.judge(run, run.settings)
    assert row["verdict"] == NOT_RUN
    assert row["measured"] == "needs two CPUs: its server runs on one (CPU 1; LAB_POOL_CPUS in .env)"
    cells = {label: {"status": "ok", "measurements": m} for label, m in form.cells(run).items()}
    batch = form.claim.judge(Measured(cells, run.settings, form.module))  # the rule alone, as the runner has it
    assert batch["verdict"] == NOT_RUN and f"C7 needs {perf1.MIN_CPUS} or more" in batch["measured"]


# The compose lab's settings and what server.affinity exported to the master, on a Docker with one CPU.
ONE_CPU = {"LAB_SERVER_CPUS": "0", "LAB_POOL_CPUS": "0-1", "LAB_LOAD_CPUS": "1", "LAB_CPUS_AVAILABLE": "0"}
ONE_CPU_LINE = "needs two CPUs: this Docker gives the lab one (CPU 0)"


def test_on_a_docker_with_one_cpu_the_lab_runs_everything_on_it():
    assert forms.lab_settings(ONE_CPU) == {"server_cpus": "0", "pool_cpus": "0", "load_cpus": "0", "cpus": "0",
                                          "placement": "fixed"}
    assert forms.lab_settings({**ONE_CPU, "LAB_CPUS_AVAILABLE": "0-1"}) == {
        "server_cpus": "0", "pool_cpus": "0-1", "load_cpus": "1", "cpus": "0-1", "placement": "fixed"}
    assert forms.lab_settings({**ONE_CPU, "LAB_SERVER_ARGS": "--quiet --placement free"})["placement"] == "free"
    assert forms.configured_cpus(ONE_CPU) == {"server_cpus": "0", "pool_cpus": "0-1", "load_cpus": "1"}


def test_the_lab_view_says_which_claims_need_two_cpus_on_a_docker_with_one():
    """Each claim's own experiment declares it (perf1: C4, C7; convoy: C6, C8, C9); the Lab view shows the line
    of experiments[].short_of_cpus, and the claim, if started anyway, is not judged."""
    settings = forms.lab_settings(ONE_CPU)
    said = {key: form.describe(settings)["short_of_cpus"] for key, form in FORMS.items()}
    assert {key for key, line in said.items() if line} == {"C4", "C6", "C7", "C8", "C9"}
    assert set(said.values()) == {None, ONE_CPU_LINE}
    two = forms.lab_settings({**ONE_CPU, "LAB_CPUS_AVAILABLE": "0-1"})
    assert not any(form.describe(two)["short_of_cpus"] for form in FORMS.values())
    # the pools on one CPU of two: C8 and C9 lack theirs; C6 does not (its load still has a CPU of its own)
    pools_on_one = forms.lab_settings({**ONE_CPU, "LAB_POOL_CPUS": "0", "LAB_CPUS_AVAILABLE": "0-1"})
    said = {key: form.describe(pools_on_one)["short_of_cpus"] for key, form in FORMS.items()}
    assert {key for key, line in said.items() if line} == {"C4", "C7", "C8", "C9"}, said
    form, run = rebuilt(load(next(p for p in RECORDS if p.stem.endswith("C4"))))
    row = form.judge(run, settings)
    assert (row["verdict"], row["measured"], row["short_of_cpus"]) == (NOT_RUN, ONE_CPU_LINE, ONE_CPU_LINE)
    assert forms.verdict_line(row, "running") == forms.verdict_line(row, "final") == "not judged: " + ONE_CPU_LINE


def test_published_addresses_follow_compose():
    assert forms.published_address(forms.PUBLISHED[1], "10.0.0.5", "2500") == "10.0.0.5:25002"
    served = {forms.service(s) for s in forms.PUBLISHED}
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
