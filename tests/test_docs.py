"""The docs name only what exists. README.md and docs/*.md are read for what they name: every
repository path, every `scripts/NAME`, every `scripts/lab COMMAND`, every option given to one of
the lab's commands (checked against that command's own --help), every compose service and every
`.env` variable; and docs/development.md's layout and list of scripts against the repository.
Each check is a function of a page's text that returns its problems as 'page:line: what', so that
a page naming something missing fails with the line to fix. No Docker: compose.yaml is read as text."""
import functools
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO
from lab.__main__ import COMMANDS
from test_sources import tracked

pytestmark = pytest.mark.fast

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Paths that a run or a setup step creates, so a fresh clone has none of them (all in .gitignore):
CREATED = (
    "results/",     # scripts/lab run, Locust's --csv, the live runs copied out of the master
    "build/",       # the browser tests' screenshots
    "wheelhouse/",  # scripts/wheelhouse
    "ca-certs/",    # the user's CA bundle, for pip behind a TLS-intercepting proxy
    ".venv/",       # scripts/test and scripts/lab
)
# The repository's folders a path in the docs may start with; a path is one of these then a slash.
FOLDERS = ("server", "clients", "lab", "locustfiles", "scripts", "tests", "docs", "images", "requirements",
           ".ci", *(created.rstrip("/") for created in CREATED))
PATH = re.compile(r"(?<![\w./@:~$-])(?:\./)?((?:%s)/[^\s`'\"),;|\]]*)" % "|".join(map(re.escape, FOLDERS)))
# A path component that stands for a name the reader picks: <run>, NAME, ARCH, X.Y, a glob, "...".
PLACEHOLDER = re.compile(r"[<{…]|\.\.\.|\$|\b[A-Z][A-Z_]{1,}\b|\bX\.Y|\bN\b")
LOG_LINE = re.compile(r"^\s*[\w.-]+-\d+\s+\|")  # a container's log line, quoted in a text block


# ---- reading a page ------------------------------------------------------------------------------

def rel(page):
    return page.relative_to(REPO).as_posix()


def fenced_blocks(text):
    """(first line number, language, the block's lines) of each ``` block."""
    blocks, inside, lines = [], None, text.splitlines()
    for number, line in enumerate(lines, 1):
        if line.lstrip().startswith("```"):
            if inside is None:
                inside = (number + 1, line.strip()[3:].strip(), [])
            else:
                blocks.append(inside)
                inside = None
        elif inside is not None:
            inside[2].append(line)
    return blocks


def prose(text):
    """The page without its ``` blocks (each line kept, emptied, so that line numbers hold)."""
    out, inside = [], False
    for line in text.splitlines():
        fence = line.lstrip().startswith("```")
        out.append("" if inside or fence else line)
        if fence:
            inside = not inside
    return "\n".join(out)


def inline_code(text):
    """(line number, text) of each `span` outside the ``` blocks; a span may wrap over lines."""
    body = prose(text)
    return [(body.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split()))
            for m in re.finditer(r"`([^`]+)`", body)]


def command_lines(text):
    """(line number, command line) of every shell command the page shows: each line of its sh,
    bash and console blocks (continuations joined, prompts, comments and here-documents left out)
    and each inline span."""
    found = []
    for first, language, lines in fenced_blocks(text):
        if language not in ("sh", "bash", "shell", "console", ""):
            continue
        heredoc, pending, start = None, "", 0
        for number, line in enumerate(lines, first):
            if heredoc:
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            if not pending:
                start = number
            marker = re.search(r"<<-?'?(\w+)'?", line)
            if marker:
                heredoc = marker.group(1)
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            found.append((start, pending + line))
            pending = ""
    found += inline_code(text)
    return [(number, strip_comment(line)) for number, line in found]


def strip_comment(line):
    return re.sub(r"(^|\s)#.*$", "", line).replace("\\|", " ")


def commands(line):
    """The simple commands of a shell line, each as a list of words; quotes are kept out of words."""
    for part in re.split(r"&&|\|\||(?<=\s)\|(?=\s)|;|(?<=\s)&(?=\s|$)|\$\(|\)", line):
        try:
            words = shlex.split(part)
        except ValueError:
            words = part.split()
        while words and (re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]) or words[0] in ("sudo", "time", "exec")):
            words = words[1:]
        if words:
            yield [word.strip("[]") for word in words]


