"""scripts/build-python-image beyond the listed builds: a CPython source tarball given on the
command line (--tarball, for air-gapped workshops), what it says of a tarball that will not do, a run
that goes on when a Python's image cannot be built, and the table that sets a free-threaded build
beside its GIL twin (X.Yg: the same source and flags, with the GIL).

The tarball build is tested with the python3.13 source that this machine's Debian mirror serves (there
is no python3.14 source on it): the same tarball as the mirror build of 3.13t, so Docker's cache makes
it the suite's one compile at most."""
import json
import os
import re
import subprocess
import tarfile
import time

import pytest

from conftest import REPO, run
from lab.pythons import image, offline_base
from lab.records import across_pythons
from lab.records.record import load_run
from test_claims import NOW
from test_report import copy_of, edit_record, markdown_of, markdown_table, over_two_pythons
from test_runner import lab_run, only_run

BUILD = REPO / "scripts" / "build-python-image"
TRIXIE = offline_base("trixie")  # its Debian serves the python3.13 source
BUILD_TIMEOUT_S = 1800


def build(*args, env=None):
    return subprocess.run([str(BUILD), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env=env)


def tarball(path, files):
    """A .tgz of {name: text} at path."""
    sources = path.parent / f"{path.name}.d"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            (sources / name).parent.mkdir(parents=True, exist_ok=True)
            (sources / name).write_text(text)
            tar.add(sources / name, arcname=name)
    return path


def cpython_like(path, version):
    return tarball(path, {f"Python-{version}/configure": "#!/bin/sh\n",
                          f"Python-{version}/Include/patchlevel.h": f'#define PY_VERSION "{version}"\n'})


@pytest.fixture
def no_docker(tmp_path):
    """An environment whose `docker` only notes that it was called: a bad tarball must stop before it."""
    bin_dir, called = tmp_path / "bin", tmp_path / "docker-called"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\necho \"$@\" >> {called}\nexit 1\n")
    (bin_dir / "docker").chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, called


@pytest.mark.fast
@pytest.mark.parametrize("case, says", [
    ("not a tar", r"--tarball \S+ is not a tar archive \(\.tar\.xz, \.tgz, \.\.\.\)"),
    ("not CPython", r"--tarball \S+ is not a CPython source tarball \(no Python-\*/configure and "
                    r"Include/patchlevel\.h in it\)"),
    ("another version", r"--tarball \S+ is CPython 3\.14\.0, not 3\.13"),
    ("missing", r"--tarball \S+: no such file"),
])
def test_a_tarball_that_will_not_do_is_one_line_and_nothing_is_built(tmp_path, no_docker, case, says):
    env, docker_called = no_docker
    path = {"not a tar": lambda p: (p.write_text("hello"), p)[1],
            "not CPython": lambda p: tarball(p, {"project-1.0/configure": "", "project-1.0/README": ""}),
            "another version": lambda p: cpython_like(p, "3.14.0"),
            "missing": lambda p: p}[case](tmp_path / "Python.tgz")
    proc = build("--tarball", path, "3.13t", env=env)
    assert proc.returncode == 1 and proc.stdout == "", proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and re.fullmatch("build-python-image: error: " + says + "\n",
                                                              proc.stderr), proc.stderr
    assert not docker_called.exists(), "docker was called for a tarball that will not do"


@pytest.mark.fast
def test_a_tarball_is_for_the_compiled_pythons_only(tmp_path, no_docker):
    env, docker_called = no_docker
    proc = build("--tarball", cpython_like(tmp_path / "Python-3.13.5.tgz", "3.13.5"), "3.13", env=env)
    assert proc.returncode == 1
    assert proc.stderr == "build-python-image: error: --tarball is for the compiled VERSIONs (X.Yt, X.Yg), not 3.13\n"
    assert not docker_called.exists()


@pytest.mark.fast
def test_the_table_sets_a_free_threaded_build_beside_its_twin_and_the_twin_beside_the_distributions(tmp_path):
    """3.13t / 3.13g is what free-threading costs, 3.13g / 3.13 what the build costs (no PGO/LTO)."""
    run_dir = copy_of(NOW, tmp_path)
    over_two_pythons(run_dir)
    slower = {"3.13": 1.0, "3.13g": 1.6, "3.13t": 1.76}

    def with_twin(record):
        environment = record["environment"]["pythons"]
        environment["3.13g"] = environment["3.13"]
        for cell_id in [cell_id for cell_id in record["cells"] if cell_id.startswith("3.13/")]:
            record["cells"]["3.13g" + cell_id[4:]] = {**record["cells"][cell_id], "python": "3.13g"}
        for cell_id, cell in record["cells"].items():
            if cell.get("experiment") == "perf1" and cell.get("strategy") == "threaded":
                m = cell["measurements"] = dict(cell["measurements"])
                m["one_client_mean_s"] *= slower[cell["python"]]
        record["settings"]["pythons"] = ["3.13", "3.13t", "3.13g"]

    edit_record(run_dir, with_twin)
    across = {row[0]: row for row in markdown_table(markdown_of(run_dir), "| Python | build |")}
    assert across["3.13t"][-1] == "x1.10 of 3.13g's: free-threading"
    assert across["3.13g"][-1] == "x1.60 of 3.13's: this build"
    assert across["3.13"][-1] == "–"
    assert any(", x1.76 of 3.13's" in text for text in across["3.13t"]), "perf1's column: beside the distribution's"


