"""Every claim's rule on stored fixture records, with no Docker: the verdicts stored with records of
every format the lab has written, and each rule's four outcomes (reproduced, not reproduced, not run,
a failed cell)."""
import copy
import json

import pytest

from conftest import REPO
from lab import experiments
from lab.claims import NOT_REPRODUCED, NOT_RUN, REPRODUCED
from lab.records import verdicts
from lab.records.record import verdict_label
from lab.records.store import Run

pytestmark = pytest.mark.fast
DATA = REPO / "tests" / "data"
# A real quick run made by the runner that scripts/matrix was, before lab/: the oldest record format.
BEFORE = DATA / "20261128T060108Z-9cc47d"
# An older real quick run, judged by older rules: verdicts-839e45e.json holds the verdicts that the
# rules of that runner give its measurements.
OLDER = DATA / "20261124T222621Z-ead345"
# A real quick run made by lab/ (schema 2: its plan, figures and rule versions stored).
NOW = DATA / "20261128T061650Z-806362"


def rows_as_before(rows):
    """Verdict rows in the shape the runner stored before lab/: id, claim, article, measured, verdict, rule."""
    return [{"id": verdict_label(row), "claim": row["text"], "article": row["article"], "measured": row["measured"],
             "verdict": row["verdict"], "rule": row["rule"]} for row in rows]


# Rules at a newer version than the fixtures' verdicts, and why: their words changed, not
# what they give a record made before (C4, C7: the line between parallel and doubled is measured in
# the run, v2, and a cell whose machine changed speed meanwhile is measured again, v3; a record
# without those measurements gets the old line, 1.5; C6, C8, C9: perf2 is measured in one layout, a cell
# whose layout changed is measured again, and C8's and C9's rate may not rise either, v2; C10: prefork's
# perf2 asked until it is answered in the layout, v2; a record without a layout is judged as before).
NEWER_RULES = {"C4": 3, "C6": 2, "C7": 3, "C8": 2, "C9": 2, "C10": 2}


def with_todays_rules(stored, judged):
    """The stored rows with the words and version of each rule raised above them (NEWER_RULES)."""
    todays = {verdict_label(row): row for row in judged}
    rows = []
    for row in stored:
        today = todays[verdict_label(row)]  # a row stored before lab/ has its label as its id
        if today["id"] in NEWER_RULES:
            assert today["rule"] != row["rule"] and today["rule_version"] == NEWER_RULES[today["id"]]
            row = {**row, "rule": today["rule"], **({"rule_version": today["rule_version"]} if "rule_version" in row else {})}
        rows.append(row)
    return rows


def test_the_raised_rules_are_the_ones_named_here():
    assert {c.id: c.version for c in experiments.claims() if c.version > 1} == NEWER_RULES


def judged_as_stored(record, stored):
    """The verdicts today's rules give a record, of the claims its stored verdicts name (the claims of an
    experiment that its run did not have are not run, and are left out)."""
    named = {verdict_label(row) for row in stored}
    return [row for row in verdicts.judge(record) if verdict_label(row) in named]


def test_a_run_made_before_the_package_gets_the_same_verdicts_from_its_rules():
    stored = json.loads((BEFORE / "results.json").read_text())["claims"]  # as the old runner wrote them
    judged = judged_as_stored(Run.load(BEFORE).record, stored)
    assert rows_as_before(judged) == with_todays_rules(stored, judged)


def test_an_older_run_gets_the_verdicts_that_the_rules_before_the_package_gave_it():
    before = json.loads((OLDER / "verdicts-839e45e.json").read_text())["claims"]
    judged = judged_as_stored(Run.load(OLDER).record, before)
    assert rows_as_before(judged) == with_todays_rules(before, judged)


def test_a_run_of_the_package_stores_the_verdicts_its_rules_give():
    record = Run.load(NOW).record
    judged = judged_as_stored(record, record["claims"])
    assert judged == with_todays_rules(record["claims"], judged)
    assert all(row["rule_version"] == 1 and row["cells"] for row in record["claims"])


def verdicts_by_id(record):
    return {row["id"]: row for row in verdicts.judge(record)}


def changed(record, cell_id, **values):
    record = copy.deepcopy(record)
    record["cells"][cell_id]["measurements"].update(values)
    return record


# For each claim, the measurements that reproduce it and those that do not, set on the NOW fixture.
def c1(record, ok):
    return changed(record, "one_at_a_time/sequential", second_reply_after_first_close_s=0.05 if ok else -0.5)


def c2(record, ok):
    return changed(record, "echo_clients/threaded", clients=50, served=50 if ok else 49)


def c3(record, ok):
    return changed(record, "fib/threaded", seconds={"10": 0.001, "32": 0.5 if ok else 0.005})


def c4(record, ok):
    return changed(record, "perf1/threaded", ratio=2.0 if ok else 1.1)


def c5(record, ok):
    return changed(record, "gil_stall", call_s=0.5, longest_gap_s=0.5 if ok else 0.05, control_longest_gap_s=0.01)


def c6(record, ok):
    return changed(record, "convoy/threaded", drop=0.99 if ok else 0.5)


def c7(record, ok):
    return changed(record, "perf1/process-pool", ratio=1.0 if ok else 2.0)


