"""compose.yaml, .env and the runner agree, read from their text with no Docker: which CPUs each server
gets (the setting its LAB_CPUS comes from, by its strategy's MULTICORE, and its role in the CPU layout of
server/layouts.py), the defaults of the three cpuset settings and of every other setting, and the published
ports in the order of server.strategies.PUBLISHED (in the README and docs/docker.md too)."""
import re

import pytest

from lab.live import forms

from compose_text import read, services
from conftest import LAB_IMAGE, REPO
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


def test_compose_serves_the_published_strategies_in_their_order():
    """Server N of server.strategies.PUBLISHED is compose's server-NAME at ${LAB_PORT_PREFIX}N, in that order,
    and Locust waits for each: the strategies that the lab image's Python (.env's BASE_IMAGE) can run."""
    servers = {name: service for name, service in services().items() if service["strategy"]}
    assert [(name, service["strategy"], service["port_suffix"]) for name, service in servers.items()] == [
        (forms.service(module), module.NAME, n) for n, module in enumerate(strategies.PUBLISHED, 1)]
    _, anchors = read()
    assert list(anchors["servers-healthy"]) == list(servers), "x-locust's depends_on lacks a server"
    version = tuple(map(int, re.fullmatch(r"python:(\d+)\.(\d+)\D.*", runner.dotenv_settings()["BASE_IMAGE"]).groups()))
    assert sorted(module.NAME for module in strategies.PUBLISHED) == [
        name for name in strategies.ALL if strategies.runs_on(name, version)], "PUBLISHED: every strategy it can run"


def test_the_readme_env_and_docker_md_give_the_published_ports():
    env = runner.dotenv_settings()
    prefix, last = env["LAB_PORT_PREFIX"], len(strategies.PUBLISHED)
    rows = [line.split("|")[1:4:2] for line in (REPO / "README.md").read_text().splitlines()
            if line.startswith(("| `server-", "| `locust-master`"))]
    bind = env["LAB_BIND"]
    assert [(service.strip(" `"), host.strip(" `<>")) for service, host in rows] == [
        *((forms.service(module), f"{bind}:{prefix}{n}") for n, module in enumerate(strategies.PUBLISHED, 1)),
        ("locust-master", f"http://{bind}:{env['LAB_UI_PORT']}")]
    dotenv_text = (REPO / ".env").read_text()
    assert f"${{LAB_PORT_PREFIX}}{last} ({prefix}1-{prefix}{last} by default)" in dotenv_text
    docker_md = (REPO / "docs" / "docker.md").read_text()
    assert f"`${{LAB_PORT_PREFIX}}{last}`: {prefix}1–{prefix}{last} |" in docker_md


def test_compose_and_the_docs_default_to_what_env_ships(monkeypatch):
    """A ${VAR:-default} of compose.yaml is .env's VAR, and so is docs/docker.md's table of defaults; the lab
    image's name, which .env leaves out, is the runner's and the tests' default too."""
    env = runner.dotenv_settings()
    lines = [line for line in (REPO / "compose.yaml").read_text().splitlines() if not line.lstrip().startswith("#")]
    fallbacks = {}
    for variable, default in re.findall(r"\$\{(\w+):-([^}]*)\}", "\n".join(lines)):
        fallbacks.setdefault(variable, set()).add(default)
    assert {variable: fallbacks[variable] for variable in env if variable in fallbacks} == {
        variable: {value} for variable, value in env.items() if variable in fallbacks}
    assert set(env) - set(fallbacks) == set(), ".env sets a variable that compose.yaml does not read"
    assert f"ARG BASE_IMAGE={env['BASE_IMAGE']}\n" in (REPO / "Dockerfile").read_text()
    documented = re.findall(r"^\| `(LAB_\w+)` \| `([^`]*)` \|", (REPO / "docs" / "docker.md").read_text(), re.MULTILINE)
    assert documented and {variable: value for variable, value in documented} == {
        variable: env[variable] for variable, _ in documented}
    monkeypatch.delenv("LAB_IMAGE", raising=False)
    assert fallbacks["LAB_IMAGE"] == {runner.parse_args([]).image} == {LAB_IMAGE}