# ---- what the repository has ---------------------------------------------------------------------

@functools.cache
def compose_services():
    """The services of compose.yaml: the keys two spaces in under 'services:'."""
    services, inside = set(), False
    for line in (REPO / "compose.yaml").read_text().splitlines():
        if re.match(r"\S", line):
            inside = line.startswith("services:")
        elif inside and re.match(r"  [\w-]+:\s*$", line):
            services.add(line.strip()[:-1])
    return services


@functools.cache
def known_variables():
    """The settings a page may name: .env's, what compose.yaml reads, what the lab's code reads, and
    the LOCUST_ variable of every option of Locust and of the lab's locustfiles."""
    names = {line.split("=")[0] for line in (REPO / ".env").read_text().splitlines() if re.match(r"[A-Z_]+=", line)}
    sources = [REPO / "compose.yaml", REPO / "Dockerfile"]
    sources += [path for path in tracked() if rel(path).startswith(("server/", "clients/", "lab/", "locustfiles/",
                                                                      "scripts/", "images/", ".ci/"))]
    for path in sources:
        names |= set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", path.read_text(errors="replace")))
    names |= {"LOCUST_" + flag[2:].upper().replace("-", "_") for flag in locust_options()}
    return names


@functools.cache
def locust_options():
    """Locust's own options and those the lab's locustfiles add (Locust's --help lists only its own)."""
    lab = set()
    for path in sorted((REPO / "locustfiles").glob("*.py")):
        lab |= set(re.findall(r"""["'](--[a-z][\w-]*)["']""", path.read_text()))
    return set(re.findall(r"--[a-z][\w-]*", help_text(("locust",)))) | lab


def script_module(script):
    """The Python module a script hands its arguments to (exec "$LAB_PYTHON" -m MODULE "$@"), or None."""
    found = re.search(r'exec "\$LAB_PYTHON" -m ([\w.]+) "\$@"', (REPO / "scripts" / script).read_text())
    return found.group(1) if found else None


def module_exists(module):
    return importlib.util.find_spec(module) is not None


def help_argv(key):
    """How to ask a command for its options. key: ('module', NAME) or ('module', 'lab', COMMAND),
    ('script', NAME) or ('locust',)."""
    if key[0] == "locust":
        return [sys.executable, "-m", "locust", "--help"]
    if key[0] == "script":
        return [str(REPO / "scripts" / key[1]), "--help"]
    return [sys.executable, "-m", *key[1:], "--help"]


_HELP = {}  # each command's --help, by key: asked once per session


def help_text(key):
    return help_texts([key])[key]


