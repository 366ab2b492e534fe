"""compose.yaml as its text says, without Docker: the CPU setting (the variable of the LAB_CPUS its
entrypoint pins it to, and that variable's default), the strategy and the published port's suffix of
every service. Just enough YAML for this file's own layout (anchors on mappings, `<<:` merges, an
`environment:` that is an alias); the docker tests check the same values through `docker compose config`."""
import re

from conftest import REPO

KEY = re.compile(r"(\s*)([\w.<-]+):\s*(.*?)\s*(?:#.*)?$")
ALIAS = re.compile(r"\*([\w-]+)")
SETTING = re.compile(r'"\$\{(\w+):-([^}]*)\}"')
STRATEGY = re.compile(r"--strategy\s+([\w-]+)")
PORT_SUFFIX = re.compile(r"\$\{LAB_PORT_PREFIX:-\d+\}(\d+):25000")


def indent(line):
    return len(line) - len(line.lstrip())


def under(lines, i):
    """The lines under lines[i]: those after it, up to the next one indented no deeper."""
    end = next((j for j in range(i + 1, len(lines)) if indent(lines[j]) <= indent(lines[i])), len(lines))
    return lines[i + 1:end]


def mapping(lines):
    """{key: (the value on its line, the lines under it)} of the least-indented keys of some lines."""
    top = min(map(indent, lines), default=0)
    return {match.group(2): (match.group(3), under(lines, i)) for i, line in enumerate(lines)
            if (match := KEY.fullmatch(line)) and len(match.group(1)) == top}


def read():
    """({service: its keys}, {anchor: the keys of the mapping it names}) of compose.yaml."""
    lines = [line for line in (REPO / "compose.yaml").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    anchors = {match.group(3)[1:]: mapping(under(lines, i)) for i, line in enumerate(lines)
               if (match := KEY.fullmatch(line)) and match.group(3).startswith("&")}
    services = {name: mapping(lines_under) for name, (_, lines_under) in mapping(mapping(lines)["services"][1]).items()}
    return services, anchors


def value(keys, name, anchors):
    """A key of a mapping as YAML reads it: its own, else the first merge that has it. (value, lines under)."""
    if name in keys:
        return keys[name]
    for anchor in ALIAS.findall(keys.get("<<", ("", []))[0]):
        if anchor in anchors and (found := value(anchors[anchor], name, anchors)):
            return found
    return None


def cpu_setting(keys, anchors):
    """(variable, default) of the LAB_CPUS in a service's environment (the mapping's, or an alias's)."""
    environment = value(keys, "environment", anchors)
    if environment is None:
        return None
    text, lines = environment
    env = anchors[ALIAS.fullmatch(text).group(1)] if text.startswith("*") else mapping(lines)
    found = value(env, "LAB_CPUS", anchors)
    match = found and SETTING.fullmatch(found[0])
    return match.groups() if match else None


def services():
    """{service: {'cpus': (variable, default), 'strategy': name or None, 'port_suffix': int or None}}."""
    by_name, anchors = read()
    found = {}
    for name, keys in by_name.items():
        command, ports = (" ".join([own[0], *own[1]]) if (own := value(keys, key, anchors)) else ""
                          for key in ("command", "ports"))
        strategy, suffix = STRATEGY.search(command), PORT_SUFFIX.search(ports)
        found[name] = {"cpus": cpu_setting(keys, anchors), "strategy": strategy and strategy.group(1),
                       "port_suffix": suffix and int(suffix.group(1))}
    return found
