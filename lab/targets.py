"""The lab's own targets: the only servers the lab's load generators connect to.

A load generator that connects wherever it is told is a flood cannon for anyone who can reach its web
UI. So a target, written tcp://NAME:PORT as Locust's host is, is allowed only if it is one of:

- a compose service of the lab's servers, server-STRATEGY:25000 (server.strategies.PUBLISHED);
- a server of the runner's own, lab-run-RUN-server:25000 (lab.runner.containers names them so, and
  connects them to the compose lab's network when the room watches a run live);
- the servers' published ports on the host that an outside worker reaches them through
  (--lab-servers HOST: HOST:25001 to HOST:25008, as lab.live.forms.published_address counts them);
- loopback, any port: 127.0.0.0/8, ::1 and the name localhost. A server run by hand on this machine
  (docs/locust.md's --host tcp://127.0.0.1:25000); loading one's own machine harms no one else;
- a NAME:PORT given on purpose in LAB_EXTRA_TARGETS (.env) or --lab-extra-targets, comma-separated.

Anything else is refused with one line that says how to allow it. Names are compared as DNS compares
them (case and a trailing dot ignored) and never resolved: a name that merely resolves to loopback
(127.0.0.1.nip.io) is not loopback here, and no lookup leaves the machine to decide.

Nothing here imports Locust: locustfiles/_targets.py applies it at Locust's entries, and the TCP client
(locustfiles/_tcp.py) before every connection.
"""
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from lab.live.forms import PUBLISHED, published_address, service
from server.protocol import PORT

EXTRA_SETTING = "LAB_EXTRA_TARGETS"
EXTRA_FLAG = "--lab-extra-targets"
DEFAULT_PORT_PREFIX = "2500"
# lab.runner.containers: the run's name lab-run-RUN_ID, its server container that name and -server.
RUNNER_SERVER = re.compile(r"lab-run-[a-z0-9][a-z0-9_.-]*-server")


def parse_tcp_url(url):
    """'tcp://name:port' (or 'name:port') -> (name, port)."""
    text = (url or "").strip()
    parts = urlsplit(text if "://" in text else "tcp://" + text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None:
        raise ValueError(f"the host must be tcp://NAME:PORT, got {url!r}")
    return parts.hostname, port


def normal(name):
    """A host name as DNS compares it: 'Server-Threaded.' -> 'server-threaded'."""
    return name.lower().rstrip(".")


def parse_targets(text):
    """'NAME:PORT,NAME:PORT' (LAB_EXTRA_TARGETS) -> frozenset of (name, port); empty text: none."""
    found = set()
    for entry in filter(None, (part.strip() for part in (text or "").split(","))):
        try:
            name, port = parse_tcp_url(entry)
        except ValueError:
            raise ValueError(f"{EXTRA_SETTING} takes NAME:PORT entries, comma-separated, got {entry!r}") from None
        found.add((normal(name), port))
    return frozenset(found)


def is_loopback(name):
    if normal(name) == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Targets:
    """What one process may connect to: the lab's servers, loopback and `extra`; with `servers` (an outside
    worker's --lab-servers), also the servers' ports published on that host (`port_prefix`: its
    LAB_PORT_PREFIX)."""
    servers: str = ""
    port_prefix: str = DEFAULT_PORT_PREFIX
    extra: frozenset = frozenset()

    @classmethod
    def from_settings(cls, servers="", port_prefix="", extra=""):
        """From the options' text; a malformed extra raises ValueError with one line."""
        return cls(servers or "", port_prefix or DEFAULT_PORT_PREFIX, parse_targets(extra))

    def published(self):
        """{(compose service, PORT): (host, published port)} on `servers`; empty without it."""
        if not self.servers:
            return {}
        found = {}
        for strategy in PUBLISHED:
            host, _, port = published_address(strategy, self.servers, self.port_prefix).rpartition(":")
            found[(service(strategy), PORT)] = (normal(host), int(port))
        return found

    def allows(self, name, port):
        name = normal(name)
        return (is_loopback(name) or (name, port) in self.extra
                or (port == PORT and (name in map(service, PUBLISHED) or RUNNER_SERVER.fullmatch(name)))
                or (name, port) in self.published().values())

    def refusal(self, url):
        """None if this process may connect to `url` (tcp://NAME:PORT), else why not, in one line."""
        try:
            name, port = parse_tcp_url(url)
        except ValueError as error:
            return str(error)
        if self.allows(name, port):
            return None
        last = f"{self.port_prefix}{len(PUBLISHED)}"
        published = f", {self.servers}:{self.port_prefix}1-{last}" if self.servers else ""
        return (f"{url} is not one of the lab's servers (server-STRATEGY:{PORT}{published}, or loopback); "
                f"to load it on purpose, add {name}:{port} to {EXTRA_SETTING} in .env or {EXTRA_FLAG}")

    def reach(self, url):
        """Where this process finds `url`: a compose service through its published port when this is an
        outside worker (servers set), so that one Host serves the workers inside compose and outside it;
        any other url as it is."""
        try:
            name, port = parse_tcp_url(url)
        except ValueError:
            return url
        published = self.published().get((normal(name), port))
        return "tcp://%s:%d" % published if published else url
