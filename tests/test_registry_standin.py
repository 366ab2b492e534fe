"""The stand-in for the official python:3.13-slim image: scripts/build-python-image
--official-standin 3.13 compiles CPython from the python3.13 source that the Debian mirror serves, the
way the official image is built (under /usr/local, shared libpython, pip from ensurepip, no compiler
left), on the offline trixie base, and tags it python:3.13-slim, so that the lab's default path
(BASE_IMAGE=python:3.13-slim, pip from the package index) can be built on a machine without a registry.

Its compiler layer is images/cpython.Dockerfile's stage "compiler", the one that 3.13t and 3.13g
compile with (tests/test_build_python.py, tests/test_pythons.py): one apt step serves all three. The
compile itself took 347 s on 2 cores beside other tests (2026-12-05), once: a second run finds the tag
and builds nothing."""
import json
import re
import subprocess

import pytest

from conftest import OFFLINE_BASE, REPO, run

BUILD = REPO / "scripts" / "build-python-image"
TAG = "python:3.13-slim"
BUILD_TIMEOUT_S = 1800


def build(*args):
    return subprocess.run([str(BUILD), *args], cwd=REPO, capture_output=True, text=True, timeout=60)


@pytest.mark.fast
@pytest.mark.parametrize("args, says", [
    (["--official-standin", "3.13t"], "--official-standin takes one X.Y VERSION (the official image's), not '3.13t'"),
    (["--official-standin", "3.13", "3.11"],
     "--official-standin takes one X.Y VERSION (the official image's), not '3.13 3.11'"),
    (["--official-standin", "--source", "online", "3.13"],
     "--official-standin builds on the offline base, not with --source online"),
    (["--official-standin", "--tag", "python:3.13 slim", "3.13"], "--tag 'python:3.13 slim' is not an image name (NAME:TAG)"),
    (["--tag", "python:3.13-slim", "3.13"], "--tag is for --official-standin"),
])
def test_bad_input_is_one_line_before_any_docker_call(args, says):
    proc = build(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", f"build-python-image: error: {says}\n")


@pytest.mark.fast
def test_the_help_says_what_the_stand_in_is():
    usage = build("--help").stdout
    assert "--official-standin [--tag NAME] [--tarball PATH] [--force] X.Y" in usage
    assert "never replaced" in usage and "images/python-slim.Dockerfile" in usage


def in_image(*command, image=TAG):
    return run(["docker", "run", "--rm", "--network", "none", image, *command], 120, check=True).stdout.strip()


@pytest.fixture(scope="module")
def standin(docker_engine):
    """The stand-in, built (or found) by the lab's command; its output."""
    official = run(["docker", "image", "inspect", "-f", '{{index .Config.Labels "concurrency-lab.standin-for"}}', TAG],
                   30)
    if official.returncode == 0 and not official.stdout.strip():
        pytest.skip(f"{TAG} here is not the lab's stand-in (the official image, from a registry): not replacing it")
    proc = run([str(BUILD), "--official-standin", "3.13"], BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(proc.stdout)
    return proc.stdout


@pytest.mark.docker
def test_the_stand_in_is_python_313_in_usr_local_with_pip(standin):
    assert re.fullmatch(r"Python 3\.13\.\d+", in_image("python3", "--version"))
    found = in_image("sh", "-c", "for c in python3 python pip pip3; do command -v $c; done; "
                    "test ! -e /usr/bin/python3 && echo no-debian-python")
    assert found.split() == ["/usr/local/bin/python3", "/usr/local/bin/python", "/usr/local/bin/pip",
                             "/usr/local/bin/pip3", "no-debian-python"]
    assert re.fullmatch(r"pip \S+ from /usr/local/lib/python3\.13/site-packages/pip \(python 3\.13\)",
                        in_image("pip", "--version"))
    # what the lab's Dockerfile does with it: a venv, with its own pip (ensurepip, offline)
    venv_pip = in_image("sh", "-c", "python3 -m venv /tmp/venv && /tmp/venv/bin/pip --version")
    assert venv_pip.startswith("pip ") and "/tmp/venv/lib/python3.13/site-packages/pip" in venv_pip
    shared = in_image("python3", "-c", "import sysconfig, sqlite3, ssl; print(sysconfig.get_config_var('Py_ENABLE_SHARED'))")
    assert shared == "1"


@pytest.mark.docker
def test_the_stand_in_has_the_official_settings_and_says_what_it_is(standin):
    config = json.loads(run(["docker", "image", "inspect", "-f", "{{json .Config}}", TAG], 30, check=True).stdout)
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PATH"].startswith("/usr/local/bin:") and env["LANG"] == "C.UTF-8"
    assert env["PYTHON_VERSION"] == in_image("python3", "-c", "import platform; print(platform.python_version())")
    assert config["Cmd"] == ["python3"]
    labels = config["Labels"]
    assert labels["concurrency-lab.standin-for"] == TAG
    assert re.fullmatch(r"python3\.13_3\.13\.\d+\.orig\.tar\.xz \(Debian\)", labels["concurrency-lab.source"])
    assert labels["org.opencontainers.image.description"].startswith(f"NOT the official {TAG}: the Python "
                                                                     "concurrency lab's stand-in for it")


@pytest.mark.docker
def test_the_stand_in_has_no_compiler(standin):
    assert in_image("sh", "-c", "for c in gcc cc cpp make ld as; do command -v $c; done; "
                    "ls -d /usr/lib/gcc/*/*/cc1 /usr/include/stdio.h 2>/dev/null; true") == ""


@pytest.mark.docker
def test_a_second_run_finds_the_stand_in_and_builds_nothing(standin):
    proc = run([str(BUILD), "--official-standin", "3.13"], 120)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"build-python-image: python:3\.13-slim is the lab's stand-in already, from "
                        r"python3\.13_\S+ \(Debian\): nothing to do \(--force builds it again\)\n", proc.stdout)


@pytest.mark.docker
def test_a_tag_that_is_not_the_stand_in_is_never_replaced(docker_engine):
    """The real python:3.13-slim, pulled where a registry answers, stays: here the offline base plays it."""
    other = "concurrency-lab-test:not-a-standin"
    run(["docker", "tag", OFFLINE_BASE, other], 30, check=True)
    try:
        proc = run([str(BUILD), "--official-standin", "--tag", other, "3.13"], 120)
    finally:
        run(["docker", "rmi", other], 30)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (f"build-python-image: error: {other} exists and is not the lab's stand-in (the official "
                           "image?): not replacing it (--tag NAME names the stand-in otherwise)\n")
