"""compose.yaml, .env and the runner agree, read from their text with no Docker: which CPUs each server
gets (the setting its LAB_CPUS comes from, by its strategy's MULTICORE, and its role in the CPU layout of
server/layouts.py), the defaults of the three cpuset settings, and the published ports."""
import re

import pytest

from lab.live import forms

from compose_text import services
from conftest import REPO
from lab.runner import run as runner
from server import layouts, strategies

pytestmark = pytest.mark.fast

# The runner's options and the settings compose pins its containers with.
RUNNER_OPTIONS = forms.CPU_SETTINGS  # the runner's option for each of compose's settings, as the Lab view reads them


def expected_cpuset_variable(service):
    """The servers that could use more than one CPU run on the pool's CPUs; the load on its own."""
    strategy = service["strategy"]
    if strategy is None:
        return "LAB_LOAD_CPUS"
    return "LAB_POOL_CPUS" if strategies.load(strategy).MULTICORE else "LAB_SERVER_CPUS"


def test_every_service_is_pinned_by_its_strategys_multicore():
    pinned = {name: service["cpus"] and service["cpus"][0] for name, service in services().items()}
    assert pinned == {name: expected_cpuset_variable(service) for name, service in services().items()}


def test_no_service_has_a_cgroup_cpuset():
    """A cpuset naming a CPU the Docker lacks fails the container ("Requested CPUs are not available"): each
    service is pinned by its LAB_CPUS, through the image's entrypoint, which leaves such a CPU out. Nor a CPU
    quota (cpus:), which fails above the Docker's CPUs as well."""
    lines = [line for line in (REPO / "compose.yaml").read_text().splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in lines if line.strip().startswith(("cpuset:", "cpus:"))]


def test_compose_env_and_runner_leave_the_cpus_to_the_layout(monkeypatch):
    """As shipped, no CPU set is fixed: compose's defaults and .env's are empty, and the runner chooses the
    same layout for the Docker host's CPUs as each container's entrypoint does for its own."""
    env = runner.dotenv_settings()
    for variable in RUNNER_OPTIONS.values():
        monkeypatch.delenv(variable, raising=False)
    defaults = runner.parse_args([])
    for option, variable in RUNNER_OPTIONS.items():
        in_compose = {service["cpus"][1] for service in services().values() if service["cpus"][0] == variable}
        assert in_compose == {env[variable]} == {""}, variable
        assert getattr(defaults, option) is None, option
    for host_cpus in (1, 2, 8):
        settings = runner.settings_of(defaults)
        assert runner.choose_cpus(settings, host_cpus) == f"automatic for {host_cpus} CPU{'s' * (host_cpus > 1)}"
        assert {role: settings[f"{role}_cpus"] for role in layouts.ROLES} == layouts.layout(range(host_cpus))
    # and the runner reads the same variables from the environment, which win over the layout
    monkeypatch.setenv("LAB_POOL_CPUS", "0,1")
    monkeypatch.setenv("LAB_SERVER_CPUS", "1")
    monkeypatch.setenv("LAB_LOAD_CPUS", "0")
    settings = runner.settings_of(runner.parse_args([]))
    assert runner.choose_cpus(settings, 8) == "set"
    assert {option: settings[option] for option in RUNNER_OPTIONS} == {
        "server_cpus": "1", "pool_cpus": "0,1", "load_cpus": "0"}


def test_every_cpu_setting_in_compose_comes_with_its_role_in_the_layout():
    """Each LAB_CPUS is followed by the LAB_CPU_ROLE that server.affinity resolves an empty one by: the role
    whose setting it is (LAB_POOL_CPUS: pool); and the master gets all three settings, for the Lab view."""
    text = (REPO / "compose.yaml").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    pairs = re.findall(r'^\s*LAB_CPUS: "\$\{(\w+):-\}".*\n\s*LAB_CPU_ROLE: (\S+)$', text, re.MULTILINE)
    assert len(pairs) == sum(line.lstrip().startswith(("LAB_CPUS:", "LAB_CPU_ROLE:")) for line in lines) / 2
    assert {(variable, role) for variable, role in pairs} == {(v, role) for role, v in layouts.SETTINGS.items()}
    for variable in layouts.SETTINGS.values():
        assert f'{variable}: "${{{variable}:-}}"' in text, f"locust-master lacks {variable}"


def test_the_published_ports_are_one_block_in_compose_order():
    suffixes = [service["port_suffix"] for service in services().values() if service["strategy"]]
    assert suffixes == list(range(1, len(suffixes) + 1))


def test_a_servers_published_port_is_where_workers_outside_compose_look_for_it():
    """Locust workers outside compose (--lab-servers HOST) reach server-X at ${LAB_PORT_PREFIX}N, N from
    lab.live.forms.PUBLISHED."""
    published = {strategies.key(strategy): n for n, strategy in enumerate(forms.PUBLISHED, 1)}
    assert {service["strategy"]: service["port_suffix"] for service in services().values() if service["strategy"]} \
        == published
