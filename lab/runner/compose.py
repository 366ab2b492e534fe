"""compose.yaml as the runner reads it: the one definition of the lab's container hardening and of
the load container's sysctls, so that the runner's containers are made like compose's.

`docker compose config --format json` resolves the file (anchors, .env, defaults) as `up` would.
"""
import json
import subprocess
from functools import cache

from lab import REPO

# The labels of the lab's containers: compose's own, and the role (server or load) compose.yaml gives each.
ROLE_LABEL = "org.concurrency-lab.role"
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"


class ComposeError(Exception):
    """compose.yaml cannot be read: one line, for the user."""


@cache
def definition():
    command = ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "compose.yaml"),
               "config", "--format", "json"]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ComposeError(f"cannot run docker compose config: {e}") from None
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["no message"]
        raise ComposeError(f"docker compose config failed (Compose v2 is needed: scripts/install-compose): {lines[-1]}")
    return json.loads(proc.stdout)


def hardening():
    """compose's x-hardening as docker SDK arguments of containers.run()."""
    spec = definition()["x-hardening"]
    return dict(user=spec["user"], read_only=spec["read_only"], init=spec["init"], cap_drop=spec["cap_drop"],
                security_opt=spec["security_opt"],
                tmpfs=dict(mount.split(":", 1) if ":" in mount else (mount, "") for mount in spec.get("tmpfs", [])))


def load_sysctls():
    """The sysctls of compose's load containers (Locust), for the runner's load container too."""
    return definition()["x-locust"].get("sysctls", {})


def server_services():
    """{strategy: service} of compose's server services, by the --strategy each one runs."""
    found = {}
    for name, service in definition()["services"].items():
        command = service.get("command") or []
        if "--strategy" in command:
            found[command[command.index("--strategy") + 1]] = name
    return found
