"""Each fact is written once: the strategy names, the Python versions, fib, the docs' list of
experiments; the tooling is a package (no script folder on the import path); the README is a
newcomer's page whose links resolve. Read from the repository's files, with no Docker."""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from lab import pythons
from lab.records import listing
from server import handlers, protocol, strategies

pytestmark = pytest.mark.fast
IMPORT_PATH = "sys." + "path"  # spelled in two parts, so that searching the repository for it finds nothing here


def tracked(*patterns):
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [REPO / line for line in out.splitlines() if (REPO / line).is_file()]


def python_sources():
    """The lab's own Python files: modules, and scripts whose first line runs Python; not tests or docs."""
    found = []
    for path in tracked():
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(("tests/", "docs/")):
            continue
        if path.suffix == ".py" or path.read_bytes()[:64].split(b"\n")[0].endswith((b"python", b"python3")):
            found.append(path)
    return found


def code_strings(path):
    """Every string literal of a Python file but its docstrings (the literal parts of f-strings included)."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_each_strategy_name_is_a_string_in_exactly_one_module():
    sources = {path: code_strings(path) for path in python_sources()}
    for name, module in strategies.ALL.items():
        word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
        holders = [path.relative_to(REPO).as_posix() for path, strings in sources.items()
                   if any(word.search(text) for text in strings)]
        assert holders == [Path(module.__file__).relative_to(REPO).as_posix()], (name, holders)


def test_the_tooling_is_a_package_and_nothing_edits_the_import_path():
    assert not [path for path in tracked("scripts") if path.suffix == ".py"]
    found = subprocess.run(["git", "grep", "-n", IMPORT_PATH], cwd=REPO, capture_output=True, text=True).stdout
    assert found.splitlines() == []


def test_the_python_versions_are_listed_once():
    versions = pythons.versions()
    assert len(versions) >= 4 and all(re.fullmatch(r"3\.\d+[tg]?", v) for v in versions)
    listing_versions = re.compile("|".join(rf"(?<![\d.]){re.escape(v)}(?![\d.tg])" for v in versions))
    for path in tracked():
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(("tests/", "docs/")) or path.suffix == ".md" or path == pythons.TABLE:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            assert len(set(listing_versions.findall(line))) < 3, f"{relative}:{number} lists versions: {line}"
    # the image builder reads the same table
    usage = subprocess.run([REPO / "scripts" / "build-python-image", "--help"], capture_output=True, text=True).stdout
    assert [line.split()[0] for line in usage.splitlines() if line.startswith("  3.")] == list(versions)


# An oracle of the tests' own, on purpose: the first Fibonacci numbers, written out.
FIBONACCI = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765]


def test_one_fib_convention_for_the_server_and_for_every_check_of_its_replies():
    for n, value in enumerate(FIBONACCI):
        assert handlers.compute_fib_reply(n) == protocol.fib_reply(n) == b"%d\n" % value


def test_the_docs_list_of_experiments_is_the_registrys():
    page = (REPO / "docs" / "runner.md").read_text()
    begin, end = page.index(listing.BEGIN), page.index(listing.END) + len(listing.END)
    generated = subprocess.run([sys.executable, "-m", "lab", "experiments", "--markdown"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout
    assert page[begin:end] + "\n" == generated, "docs/runner.md is stale: put 'scripts/lab experiments --markdown' there"


def github_slug(heading):
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def headings(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {github_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def test_the_readme_is_a_short_page_and_every_link_in_the_docs_resolves():
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 200
    pages = [readme, *sorted((REPO / "docs").glob("*.md"))]
    assert len(pages) > 5
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.exists(), f"{page.name}: {target}"
            if anchor:
                assert anchor in headings(linked), f"{page.name}: {target}"