@pytest.mark.fast
def test_a_run_without_the_twin_says_how_to_get_it_and_a_run_on_one_python_has_nothing_to_split(tmp_path):
    run_dir = copy_of(NOW, tmp_path)
    over_two_pythons(run_dir)
    across = {row[0]: row for row in markdown_table(markdown_of(run_dir), "| Python | build |")}
    assert across["3.13t"][-1] == "(run 3.13g too)" and across["3.13"][-1] == "–"
    assert [row[-1] for row in across_pythons.rows(load_run(NOW))] == ["–"]


@pytest.mark.fast
def test_a_free_threaded_python_brings_its_twin_into_the_run():
    """--python 3.13,3.13t,3.14,3.15 runs 3.13g too, right after 3.13t; a twin named already stays where it is."""
    from lab.runner.run import parse_args, settings_of

    assert settings_of(parse_args(["--python", "3.13,3.13t,3.14,3.15"]))["pythons"] == [
        "3.13", "3.13t", "3.13g", "3.14", "3.15"]
    assert settings_of(parse_args(["--python", "3.13g,3.13t"]))["pythons"] == ["3.13g", "3.13t"]
    assert settings_of(parse_args(["--python", "3.14"]))["pythons"] == ["3.14"]


@pytest.fixture(scope="module")
def debian_python313_tarball(docker_engine, tmp_path_factory):
    """The python3.13 upstream tarball (Python-3.13.x/) from the Debian mirror, as a workshop would carry it."""
    out = tmp_path_factory.mktemp("usb-stick")
    proc = run(["docker", "run", "--rm", "-v", f"{out}:/out", "-v",
                f"{REPO / 'images' / 'debian-source.sh'}:/lab/debian-source.sh:ro", TRIXIE,
                "sh", "/lab/debian-source.sh", "python3.13", "/out"], 600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path,) = out.glob("python3.13_*.orig.tar.xz")
    return path


@pytest.mark.docker
def test_a_free_threaded_python_builds_from_a_given_tarball(debian_python313_tarball):
    started = time.monotonic()
    proc = run([str(BUILD), "--tarball", str(debian_python313_tarball), "3.13t"], BUILD_TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"built from {debian_python313_tarball.name} in {time.monotonic() - started:.0f} s:\n{proc.stdout}")
    assert re.search(rf"{re.escape(str(debian_python313_tarball))}: CPython 3\.13\.\d+, for 3\.13t", proc.stdout), proc.stdout
    build_of = json.loads(run(["docker", "run", "--rm", "--network", "none", image("3.13t"), "python", "-m",
                               "server.build", "--json"], 120, check=True).stdout)
    assert build_of["version"].startswith("3.13.") and build_of["free_threaded"] and not build_of["gil_enabled"]
    label = '{{index .Config.Labels "org.opencontainers.image.description"}}'
    described = run(["docker", "image", "inspect", "-f", label, "concurrency-lab-python:3.13t"], 30, check=True).stdout
    assert described.strip() == f"CPython compiled from {debian_python313_tarball.name}, GIL disabled"


@pytest.mark.docker
def test_a_python_that_cannot_be_built_fails_its_cells_with_the_reason_and_the_run_goes_on(lab_image, tmp_path):
    """3.14t cannot be built here (the mirror serves no python3.14 source): its cells fail, saying so, and
    3.13's run."""
    proc = lab_run("--quick", "--image", lab_image.name, "--python", "3.13,3.14t", "--experiments", "fib",
                   results=tmp_path, timeout=900)
    run_dir, record = only_run(tmp_path)
    built = subprocess.run(["docker", "image", "inspect", image("3.14t")], capture_output=True).returncode == 0
    if built:
        pytest.skip("3.14t builds on this machine: its mirror serves python3.14's source")
    assert proc.returncode == 0, proc.stderr[-3000:]  # complete: every cell has its result, a failure among them
    reason = record["environment"]["pythons"]["3.14t"]["error"]
    assert reason.startswith("compiling 3.14t failed: no source of python3.14 could be downloaded from the Debian "
                             "mirror"), reason
    assert "\n" not in reason
    cells = record["cells"]
    assert cells["3.13/fib/threaded"]["status"] == "ok"
    assert cells["3.14t/fib/threaded"]["status"] == "failed"
    assert cells["3.14t/fib/threaded"]["error"] == f"LabError: the image of Python 3.14t could not be built: {reason}"
    assert "the image of Python 3.14t could not be built: compiling 3.14t failed: no source" in proc.stderr
    assert across_pythons.rows(load_run(run_dir))[1][:2] == ["3.14t", "image not built"]
