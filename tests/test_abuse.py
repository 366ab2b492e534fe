"""The abuse battery (clients.abuse) against every strategy, over loopback: every case, then SIGTERM.

One server per strategy goes through all the cases in turn, as a server in a workshop would, and is
stopped with SIGTERM at the end (within 2 s, no process left behind). Each case asserts what the
abusive client gets (an ERR, a close, or its replies in order), that the server did not crash, and
that a fresh client's fib(20) came back in under a second during the case and after it. Where the
article says a fresh client must wait, the test names it: sequential's one client at a time (C1) and
prefork's --workers (C10) serve it after a case that holds them (timed from the end of the case); a
thread per connection (C13) makes it take its turn for the GIL among thousands of ending threads
after idle-connections (it must be answered, not within a second).
"""
import json
import signal
import subprocess
import sys

import pytest

from clients import abuse
from conftest import REPO, launch_server
from server import strategies

ALL = strategies.runnable()
WORKERS = 2
ARGS = {name: ["--workers", str(WORKERS)] if "workers" in module.USES else [] for name, module in strategies.ALL.items()}


class Battered:
    """One strategy's server through the battery; a case that kills it fails, and the next gets a new one."""

    def __init__(self, strategy, directory):
        self.strategy, self.directory, self.started = strategy, directory, 0
        self.server = self.start()

    def start(self):
        self.started += 1
        return launch_server(self.strategy, *ARGS[self.strategy],
                             stderr_path=self.directory / f"server-{self.started}.err")

    def running(self):
        if self.server.proc.poll() is not None:
            self.server = self.start()
        return self.server


@pytest.fixture(scope="module", params=ALL)
def battered(request, tmp_path_factory):
    abuse.enough_files()
    battered = Battered(request.param, tmp_path_factory.mktemp(request.param))
    yield battered
    battered.server.proc.kill()
    battered.server.proc.wait(timeout=10)
    battered.server.proc.stdout.close()


def claim(strategy):
    """'sequential: one client at a time, the article's first listing (C1)': why a fresh client waits."""
    return strategies.summary(strategy)


@pytest.mark.parametrize("case", abuse.CASES, ids=[case.name for case in abuse.CASES])
def test_the_server_holds_and_serves_a_fresh_client_within_1s(battered, case):
    server = battered.running()
    log_before = len(server.stderr())
    outcome = abuse.run_case(case, server.address, strategy=battered.strategy, workers=WORKERS,
                             others=abuse.OtherLoad(server.proc.pid))
    assert server.proc.poll() is None, f"the server exited ({server.proc.returncode}) during {case.name}"
    new_log = server.stderr()[log_before:]
    assert "Traceback" not in new_log, new_log[-3000:]
    waited = f" (it waited for the case to end, by design: {claim(battered.strategy)})" if outcome.waited else ""
    waited += " (after the case, a thread per connection's convoy: C13)" if outcome.convoy else ""
    assert outcome.ok, f"{case.name} ({case.sends}): {outcome.why}{waited}"


@pytest.mark.parametrize("signum", [signal.SIGTERM], ids=["SIGTERM"])
def test_after_the_battery_sigterm_stops_the_server_within_2s(battered, signum, record_property):
    server = battered.running()
    code, seconds = server.stop(signum)
    record_property("shutdown_s", seconds)
    assert (code, server.leftover_processes(wait_s=2.0)) == (0, False)
    assert seconds < 2.0, f"{battered.strategy} took {seconds:.2f} s to stop after the battery"
    assert "Traceback" not in server.stderr()


def run_abuse(*args):
    return subprocess.run([sys.executable, "-m", "clients.abuse", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_the_command_runs_cases_against_a_server_and_says_what_came_back(start_server):
    server = start_server("prefork", "--workers", "1")
    result = run_abuse("--port", str(server.port), "--strategy", "prefork", "--workers", "1", "--server-pid",
                       str(server.proc.pid), "--case", "garbage", "--case", "over-long-line", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["garbage", "ok"], ["over-long-line", "ok"]]
    record = json.loads(lines[-1])
    assert [(c["case"], c["ok"], c["waited"]) for c in record["cases"]] == [("garbage", True, True),
                                                                           ("over-long-line", True, True)]
    assert all(0 < c["during_s"][0] < 1 and 0 < c["after_s"][0] < 1 for c in record["cases"])


@pytest.mark.parametrize("args, code, message", [
    (["--host", "8.8.8.8"], 2, "runs only against loopback or a private network"),
    (["--port", "1"], 3, "connection refused by 127.0.0.1:1"),
    (["--case", "nope"], 2, "invalid choice: 'nope'"),
])
def test_bad_command_lines_get_one_clear_line(args, code, message):
    result = run_abuse(*args)
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_the_docs_reliability_table_is_the_battery():
    page = (REPO / "docs" / "servers.md").read_text()
    begin, end = page.index(abuse.BEGIN), page.index(abuse.END) + len(abuse.END)
    assert page[begin:end] + "\n" == run_abuse("--markdown").stdout, \
        "docs/servers.md is stale: put 'python -m clients.abuse --markdown' there"
    assert len(abuse.CASES) >= 20