def help_texts(keys):
    """Each command's --help, run once per session, several at a time."""
    missing = [key for key in dict.fromkeys(keys) if key not in _HELP]

    def run(key):
        env = {**os.environ, "COLUMNS": "200"}
        proc = subprocess.run(help_argv(key), cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        return proc.stdout + proc.stderr

    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, text in zip(missing, pool.map(run, missing)):
            _HELP[key] = text
    return _HELP


# ---- the checks: each takes a page's name and text and returns its problems ----------------------

def path_problems(name, text):
    """Every repository path the page names exists (a path a run creates excepted, CREATED); every
    scripts/NAME is an executable file. In code every path counts; in prose, a path that ends in a
    slash or a file's extension, or a script (not 'lab/bare', a ratio)."""
    problems = []
    body = re.sub(r"\]\([^)]*\)|<https?://[^>]*>|https?://\S+", "", text)  # links: test_sources checks them
    code = [(number, span) for number, span in inline_code(body)]
    code += [(number, line) for first, _, lines in fenced_blocks(body) for number, line in enumerate(lines, first)
             if not LOG_LINE.match(line)]
    words = [(number, line.replace("\\_", "_")) for number, line in enumerate(prose(body).splitlines(), 1)]
    words = [(number, re.sub(r"`[^`]*`", "", line)) for number, line in words]
    for number, line, in_code in [(n, t, True) for n, t in code] + [(n, t, False) for n, t in words]:
        for match in PATH.finditer(line):
            path = match.group(1).split("::")[0].rstrip(".:")
            last = path.rsplit("/", 1)[-1]
            if not in_code and not (path.endswith("/") or "." in last or path.startswith("scripts/")):
                continue
            if path.startswith(CREATED) or path + "/" in CREATED:
                continue
            known = []
            for part in path.split("/"):
                if PLACEHOLDER.search(part):
                    break
                known.append(part)
            checked = "/".join(known)
            exists = any(REPO.glob(checked.rstrip("/"))) if "*" in checked else (REPO / checked).exists()
            if not exists:
                problems.append(f"{name}:{number}: {path} does not exist")
            elif (len(known) == 2 and known[0] == "scripts" and (REPO / checked).is_file()
                  and not os.access(REPO / checked, os.X_OK)):
                problems.append(f"{name}:{number}: {path} is not executable")
    return sorted(set(problems), key=lambda problem: int(problem.split(":")[1]))


def module_problems(name, text):
    """Every module of the lab's packages named in code (clients.request, lab.live.forms.LiveForm)
    is one: its first two names at least resolve to a module or package."""
    problems = []
    for number, span in inline_code(text) + [(n, line) for n, line in command_lines(text)]:
        for dotted in re.findall(r"(?<![\w./-])((?:server|clients|lab)(?:\.\w+)+)", span):
            parts = dotted.split(".")
            if PLACEHOLDER.search(dotted):
                continue
            if not module_exists(".".join(parts[:2])):
                problems.append(f"{name}:{number}: {dotted}: no module {'.'.join(parts[:2])}")
    return sorted(set(problems))


def command_uses(name, text):
    """(line, command, help key, options given, problems) for each of the lab's commands the page
    runs: scripts/NAME, scripts/lab COMMAND, python -m MODULE of the lab's packages, locust, and the
    clients that docker compose run/exec and docker run start in the lab image."""
    uses = []
    for number, line in command_lines(text):
        for words in commands(line):
            uses += _uses(f"{name}:{number}", line, words)
    return uses


def _uses(where, line, words):
    flags = [word.split("=")[0] for word in words if re.match(r"--[a-z]", word)]
    first = words[0].removeprefix("./")
    if first.startswith("scripts/") and first.count("/") == 1:
        script = first.split("/")[1]
        if not (REPO / first).is_file():
            return [(where, line, None, [], [f"{where}: {first} does not exist"])]
        module = script_module(script)
        if module == "lab":
            return _lab(where, line, words[1:])
        if module:
            return [(where, line, ("module", module), flags, [])]
        return [(where, line, ("script", script), flags, [])]
    if re.fullmatch(r"(\S*/)?python3?(\.\d+)?", first):
        rest = [word for word in words[1:] if word != "-S"]
        if len(rest) >= 2 and rest[0] == "-m":
            return _module(where, line, rest[1], rest[2:])
        return []
    if first == "locust":
        return [(where, line, ("locust",), flags, [])]
    if first == "docker" and len(words) > 1 and words[1] == "compose":
        return _compose(where, line, words[2:])
    if first == "docker" and "concurrency-lab:latest" in words:
        inner = words[words.index("concurrency-lab:latest") + 1:]
        return _uses(where, line, inner) if inner else []
    return []


def _module(where, line, module, args):
    top = module.split(".")[0]
    if top not in ("server", "clients", "lab"):
        return []
    if not module_exists(module):
        return [(where, line, None, [], [f"{where}: python -m {module}: no such module"])]
    if module == "lab":
        return _lab(where, line, args)
    if module == "server.affinity":  # the image's entrypoint: the command after it is the one that runs
        return _uses(where, line, args) if args else []
    if module == "clients" and args and not args[0].startswith("-") and not PLACEHOLDER.search(args[0]):
        return _module(where, line, f"clients.{args[0]}", args[1:])
    flags = [word.split("=")[0] for word in args if re.match(r"--[a-z]", word)]
    return [(where, line, ("module", module), flags, [])]


def _lab(where, line, args):
    if not args or args[0].startswith("-") or PLACEHOLDER.search(args[0]):
        return []
    problems = []
    for command in args[0].split("|"):
        if command not in COMMANDS:
            problems.append(f"{where}: scripts/lab {command}: no such command (lab/__main__.py: {', '.join(COMMANDS)})")
    if problems or "|" in args[0]:  # 'run|report|...': several commands, no options to check
        return [(where, line, None, [], problems)]
    flags = [word.split("=")[0] for word in args[1:] if re.match(r"--[a-z]", word)]
    return [(where, line, ("module", "lab", args[0]), flags, [])]


# docker compose's options that take a value, before and after its subcommand
COMPOSE_VALUES = {"-f", "--file", "-p", "--project-name", "--profile", "--env-file", "--project-directory",
                  "--scale", "-t", "--timeout", "--wait-timeout", "--tail", "--index", "-e", "--env", "-u",
                  "--user", "-w", "--workdir", "--entrypoint", "--name", "-v", "--volume"}
COMPOSE_SERVICES_ARE_ARGS = {"up", "logs", "rm", "stop", "start", "restart", "ps", "kill", "pull", "build",
                             "create", "pause", "unpause", "top", "events", "images"}


def _compose(where, line, args):
    words, values, skip = [], {}, False
    for i, word in enumerate(args):
        if skip:
            skip = False
            continue
        if word in COMPOSE_VALUES:
            values.setdefault(word, []).append(args[i + 1] if i + 1 < len(args) else "")
            skip = True
        elif word.startswith("-") and not words:
            continue
        else:
            words.append(word)
    if not words:
        return []
    sub, positional = words[0], [word for word in words[1:] if not word.startswith("-")]
    named = [value.split("=")[0] for value in values.get("--scale", [])]
    inner = []
    if sub in COMPOSE_SERVICES_ARE_ARGS:
        named += positional
    elif sub == "cp":
        named += [word.split(":")[0] for word in positional if ":" in word]
    elif sub in ("run", "exec") and positional:
        named.append(positional[0])
        command = words[words.index(positional[0]) + 1:]
        if sub == "run" and positional[0] == "clients" and "--entrypoint" not in values:
            command = ["python", "-m", "clients", *command]
        if command and (sub == "exec" or positional[0] == "clients"):
            inner = _uses(where, line, command)
    problems = [f"{where}: docker compose {sub} {service}: no such service in compose.yaml"
                for service in named if not PLACEHOLDER.search(service) and service not in compose_services()]
    return [(where, line, None, [], problems)] + inner if problems else inner


def option_problems(name, text):
    """Every option given to one of the lab's commands is in that command's --help."""
    uses = command_uses(name, text)
    help_texts([key for *_, key, flags, _ in uses if key and set(flags) - {"--help"}])
    problems = []
    for where, line, key, flags, found in uses:
        problems += found
        for flag in flags:
            if flag == "--help":
                continue
            options = locust_options() if key == ("locust",) else set(re.findall(r"--[a-z][\w-]*", help_text(key)))
            if flag not in options:
                problems.append(f"{where}: {flag} is not an option of {' '.join(help_argv(key)[:-1])}: {line.strip()}")
    return problems


def service_problems(name, text):
    """Every compose service a command names exists, and so does every server-NAME in code and every
    container name concurrency-lab-SERVICE-N."""
    problems = [problem for *_, found in command_uses(name, text) for problem in found if "service" in problem]
    for number, span in inline_code(text) + command_lines(text):
        for service in re.findall(r"(?<![\w/.-])(server-[a-z][a-z-]*[a-z])(?![\w-])", span):
            if service not in compose_services():
                problems.append(f"{name}:{number}: {service}: no such service in compose.yaml")
        for service in re.findall(r"\bconcurrency-lab-([a-z-]+)-\d+\b", span):
            if service not in compose_services():
                problems.append(f"{name}:{number}: concurrency-lab-{service}-N: no such service in compose.yaml")
    return sorted(set(problems))


def variable_problems(name, text):
    """Every LAB_*, LOCUST_* and BASE_IMAGE setting the page names is in .env, compose.yaml or the code."""
    return [f"{name}:{number}: {variable} is in neither .env nor compose.yaml nor the lab's code"
            for number, line in enumerate(text.splitlines(), 1)
            for variable in re.findall(r"\b(?:LAB|LOCUST)_[A-Z0-9_]*[A-Z0-9]\b|\bBASE_IMAGE\b", line)
            if variable not in known_variables()]


CHECKS = [path_problems, module_problems, option_problems, service_problems, variable_problems]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_docs_name_only_what_exists(check):
    problems = [problem for page in PAGES for problem in check(rel(page), page.read_text())]
    assert not problems, f"{len(problems)} in the docs:\n" + "\n".join(problems)


def test_the_checks_find_a_missing_path_script_command_option_service_and_variable():
    page = "\n".join([
        "The report is `lab/records/reporting.py`; run `scripts/lab run --quick` and then:",
        "```sh",
        "scripts/lab summarize results/<run>",
        "scripts/wheel-house --image concurrency-lab-base:trixie",
        "python -m clients.perf2 --rate 10",
        "docker compose up -d server-threads",
        "LAB_SERVER_CPU=0 docker compose up -d",
        "```",
    ])
    assert path_problems("demo.md", page) == ["demo.md:1: lab/records/reporting.py does not exist",
                                              "demo.md:4: scripts/wheel-house does not exist"]
    assert option_problems("demo.md", page) == [
        "demo.md:3: scripts/lab summarize: no such command (lab/__main__.py: " + ", ".join(COMMANDS) + ")",
        "demo.md:4: scripts/wheel-house does not exist",
        f"demo.md:5: --rate is not an option of {sys.executable} -m clients.perf2: python -m clients.perf2 --rate 10",
        "demo.md:6: docker compose up server-threads: no such service in compose.yaml",
    ]
    assert service_problems("demo.md", page) == [
        "demo.md:6: docker compose up server-threads: no such service in compose.yaml",
        "demo.md:6: server-threads: no such service in compose.yaml"]
    assert variable_problems("demo.md", page) == [
        "demo.md:7: LAB_SERVER_CPU is in neither .env nor compose.yaml nor the lab's code"]


# ---- docs/development.md: the layout and the scripts, complete ------------------------------------

def layout_entries():
    """(line, folder or None, names) of each entry of the layout's text block: a line that begins
    with names, then two or more spaces and what they are; a line indented two spaces is in the
    folder of the last unindented one."""
    page = REPO / "docs" / "development.md"
    first, _, lines = next(block for block in fenced_blocks(page.read_text()) if block[1] == "text")
    entries, folder = [], None
    for number, line in enumerate(lines, first):
        indent = len(line) - len(line.lstrip())
        if not line.strip() or indent > 2:
            continue  # a description going on
        names = re.split(r"\s{2,}", line.strip())[0].split()
        if indent == 0:
            folder = names[0] if names[0].endswith("/") and len(names) == 1 else None
            entries.append((number, None, names))
        else:
            entries.append((number, folder, names))
    return entries


def test_the_layout_in_development_md_is_the_repositorys():
    entries = layout_entries()
    problems, top, within = [], set(), {}
    for number, folder, names in entries:
        for entry in names:
            path = REPO / (folder or "") / entry.rstrip("/")
            if not path.exists():
                problems.append(f"docs/development.md:{number}: {(folder or '') + entry} does not exist")
            (within.setdefault(folder, set()) if folder else top).add(entry)
    files = [path.relative_to(REPO) for path in tracked()]
    for folder in sorted({f"{path.parts[0]}/" for path in files if len(path.parts) > 1}):
        if folder not in top:
            problems.append(f"docs/development.md: the layout lacks the folder {folder}")
    for package in ("server/", "clients/", "lab/", "locustfiles/"):
        parts = {(path.parts[1] + "/" if len(path.parts) > 2 else path.parts[1]) for path in files
                 if path.parts[0] == package[:-1]} - {"__init__.py", "__main__.py"}
        for missing in sorted(parts - within.get(package, set())):
            problems.append(f"docs/development.md: the layout lacks {package}{missing}")
    assert not problems, "\n".join(problems)


def test_development_md_lists_every_script():
    page = (REPO / "docs" / "development.md").read_text()
    listed = set(re.findall(r"^\| `scripts/([\w-]+)` \|", page, flags=re.M))
    present = {path.name for path in (REPO / "scripts").iterdir() if path.is_file()}
    assert listed == present, (f"docs/development.md's table of scripts: missing {sorted(present - listed)}, "
                               f"not in scripts/ {sorted(listed - present)}")
