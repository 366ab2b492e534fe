"""Memory as USS and PSS beside RSS: clients.process_memory on real local servers, and (Docker) the
server_memory table and the USS of C11 and C13 in a quick run's record and report."""
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from clients import process_memory
from clients.common import ClientError
from conftest import REPO


def read(pid, **options):
    """clients.process_memory --pid PID --json, as a process of its own: (exit code, record or None, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "clients.process_memory", "--pid", str(pid), "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=30, **options)
    records = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(records[-1]) if records else None, proc.stderr


def warm(server):
    """One real request answered, as the lab's servers are before they are read: a pool is started then."""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"20\n")
        assert sock.recv(100) == b"6765\n"


@pytest.mark.parametrize("strategy", ["prefork", "process-pool"])
def test_a_server_of_several_processes_is_read_whole_and_its_pss_is_below_its_rss(start_server, strategy):
    server = start_server(strategy, "--workers", "2")
    warm(server)
    code, record, err = read(server.proc.pid)
    assert code == 0, err
    members = {m["pid"]: m for m in record["members"]}
    assert record["root"] == server.proc.pid and record["processes"] == len(members) >= 3  # the server and 2 workers
    for m in record["members"][1:]:
        assert m["ppid"] in members  # every member descends from the server
    for key in ("threads", "uss_kib", "pss_kib", "rss_kib"):
        assert record[key] == sum(m[key] for m in members.values())
    # a page shared by the server's processes counts once in each one's RSS, a share of it in their PSS
    assert record["uss_kib"] < record["pss_kib"] < record["rss_kib"]


def test_held_connections_add_a_thread_each_to_a_threaded_server(start_server):
    server = start_server("threaded")
    warm(server)
    _, idle, _ = read(server.proc.pid)
    socks = [socket.create_connection(server.address, timeout=10) for _ in range(50)]
    try:
        for sock in socks:
            sock.sendall(b"1\n")
        assert [sock.recv(100) for sock in socks] == [b"1\n"] * 50  # every connection's thread is running
        _, held, _ = read(server.proc.pid)
    finally:
        for sock in socks:
            sock.close()
    assert idle["processes"] == held["processes"] == 1
    assert held["threads"] - idle["threads"] >= 50
    assert held["uss_kib"] > idle["uss_kib"]


def ended_pid():
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_process_that_is_gone_is_one_line_and_exit_1():
    pid = ended_pid()
    code, record, err = read(pid)
    assert (code, record, err) == (1, None, f"process_memory: error: no process {pid}\n")


def test_a_process_that_ends_while_it_is_read_is_named():
    pid = ended_pid()
    with pytest.raises(ClientError, match=f"^process {pid} ended while it was being read$"):
        process_memory.read_process(pid)


def test_a_process_this_user_may_not_read_is_a_permission_error_in_one_line():
    try:
        open("/proc/1/smaps_rollup").close()
        pytest.skip("this user may read every process here, PID 1 too (CAP_SYS_PTRACE)")
    except PermissionError:
        pass  # e.g. in a container without CAP_SYS_PTRACE, whose PID 1 the engine started
    code, record, err = read(1)
    assert code == 1 and record is None
    assert re.fullmatch(r"process_memory: error: cannot read /proc/1/smaps_rollup: permission denied "
                        rf"\(this reader runs as uid {os.getuid()}; .*\)\n", err), err


@pytest.mark.fast
def test_quick_mode_reads_the_four_strategies_of_the_table_and_full_mode_every_one():
    from lab import experiments
    from server import strategies
    quick = experiments.plan("quick", experiments=["server_memory"])
    assert [cell.strategy for cell in quick] == ["threaded", "process-pool", "prefork", "asyncio"]
    full = experiments.plan("full", experiments=["server_memory"])
    assert {cell.strategy for cell in full} == set(strategies.ALL)
    assert all(cell.params["connections"] == [100, 1000] for cell in full)
    assert sum(cell.estimate_s for cell in quick) <= 11  # the table must not make a quick run long


@pytest.mark.docker
def test_a_quick_run_has_the_memory_table_and_uss_in_c11_and_c13(lab_image, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lab", "run", "--quick", "--image", lab_image.name, "--results",
                           str(tmp_path), "--experiments", "server_memory,thread_memory,idle_connections"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((run_dir / "results.json").read_text())
    failed = {cell_id: cell["error"] for cell_id, cell in record["cells"].items() if cell["status"] != "ok"}
    assert not failed
    for strategy in ("threaded", "process-pool", "prefork", "asyncio"):
        levels = record["cells"][f"server_memory/{strategy}"]["measurements"]["levels"]
        assert [level["connections"] for level in levels] == [0, 1000]
        assert all(0 < level["uss_kib"] <= level["pss_kib"] <= level["rss_kib"] for level in levels), levels
    cells = {cell_id.split("/")[-1]: cell["measurements"] for cell_id, cell in record["cells"].items()
             if cell_id.startswith("server_memory/")}
    assert cells["prefork"]["levels"][0]["processes"] >= 3 and cells["process-pool"]["levels"][0]["processes"] >= 4
    assert cells["threaded"]["levels"][1]["threads"] >= 1000 > cells["asyncio"]["levels"][1]["threads"]
    for variant in record["cells"]["thread_memory"]["measurements"]["variants"]:
        assert variant["uss_per_thread_kib"] > 0 and variant["pss_per_thread_kib"] > 0
    for strategy in ("asyncio", "generators", "threaded"):
        m = record["cells"][f"idle_connections/{strategy}"]["measurements"]
        assert {"uss_kib_per_connection", "pss_kib_per_connection", "rss_kib_per_connection"} <= set(m)
    verdicts = {row["id"]: row for row in record["claims"]}
    assert "unique, USS" in verdicts["C11"]["measured"] and "KiB USS" in verdicts["C13"]["measured"]
    assert verdicts["C11"]["verdict"] == verdicts["C13"]["verdict"] == "reproduced"

    report = subprocess.run([sys.executable, "-m", "lab", "report", str(run_dir)], capture_output=True, text=True,
                            timeout=300, cwd=REPO)
    assert report.returncode == 0, report.stderr[-3000:]
    markdown = (run_dir / "report.md").read_text()
    assert "| strategy | connections held | served | USS (MiB) | PSS (MiB) | RSS (MiB) | threads | processes |" in markdown
    assert (run_dir / "plots" / "server_memory.png").read_bytes().startswith(b"\x89PNG")
    figures = [name for name, _, _ in record["cells"]["server_memory/prefork"]["figures"]]
    assert "1,000 connections: PSS" in figures
    print(markdown[markdown.index("## Memory per strategy"):][:1500])