def c8(record, ok):
    threaded = record["cells"]["convoy/threaded"]["measurements"]["rate_before_per_s"]
    return changed(record, "convoy/process-pool", rate_before_per_s=threaded * (0.1 if ok else 0.9), drop=0.0)


def c9(record, ok):
    threaded = record["cells"]["convoy/threaded"]["measurements"]["rate_before_per_s"]
    return changed(record, "convoy/threshold-pool", rate_before_per_s=threaded, drop=0.0 if ok else 0.9)


def c10(record, ok):
    threaded = record["cells"]["convoy/threaded"]["measurements"]["rate_before_per_s"]
    return changed(record, "prefork_lockout/prefork", rate_per_s=threaded, late_reply_after_first_free_s=0.0 if ok else -1)


def c11(record, ok):
    variants = [{"stack_size_kib": None, "vm_size_per_thread_kib": 8200, "vm_rss_per_thread_kib": 16},
                {"stack_size_kib": 256, "vm_size_per_thread_kib": 300 if ok else 8000, "vm_rss_per_thread_kib": 16}]
    return changed(record, "thread_memory", variants=variants)


def c12(record, ok):
    probes = [{"stack_size_kib": None, "kind": "c", "depth": 20000, "outcome": "crashed" if ok else "recursion-error"}]
    return changed(record, "recursion_depth", probes=probes, recursion_limit=1000)


def c13(record, ok):
    return changed(record, "idle_connections/threaded", threads_per_connection=1.0 if ok else 0.0)


# The claims the NOW fixture judged, each with its function above (C1: c1), in the registry's order: a claim
# of an experiment that the fixture's run did not have has no cells there to set.
JUDGED = {row["id"] for row in json.loads((NOW / "results.json").read_text())["claims"]}
OUTCOMES = {claim.id: globals().get(claim.id.lower()) for claim in experiments.claims() if claim.id in JUDGED}


def test_every_claim_of_the_fixture_is_backed_and_has_its_outcomes_tested_here():
    assert JUDGED and set(OUTCOMES) == JUDGED, "a claim the fixture judged is no longer backed by an experiment"
    assert all(OUTCOMES.values()), f"no outcomes here for {[i for i, f in OUTCOMES.items() if not f]}"


@pytest.fixture(scope="module")
def now():
    return Run.load(NOW).record


@pytest.mark.parametrize("claim_id", OUTCOMES)
def test_a_rule_reproduces_or_not_by_its_measurements(now, claim_id):
    reproduced = verdicts_by_id(OUTCOMES[claim_id](now, True))[claim_id]
    not_reproduced = verdicts_by_id(OUTCOMES[claim_id](now, False))[claim_id]
    assert reproduced["verdict"] == REPRODUCED, reproduced
    assert not_reproduced["verdict"] == NOT_REPRODUCED, not_reproduced
    assert reproduced["measured"] != not_reproduced["measured"]  # the text says what was measured


@pytest.mark.parametrize("claim_id", OUTCOMES)
def test_a_rule_is_not_run_without_each_cell_it_reads_and_when_one_failed(now, claim_id):
    record = OUTCOMES[claim_id](now, True)
    read = verdicts_by_id(record)[claim_id]["cells"]
    assert read
    for cell_id in read:
        missing = copy.deepcopy(record)
        del missing["cells"][cell_id]
        row = verdicts_by_id(missing)[claim_id]
        assert (row["verdict"], row["measured"]) == (NOT_RUN, f"{cell_id} was not run")
        failed = copy.deepcopy(record)
        failed["cells"][cell_id].update(status="failed", measurements=None, error="RuntimeError: gone")
        row = verdicts_by_id(failed)[claim_id]
        assert (row["verdict"], row["measured"]) == (NOT_RUN, f"{cell_id} failed")


def test_c7_is_not_run_with_a_single_pool_cpu(now):
    record = c7(now, True)
    record["settings"]["pool_cpus"] = "1"
    row = verdicts_by_id(record)["C7"]
    assert row["verdict"] == NOT_RUN and "C7 needs 2 or more" in row["measured"]


def test_a_run_over_several_pythons_is_judged_per_python(now):
    record = copy.deepcopy(now)
    record["settings"]["pythons"] = ["3.13", "3.13t"]
    shared = {cell_id: cell for cell_id, cell in record["cells"].items() if cell["python"] is None
              and cell["experiment"] == "loopback_floor"}
    cells = dict(shared)
    for python, ratio in (("3.13", 2.0), ("3.13t", 0.95)):
        for cell_id, cell in record["cells"].items():
            if cell_id not in shared:
                cells[f"{python}/{cell_id}"] = {**copy.deepcopy(cell), "python": python}
        cells[f"{python}/perf1/threaded"]["measurements"]["ratio"] = ratio
    record["cells"] = cells
    rows = {verdict_label(row): row for row in verdicts.judge(record)}
    assert len(rows) == 2 * len(experiments.claims())
    assert rows["C4 on 3.13"]["verdict"] == REPRODUCED and rows["C4 on 3.13t"]["verdict"] == NOT_REPRODUCED
    assert rows["C10 on 3.13t"]["cells"][-1] == "loopback_floor"  # the shared cell, read by every Python
