"""The lab's CPU layout (server/layouts.py) for 1 to 16 CPUs, and server.affinity pinning a real process by
its role with it when LAB_CPUS is empty (the .env as shipped). This machine's CPUs bound the real-process
cases (taskset narrows the launcher's CPUs as a container's are); more CPUs are the pure function's."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO
from lab import experiments
from lab.live import forms
from server import affinity, layouts, placement, strategies
from server.cpusets import parse_cpuset

pytestmark = pytest.mark.fast

MINE = sorted(os.sched_getaffinity(0))
SHOW = "import json, os; print(json.dumps(sorted(os.sched_getaffinity(0))))"


def written_layouts():
    """{where: {n: {role: CPUs}}}: the layout's tables for n CPUs in its docstring, .env and docs/docker.md."""
    doc = dict(re.findall(rf"^  ({'|'.join(('CPUs', *layouts.ROLES))}) +([\d,\- ]+)$", layouts.__doc__, re.MULTILINE))
    columns = zip(*(doc[role].split() for role in layouts.ROLES))
    docstring = {int(n): dict(zip(layouts.ROLES, cpus)) for n, cpus in zip(doc["CPUs"].split(), columns)}
    env = {int(n): dict(zip(layouts.ROLES, cpus)) for n, *cpus in re.findall(
        r"^#\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", (REPO / ".env").read_text(), re.MULTILINE)}
    page = (REPO / "docs" / "docker.md").read_text().splitlines()
    header = next(line for line in page if line.startswith("| variable | who runs on it |"))
    rows = {role: re.findall(r"\| `([\d,-]+)`", next(line for line in page if line.startswith(f"| `{variable}` |")))
            for role, variable in layouts.SETTINGS.items()}
    docker_md = {int(n): {role: cpus[i] for role, cpus in rows.items()}
                 for i, n in enumerate(re.findall(r"\| (\d+) CPUs?", header))}
    return {"server/layouts.py": docstring, ".env": env, "docs/docker.md": docker_md}


@pytest.mark.parametrize("where, table", written_layouts().items())
def test_the_layout_for_n_cpus_is_what_its_tables_say(where, table):
    """The docstring's table is the layout's specification; .env's and docs/docker.md's repeat it for readers."""
    assert len(table) >= 6 and table == {n: layouts.layout(range(n)) for n in table}, where


def test_docker_md_names_the_servers_on_each_role_by_multicore():
    page = (REPO / "docs" / "docker.md").read_text()
    for variable, multicore in (("LAB_SERVER_CPUS", False), ("LAB_POOL_CPUS", True)):
        who = next(line for line in page.splitlines() if line.startswith(f"| `{variable}` |")).split("|")[2]
        named = [module.NAME for module in strategies.PUBLISHED if re.search(rf"(?<![\w-]){module.NAME}(?![\w-])", who)]
        assert named == [module.NAME for module in strategies.PUBLISHED if module.MULTICORE == multicore], variable


def test_the_layout_uses_the_cpu_ids_there_are_first_the_lowest():
    assert layouts.layout({5, 3, 2, 4}) == {"server": "2", "pool": "2-4", "load": "5"}
    assert layouts.layout([7]) == {"server": "7", "pool": "7", "load": "7"}
    assert layouts.layout([1, 3, 5, 7, 9, 11, 13, 15]) == {"server": "1", "pool": "1,3,5,7,9", "load": "11,13,15"}
    with pytest.raises(ValueError, match="no CPUs"):
        layouts.layout([])


