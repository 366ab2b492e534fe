"""compose.yaml as its text says, without Docker: the cpuset variable, its default, the
strategy and the published port's suffix of every service. Just enough YAML for this file's own
layout (top-level anchors, two-space services, `<<:` merges); the docker tests check the same values
through `docker compose config`."""
import re

from conftest import REPO

CPUSET = re.compile(r'^\s+cpuset:\s*"\$\{(\w+):-([^}]*)\}"')
MERGE = re.compile(r"^\s+<<:\s*\[?([^\]#]*)\]?")
STRATEGY = re.compile(r"--strategy\s+([\w-]+)")
PORT_SUFFIX = re.compile(r"\$\{LAB_PORT_PREFIX:-\d+\}(\d+):25000")


def blocks():
    """{'*anchor' or service name: its lines}: the top-level anchors (x-server: &server) and the services."""
    found, name, in_services = {}, None, False
    for line in (REPO / "compose.yaml").read_text().splitlines():
        if re.match(r"\S", line):  # a top-level key
            anchor = re.match(r"[\w-]+:\s*&([\w-]+)", line)
            name, in_services = (f"*{anchor.group(1)}" if anchor else None), line.startswith("services:")
        elif in_services and re.fullmatch(r"  [\w-]+:\s*", line):
            name = line.strip()[:-1]
        elif name:
            found.setdefault(name, []).append(line)
    return found


def cpuset(lines, all_blocks):
    """(variable, default) of the cpuset a block has or merges in (YAML: the first merge wins)."""
    for line in lines:
        if match := CPUSET.match(line):
            return match.groups()
    for line in lines:
        if match := MERGE.match(line):
            for anchor in (a.strip() for a in match.group(1).split(",")):
                if anchor in all_blocks and (found := cpuset(all_blocks[anchor], all_blocks)):
                    return found
    return None


def services():
    """{service: {'cpuset': (variable, default), 'strategy': name or None, 'port_suffix': int or None}}."""
    all_blocks = blocks()
    found = {}
    for name, lines in all_blocks.items():
        if name.startswith("*"):
            continue
        text = "\n".join(lines)
        strategy, suffix = STRATEGY.search(text), PORT_SUFFIX.search(text)
        found[name] = {"cpuset": cpuset(lines, all_blocks), "strategy": strategy and strategy.group(1),
                       "port_suffix": suffix and int(suffix.group(1))}
    return found
