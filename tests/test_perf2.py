"""perf2 rates and what the shared code reads of the experiments, with no Docker: the arithmetic over a
perf2 record's buckets (lab.perf2), the experiments found by what they declare (PERF2_RATES,
PERF2_CEILING, one_thread_s)."""
import types

import pytest

from conftest import REPO
from lab import experiments
from lab.cells import Cell
from lab.perf2 import rates, rates_per_bucket

pytestmark = pytest.mark.fast


def perf2_record(counts, width=0.5, started_at=100.0, ended_at=None):
    return {"interval_s": width, "started_at": started_at, "ended_at": ended_at,
            "buckets": [[started_at + i * width, count] for i, count in enumerate(counts)]}


def test_a_rate_before_and_during_the_long_request_counts_whole_buckets_after_the_first():
    # buckets of 0.5 s from 100.0; the long request from 101.5 to 103.0
    m = rates(perf2_record([999, 100, 110, 10, 20, 30, 100]), 101.5, 103.0)
    assert m["rate_before_per_s"] == 210.0  # (100 + 110) / 2 per 0.5 s: bucket 0 is warm-up
    assert m["rate_during_per_s"] == 40.0  # (10 + 20 + 30) / 3 per 0.5 s
    assert m["drop"] == pytest.approx(1 - 40 / 210) and m["buckets_during"] == 3
    assert m["before_cv"] == pytest.approx(5 / 105)


def test_no_whole_bucket_before_the_long_request_gives_no_rate_and_no_drop():
    m = rates(perf2_record([50, 10, 10]), 100.6, 101.5)
    assert m["rate_before_per_s"] is None and m["drop"] is None and m["before_cv"] is None


def test_the_last_bucket_is_a_rate_over_the_part_that_ran():
    edges, bucket_rates = rates_per_bucket(perf2_record([10, 10, 5], ended_at=101.25), 100.0)
    assert edges == [0.0, 0.5, 1.0, 1.5]
    assert bucket_rates == [20.0, 20.0, 20.0]


def made_up(name, **declared):
    module = types.ModuleType(name)
    module.SIZES, module.cells, module.measure = {}, lambda mode: [], lambda ctx, cell: {}
    vars(module).update(declared)
    return module


@pytest.fixture
def registered():
    added = []

    def register(module):
        added.append(experiments.register(module))
        return module

    yield register
    for module in added:
        experiments.unregister(module)


def test_the_perf2_rates_are_the_req_s_figures_of_the_experiments_that_declare_them(registered):
    assert list(experiments.declaring("PERF2_RATES")) == ["convoy", "switch_interval", "prefork_lockout"]
    assert experiments.is_perf2_rate({"experiment": "convoy"}, "req/s")
    assert not experiments.is_perf2_rate({"experiment": "convoy"}, "s")
    assert not experiments.is_perf2_rate({"experiment": "loopback_floor"}, "req/s")  # the floor and the ceiling
    assert not experiments.is_perf2_rate({"experiment": "perf9"}, "req/s")  # an experiment this lab does not know
    registered(made_up("perf9", PERF2_RATES=True))
    assert experiments.is_perf2_rate({"experiment": "perf9"}, "req/s")


def test_a_figure_measured_for_all_comes_from_the_one_experiment_that_declares_it(registered):
    assert experiments.provider("PERF2_CEILING").__name__ == "lab.experiments.loopback_floor"
    assert experiments.provider("one_thread_s").__name__ == "lab.experiments.perf1"
    assert experiments.provider("NOTHING_DECLARES_THIS") is None
    registered(made_up("second_floor", PERF2_CEILING="ceiling_per_s"))
    with pytest.raises(TypeError, match="loopback_floor, second_floor each declare PERF2_CEILING"):
        experiments.provider("PERF2_CEILING")


def test_the_perf2_rates_beside_the_floor_are_each_experiments_own():
    class View:
        def cells(self, experiment=None):
            return [Cell(experiment.rpartition(".")[2], "prefork")]

    shown = [row for module in experiments.declaring("perf2_alone").values() for row in module.perf2_alone(View())]
    assert [(label, cell.label, key) for label, cell, key in shown] == [
        ("prefork", "convoy/prefork", "rate_before_per_s"),
        ("prefork (lockout cell)", "prefork_lockout/prefork", "rate_per_s")]