@pytest.mark.parametrize("n", range(1, 17))
def test_what_the_layout_promises_on_every_size(n):
    """The server on the pool's first CPU; the pool two CPUs whenever there are two (C4, C7, C8, C9), and from
    four CPUs on two for its workers besides the first, where the server answers (server.placement); every
    CPU used; from three CPUs on, the load on CPUs no server uses."""
    cpus = {role: parse_cpuset(text) for role, text in layouts.layout(range(n)).items()}
    assert cpus["server"] == {0} and min(cpus["pool"]) == 0
    assert len(cpus["pool"]) == (min(2, n) if n < 4 else n // 2 + 1)
    assert n < 4 or len(placement.worker_cpus(placement.FIXED, cpus["pool"]) - cpus["server"]) >= 2
    assert cpus["pool"] | cpus["load"] == set(range(n))
    assert n < 3 or not cpus["load"] & (cpus["server"] | cpus["pool"])


def test_settings_win_over_the_layout_and_say_how_it_was_chosen():
    assert layouts.resolve({}, range(2)) == ({"server": "0", "pool": "0-1", "load": "1"}, "automatic for 2 CPUs")
    assert layouts.resolve({"server": "", "pool": " ", "load": None}, [0]) == (
        {"server": "0", "pool": "0", "load": "0"}, "automatic for 1 CPU")
    assert layouts.resolve({"load": "1"}, range(4)) == (
        {"server": "0", "pool": "0-2", "load": "1"}, "load set, the rest automatic for 4 CPUs")
    given = {"server": "1", "pool": "0-1", "load": "0"}
    assert layouts.resolve(given, []) == (given, "set")  # nothing left to choose: no CPUs needed


@pytest.mark.parametrize("n", [4, 8, 16])
def test_the_entrypoint_resolves_a_role_over_more_cpus_than_this_machine_has(n):
    for role in layouts.ROLES:
        assert affinity.wanted_cpus({affinity.ROLE: role}, set(range(n))) == layouts.layout(range(n))[role]
        assert affinity.wanted_cpus({affinity.ROLE: role, affinity.WANTED: "1"}, set(range(n))) == "1"
    assert affinity.wanted_cpus({}, set(range(n))) is None


def test_the_lab_view_reads_the_layout_the_containers_run_on():
    """The master's environment as compose gives it with the .env as shipped: empty settings, and the Docker's
    CPUs that server.affinity exported; the servers' CPUs and the layout are what each container resolved."""
    shipped = {variable: "" for variable in layouts.SETTINGS.values()}
    eight = {**shipped, affinity.AVAILABLE: "0-7"}
    assert forms.lab_settings(eight) == {"server_cpus": "0", "pool_cpus": "0-4", "load_cpus": "5-7", "cpus": "0-7",
                                      "placement": "fixed"}
    assert forms.configured_cpus(eight) == {"server_cpus": "0", "pool_cpus": "0-4", "load_cpus": "5-7"}
    assert forms.cpu_layout(eight) == {"server": "0", "pool": "0-4", "load": "5-7", "chosen": "automatic for 8 CPUs"}
    # set ones win, and are shown on the CPUs this Docker has
    assert forms.cpu_layout({**eight, "LAB_POOL_CPUS": "0-5", affinity.AVAILABLE: "0-3"}) == {
        "server": "0", "pool": "0-3", "load": "3", "chosen": "pool set, the rest automatic for 4 CPUs"}
    assert forms.cpu_layout(shipped)["chosen"] == "unknown"  # not started by the image's entrypoint
    # on one CPU the claims that need two still say so
    one = forms.lab_settings({**shipped, affinity.AVAILABLE: "0"})
    short = {key for key, form in experiments.live().items() if form.short_of_cpus(one)}
    assert short == {"C4", "C6", "C7", "C8", "C9"}


# --- server.affinity, a real process on this machine's CPUs ----------------------------------------

def launched(cpus, role, lab_cpus="", command=(sys.executable, "-S", "-c", SHOW)):
    """(exit status, the CPUs the command ran on or None, stderr) of server.affinity under `taskset -c CPUS`,
    with LAB_CPU_ROLE=role and LAB_CPUS=lab_cpus ('' as the .env ships it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_CPU")}
    env.update(PYTHONPATH=str(REPO), LAB_CPUS=lab_cpus, LAB_CPU_ROLE=role)
    proc = subprocess.run(["taskset", "-c", cpus, sys.executable, "-S", "-m", "server.affinity", *command],
                          env=env, capture_output=True, text=True, timeout=30)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.startswith("[") else None, proc.stderr


needs_taskset = pytest.mark.skipif(not shutil.which("taskset"), reason="no taskset (util-linux)")


@needs_taskset
def test_on_one_cpu_every_role_runs_on_it():
    for cpu in MINE[:1] + MINE[-1:]:  # CPU 0, and a container given a later CPU only
        for role in layouts.ROLES:
            assert launched(str(cpu), role) == (0, [cpu], ""), role


@needs_taskset
@pytest.mark.skipif(len(MINE) < 2, reason="needs two CPUs")
def test_on_two_cpus_the_pool_has_both_and_the_load_the_second():
    first, second = MINE[:2]
    two = f"{first},{second}"
    assert {role: launched(two, role)[1] for role in layouts.ROLES} == {
        "server": [first], "pool": [first, second], "load": [second]}
    assert launched(two, "pool", lab_cpus=str(second)) == (0, [second], ""), "a LAB_CPUS set wins over the role"


@needs_taskset
def test_a_role_the_layout_lacks_stops_the_command_with_one_line(tmp_path):
    ran = tmp_path / "ran"
    code, _, err = launched(str(MINE[0]), "servers", command=(sys.executable, "-c", f"open({str(ran)!r}, 'w')"))
    assert (code, err) == (2, "server.affinity: LAB_CPU_ROLE=servers: not a role of the lab's CPU layout "
                              "(server, pool, load)\n")
    assert not ran.exists(), "the command must not run"
