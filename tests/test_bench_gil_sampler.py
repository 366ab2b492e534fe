"""scripts/bench-gil-sampler, briefly: one round of 1 s per mode on this machine, no Docker (a threaded server
on loopback, perf2, clients.gil_sampler), its JSON's structure and a positive perf2 rate in every mode; its
live rate read from where compose reads it; bad input in one line. Its figures are not judged here: speed
targets belong in the benchmark, never in a test."""
import json
import subprocess

import pytest

from conftest import REPO
from lab.bench import gil_sampler
from lab.bench.common import BenchError
from lab.experiments import gil_share
from lab.runner.run import dotenv
from server.cpusets import CAN_PIN, NO_PINNING
from test_gil_state import niced

pytestmark = pytest.mark.fast

TIMEOUT_S = 180  # 3 rounds of 1 s, each measured again at most once, and the sampler's starts: seconds


@pytest.mark.skipif(not CAN_PIN, reason=NO_PINNING)
def test_a_short_run_measures_perf2_in_every_mode(record_property):
    proc = subprocess.run([str(REPO / "scripts" / "bench-gil-sampler"), "--rounds", "1", "--round-s", "1", "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S, preexec_fn=niced)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["modes"] == {
        "off": None, "live": ["--rate", f"{float(dotenv('LAB_GIL_RATE')):g}"],
        "report": ["--rate", f"{gil_share.RATE_HZ:g}", "--dump-rate", f"{gil_share.DUMP_RATE_HZ:g}"]}
    where = result["where"]
    assert where["pinning"] and where["machine"] and f"where: {where['pinning']}; {where['machine']}" in proc.stdout
    kept = [m for m in result["measurements"] if m["kept"]]
    assert sorted(m["mode"] for m in kept) == sorted(gil_sampler.MODES)
    assert len(result["measurements"]) <= 2 * len(kept)  # a starved round measured again once at most
    for m in kept:
        assert m["rate_per_s"] > 0 and m["requests"] > 0 and 0 < m["p50_us"] <= m["p99_us"] <= m["max_us"], m
        assert 0 <= m["others_share"] <= 1
        if m["mode"] == "off":
            assert m["sampler"] is None
        else:
            assert m["sampler"]["samples"] > 0 and m["sampler"]["cpu_s"] > 0, m
    assert set(result["summary"]) == set(gil_sampler.MODES)
    assert all(s["rate_per_s"] > 0 and s["rate_ratio"] > 0 for s in result["summary"].values())
    assert result["summary"]["off"]["rate_ratio"] == 1 and result["summary"]["off"]["sampler_cpu_per_s"] is None
    assert result["live_cost"] == pytest.approx(1 - result["summary"]["live"]["rate_ratio"])
    verdict = next(line for line in proc.stdout.splitlines() if line.startswith("live rate costs "))
    assert verdict.endswith("of perf2's rate (target < 5%)")
    record_property("summary", f"scripts/bench-gil-sampler --rounds 1 --round-s 1: {verdict} (1 round, not judged)")


@pytest.mark.parametrize("argv", [["--rounds", "0"], ["--round-s", "0"], ["--round-s", "61"], ["--round-s", "nan"],
                                  ["--rounds", "x"], ["--profile"]])
def test_bad_input_is_one_line_and_exit_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        gil_sampler.parse_args(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("scripts/bench-gil-sampler: error: "), err


def test_the_live_rate_is_compose_s_and_must_be_a_rate(monkeypatch):
    monkeypatch.delenv("LAB_GIL_RATE", raising=False)
    modes, where = gil_sampler.sampler_modes()
    assert where == {"live": f"LAB_GIL_RATE={dotenv('LAB_GIL_RATE')}, .env",
                     "report": "lab/experiments/gil_share.py's RATE_HZ, DUMP_RATE_HZ"}
    assert modes["live"] == ["--rate", f"{float(dotenv('LAB_GIL_RATE')):g}"]
    monkeypatch.setenv("LAB_GIL_RATE", "fast")
    with pytest.raises(BenchError, match="LAB_GIL_RATE=fast, the environment: not a sampling rate"):
        gil_sampler.sampler_modes()
