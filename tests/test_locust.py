"""The lab's Locust scenarios, run headless as real Locust processes against real servers on loopback.

Every run is bounded by Locust's own --run-time and by a subprocess timeout. Figures are compared as
ratios with wide margins: the machine is small, shared and noisy.
"""
import csv
import json
import math
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from clients.common import free_port

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILES = REPO / "locustfiles"
# Locust's own start and stop take a few seconds on a busy machine; a run never takes longer than this.
RUN_MARGIN_S = 45


def locust_command(scenario, *args):
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILES / f"{scenario}.py"), "--loglevel", "WARNING", *args]


def run_headless(scenario, host, prefix, users, seconds, *args, workers=0):
    """Run one headless test to its end: local, or a master with `workers` worker processes."""
    headless = ["--headless", "-u", str(users), "-r", str(users * 10), "-t", f"{seconds}s",
                "--host", host, "--csv", str(prefix), "--html", f"{prefix}.html", "--only-summary", *args]
    if not workers:
        return subprocess.run(locust_command(scenario, *headless), cwd=REPO, capture_output=True, text=True,
                              timeout=seconds + RUN_MARGIN_S)
    master_port = free_port()
    worker_processes = [
        subprocess.Popen(locust_command(scenario, "--worker", "--master-host", "127.0.0.1",
                                        "--master-port", str(master_port)),
                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(workers)]
    try:
        master = subprocess.run(
            locust_command(scenario, "--master", "--expect-workers", str(workers), "--master-bind-host",
                           "127.0.0.1", "--master-bind-port", str(master_port), *headless),
            cwd=REPO, capture_output=True, text=True, timeout=seconds + RUN_MARGIN_S)
        for worker in worker_processes:
            worker.wait(timeout=15)  # the master tells its workers to quit
        return master
    finally:
        for worker in worker_processes:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def aggregated_stats(prefix):
    with open(f"{prefix}_stats.csv", newline="") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


def hdr_summary(prefix):
    return json.loads(Path(f"{prefix}_hdr.json").read_text())


def tcp(server):
    return f"tcp://{server.host}:{server.port}"


def test_headless_run_has_requests_no_failures_and_hdr_agrees_with_locust(start_server, tmp_path):
    server = start_server("threaded", "--quiet")
    prefix = tmp_path / "perf2"
    run = run_headless("perf2", tcp(server), prefix, users=2, seconds=3)
    assert run.returncode == 0, run.stderr

    stats, summary = aggregated_stats(prefix), hdr_summary(prefix)
    assert int(stats["Request Count"]) > 100
    assert int(stats["Failure Count"]) == 0
    hdr = summary["total"]
    # Every request event went into both: the counts agree exactly with Locust's at the same moment.
    assert hdr["count"] == summary["locust"]["num_requests"] >= int(stats["Request Count"])
    assert list(summary["requests"]) == ["fib(1)"]
    # HDR keeps microseconds; Locust's CSV mean is in ms. Same requests, so the same mean, loosely.
    locust_mean_us = float(stats["Average Response Time"]) * 1000
    assert 0.5 * locust_mean_us <= hdr["mean"] <= 2 * locust_mean_us
    assert hdr["min"] <= hdr["p50"] <= hdr["p90"] <= hdr["p99"] <= hdr["p99_9"] <= hdr["max"]
    assert Path(f"{prefix}_hdr.hgrm").read_text().startswith("       Value")
    assert Path(f"{prefix}.html").exists()


def test_err_replies_are_failures_and_the_user_reconnects(start_server, tmp_path):
    server = start_server("threaded", "--max-n", "5")  # logs its connections: we count them
    prefix = tmp_path / "perf1"
    run = run_headless("perf1", tcp(server), prefix, users=1, seconds=2)
    assert run.returncode == 1, run.stderr  # Locust's exit code when any request failed

    stats = aggregated_stats(prefix)
    assert int(stats["Request Count"]) > 0
    assert int(stats["Failure Count"]) == int(stats["Request Count"])
    failures = (tmp_path / "perf1_failures.csv").read_text()
    assert "server replied: ERR n=30 is above the limit 5" in failures
    assert server.stderr().count("connection from") >= 2


def test_a_timeout_is_a_failure_with_its_own_message(start_server, tmp_path):
    server = start_server("threaded", "--quiet")
    prefix = tmp_path / "slow"
    # fib(32) takes a few hundred ms; the user waits for 50 ms only.
    run = run_headless("perf1", tcp(server), prefix, 1, 2, "--perf1-n", "32", "--request-timeout", "0.05")
    assert run.returncode == 1, run.stderr
    failures = (tmp_path / "slow_failures.csv").read_text()
    assert f"no reply from {server.host}:{server.port} within 0.05 s" in failures


def test_a_dropped_connection_is_a_failure_with_its_own_message(tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def hang_up_on_everyone():
        while not stop.is_set():
            try:
                listener.accept()[0].close()
            except TimeoutError:
                pass

    hang_up = threading.Thread(target=hang_up_on_everyone)
    hang_up.start()
    try:
        port = listener.getsockname()[1]
        prefix = tmp_path / "dropped"
        run = run_headless("perf2", f"tcp://127.0.0.1:{port}", prefix, 1, 2)
    finally:
        stop.set()
        hang_up.join()
        listener.close()
    assert run.returncode == 1, run.stderr
    stats = aggregated_stats(prefix)
    assert int(stats["Failure Count"]) == int(stats["Request Count"]) > 0
    failures = (tmp_path / "dropped_failures.csv").read_text()
    assert f"connection to 127.0.0.1:{port}" in failures


def test_a_master_with_two_workers_merges_their_histograms(start_server, tmp_path):
    server = start_server("threaded", "--quiet")
    prefix = tmp_path / "merged"
    # --stop-timeout: the users stop between two requests, and the workers' last reports still count.
    run = run_headless("perf2", tcp(server), prefix, 4, 4, "--stop-timeout", "5", workers=2)
    assert run.returncode == 0, run.stderr

    summary, stats = hdr_summary(prefix), aggregated_stats(prefix)
    per_worker = summary["requests_per_worker"]
    assert len(per_worker) == 2 and all(count > 0 for count in per_worker.values()), per_worker
    assert summary["total"]["count"] == sum(per_worker.values()) == summary["locust"]["num_requests"]
    assert summary["total"]["count"] >= int(stats["Request Count"]) > 0
    assert int(stats["Failure Count"]) == 0


def test_open_loop_charges_a_stall_to_every_request_it_held_back(start_server, tmp_path):
    # asyncio computes inline: while the long request runs, nobody else gets an answer.
    server = start_server("asyncio", "--quiet")
    n = long_fib_n(server, seconds=1)
    rate, seconds = 100, 5

    def short_and_long_requests(name, *args):
        prefix = tmp_path / name
        run = run_headless("convoy", tcp(server), prefix, 2, seconds, "--convoy-delay", "1.5",
                           "--convoy-n", str(n), *args)
        assert run.returncode == 0, run.stderr
        requests = hdr_summary(prefix)["requests"]
        return requests["fib(1)"], requests[f"fib({n})"]["max"]

    closed_loop, closed_stall_us = short_and_long_requests("closed")
    open_loop, open_stall_us = short_and_long_requests("open", "--rate", str(rate))
    # The schedule is kept whatever the server does: about rate x seconds requests.
    assert 0.6 * rate * seconds <= open_loop["count"] <= 1.1 * rate * seconds, open_loop
    # Closed loop: a single request waits out the stall, the others never see it.
    assert closed_loop["p90"] < 0.1 * closed_stall_us, closed_loop
    # Open loop: every request due during the stall (about a fifth of them) is charged from its
    # intended start, so the slowest tenth waited half the stall or more.
    assert open_loop["p90"] > 0.2 * open_stall_us, open_loop


def long_fib_n(server, seconds):
    """The n whose fib(n) takes about `seconds` on this server (fib(n) grows by the golden ratio)."""
    with socket.create_connection(server.address, timeout=30) as sock:
        timings = []
        for _ in range(3):  # the fastest of three: the others waited for a busy CPU
            started = time.perf_counter()
            sock.sendall(b"27\n")
            sock.recv(100)
            timings.append(time.perf_counter() - started)
    golden_ratio = (1 + math.sqrt(5)) / 2
    return min(40, 27 + math.ceil(math.log(seconds / min(timings), golden_ratio)))


def test_convoy_rate_drops_while_the_long_request_runs_on_threaded(start_server, tmp_path):
    server = start_server("threaded", "--quiet")
    n = long_fib_n(server, seconds=3)  # long enough to cover two whole seconds
    prefix = tmp_path / "convoy"
    run = run_headless("convoy", tcp(server), prefix, 3, 12, "--convoy-delay", "3", "--convoy-n", str(n))
    assert run.returncode == 0, run.stderr

    timeline = json.loads((tmp_path / "convoy_convoy.json").read_text())
    long_request = timeline["long_request"]
    assert long_request["name"] == f"fib({n})" and long_request["succeeded"], long_request
    assert timeline["rate_during_per_s"] is not None, timeline
    assert timeline["rate_during_per_s"] < 0.5 * timeline["rate_before_per_s"], timeline
    rows = list(csv.DictReader((tmp_path / "convoy_convoy.csv").open()))
    assert any(row["long_request_running"] == "1" for row in rows)
    assert hdr_summary(prefix)["requests"][f"fib({n})"]["count"] == 1
