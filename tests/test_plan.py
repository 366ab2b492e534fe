"""The plan and the registry, with no Docker: which cells a run measures, and an experiment added as
one file that the plan, the claims table, the report and compare pick up."""
import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

from lab import experiments
from lab.cells import Cell, Context
from lab.claims import REPRODUCED
from lab.records import verdicts
from lab.records import compare
from lab.records import report
from lab.records.document import to_markdown
from lab.records.record import load_run
from lab.records.store import Run
from lab.runner.run import run_cells
from server import strategies
from test_claims import JUDGED, NOW

pytestmark = pytest.mark.fast


def ids(cells):
    return [cell.id for cell in cells]


def test_every_module_of_the_package_is_an_experiment_in_the_registry():
    names = sorted(path.stem for path in Path(experiments.__file__).parent.glob("*.py")
                   if not path.stem.startswith("_"))
    assert sorted(experiments.modules()) == names
    claim_ids = [claim.id for claim in experiments.claims()]
    assert len(set(claim_ids)) == len(claim_ids), "a claim is backed twice"
    assert JUDGED and JUDGED <= set(claim_ids), "a claim the stored run judged is no longer backed"


def test_the_plan_is_the_stored_plan_of_a_run_with_the_same_settings():
    record = json.loads((NOW / "results.json").read_text())
    stored = [Cell.from_record(fields) for fields in record["planned"]]
    # the experiments the record's run had plan the same cells; the others (server_memory) plan their own
    today = experiments.plan("quick", versions={None: (3, 13)}, experiments={cell.experiment for cell in stored})
    assert [cell.fields() for cell in today] == [cell.fields() for cell in stored]


def test_cell_ids_are_made_of_their_fields_and_unique():
    for mode in experiments.MODES:
        cells = experiments.plan(mode, pythons=["3.13", "3.14t"])
        assert len(set(ids(cells))) == len(cells)
        for cell in cells:
            assert cell.id == "/".join(filter(None, (cell.python, cell.experiment, cell.variant or cell.strategy)))
            assert Cell.from_record(cell.fields()) == cell


def test_a_strategy_runs_only_on_a_python_that_can_run_it():
    newest = max(module.PYTHON_SINCE for module in strategies.ALL.values() if hasattr(module, "PYTHON_SINCE"))
    needing = {name for name, module in strategies.ALL.items() if hasattr(module, "PYTHON_SINCE")}
    older = experiments.plan("quick", versions={None: (newest[0], newest[1] - 1)})
    newer = experiments.plan("quick", versions={None: newest})
    assert not {cell.strategy for cell in older} & needing
    assert needing <= {cell.strategy for cell in newer}
    assert {cell.strategy for cell in experiments.plan("quick")} >= needing  # unknown Python: every cell


def test_filters_keep_the_cells_of_no_strategy_and_modes_grow():
    only = experiments.plan("quick", strategies=[strategies.key(strategies.load("threaded"))])
    assert {cell.strategy for cell in only} == {"threaded", None}
    assert "gil_stall" in ids(only)
    assert set(ids(experiments.plan("quick", experiments=["perf1", "fib"]))) == {
        "fib/threaded", "perf1/threaded", "perf1/process-pool"}
    assert len(experiments.plan("full")) > len(experiments.plan("quick"))
    with pytest.raises(ValueError, match="unknown mode"):
        experiments.plan("slow")


def test_several_pythons_run_each_experiment_per_python_and_the_load_side_once():
    cells = experiments.plan("quick", pythons=["3.13", "3.14t"])
    shared = [cell for cell in cells if cell.python is None]
    assert ids(shared) == ["loopback_floor"] and cells[0].id == "loopback_floor"
    per_python = {python: [cell.label for cell in cells if cell.python == python] for python in ("3.13", "3.14t")}
    assert "convoy/subinterpreters" in per_python["3.14t"] and "convoy/subinterpreters" not in per_python["3.13"]
    assert set(per_python["3.13"]) < set(per_python["3.14t"])


# One new file, and nothing else touched: a tiny experiment that measures a real loopback round trip.
TINY = textwrap.dedent('''
    """tiny: a fixture experiment, one loopback TCP round trip at a time (X1)."""
    import socket
    import time

    from lab.cells import Cell
    from lab.claims import claim

    SIZES = {"quick": dict(round_trips=50), "full": dict(round_trips=500)}


    def cells(mode):
        return [Cell(params=SIZES[mode], estimate_s=1)]


    def measure(ctx, cell):
        listener = socket.create_server(("127.0.0.1", 0))
        with socket.create_connection(listener.getsockname()) as client, listener.accept()[0] as server:
            started = time.perf_counter()
            for _ in range(cell.params["round_trips"]):
                client.sendall(b"1")
                server.sendall(server.recv(1))
                client.recv(1)
            elapsed = time.perf_counter() - started
        listener.close()
        return {"round_trips": cell.params["round_trips"], "mean_s": elapsed / cell.params["round_trips"]}


    def figures(m):
        return [("round trip", m["mean_s"], "s")]


    @claim("X1", "A loopback round trip takes less than a second.", article="(a fixture)",
           rule="reproduced if the mean round trip is under 1 s")
    def x1(measured):
        m = measured()
        return f"{m['mean_s'] * 1e6:.0f} µs per round trip", m["mean_s"] < 1
''')


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    spec = importlib.util.spec_from_file_location("tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    experiments.register(module)
    yield module
    experiments.unregister(module)


def test_an_experiment_added_as_one_file_is_planned_judged_reported_and_compared(tiny, tmp_path):
    assert "tiny" in experiments.modules() and experiments.claims()[-1].id == "X1"
    cells = experiments.plan("quick", experiments=["tiny"])
    assert ids(cells) == ["tiny"]
    settings = {"mode": "quick", "strategies": None, "experiments": ["tiny"], "server_cpus": "0", "pool_cpus": "0-1",
                "load_cpus": "1", "image": None, "load": "clients", "pythons": None}
    run = Run.create(tmp_path / "results", settings, {"python": {"version": "3.13.5"}}, cells)
    run_cells(Context(None, run, settings), cells)  # the runner's own loop: measure, store, judge
    run.finish("complete")

    record = load_run(run.dir).record
    assert record["cells"]["tiny"]["figures"][0][0] == "round trip"
    tiny_row = next(row for row in record["claims"] if row["id"] == "X1")
    assert tiny_row["verdict"] == REPRODUCED and tiny_row["cells"] == ["tiny"]
    others = [row["verdict"] for row in record["claims"] if row["id"] != "X1"]
    assert others == ["not run"] * (len(experiments.claims()) - 1)

    markdown = to_markdown(report.build(load_run(run.dir)))
    assert "| X1 | A loopback round trip takes less than a second. | (a fixture) |" in markdown
    compared = to_markdown(compare.build(load_run(run.dir), load_run(run.dir)))
    assert "| tiny | round trip |" in compared and "| X1 | A loopback round trip" in compared
    assert verdicts.judge(record) == record["claims"]


def test_an_experiment_module_without_its_parts_is_refused(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text('"""broken: no cells, no measure."""\nSIZES = {}\n')
    spec = importlib.util.spec_from_file_location("broken", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(TypeError, match="lacks cells, measure"):
        experiments.register(module)
