"""What every figure depends on, recorded with the run."""
import json
import os
import platform
import subprocess
from pathlib import Path

import docker

from lab import REPO
from lab.cpu import layout
from lab.cpu import wake_up
from lab.cpu.cpusets import format_cpuset
from lab.pythons import image as python_image
from lab.runner.containers import client_record


def describe(lab, settings, unbuilt=None):
    """unbuilt: {Python: why its image could not be built}, recorded in its place as its error."""
    info = lab.docker.info()
    image = lab.docker.images.get(lab.image)
    unbuilt = unbuilt or {}
    pythons = {python: {"image": python_image(python), "error": unbuilt[python]} if python in unbuilt else
               {**image_python(lab.docker, python_image(python)), "image": python_image(python),
                "image_id": lab.docker.images.get(python_image(python)).id}
               for python in settings.get("pythons") or []}
    return {
        "python": image_python(lab.docker, lab.image),
        **({"pythons": pythons} if pythons else {}),
        "image": {"name": lab.image, "id": image.id},
        "cpusets": {"server": settings["server_cpus"], "pool": settings["pool_cpus"],
                    "load": settings["load_cpus"]},
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "host_cpus": info.get("NCPU"),
        "kernel": platform.release(),
        "docker": {"server_version": lab.docker.version().get("Version"),
                   "operating_system": info.get("OperatingSystem")},
        "lab_commit": _git("rev-parse", "HEAD"),
        "lab_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "runner_python": platform.python_version(),
        "wake_up": wake_up_entry(lab, settings),
    }


def wake_up_entry(lab, settings):
    """Both ping-pong floors (lab.cpu.wake_up), measured at the run's start; if they cannot be, why, in their
    place: the run goes on without them."""
    try:
        return wake_up.summary(floors(lab, settings, wake_up.DURATION_S), wake_up.command(settings))
    except (RuntimeError, ValueError, OSError, docker.errors.DockerException) as e:
        return wake_up.failure(f"{type(e).__name__}: {e}", wake_up.command(settings))


def floors(lab, settings, duration_s):
    """clients.loopback_floor's record, run alone in a container of the lab image whose CPUs are the perf2
    layout's two (lab.cpu.layout.cpus): the client pins each end within them."""
    cpus = format_cpuset(set(layout.cpus(settings)))
    code, out, err = lab.run_on_cpus(cpus, wake_up.command(settings, duration_s), timeout=wake_up.TIMEOUT_S)
    return {**client_record("loopback_floor", code, out, err), "cpuset": cpus}


def image_python(client, image):
    """The Python that an image's servers and clients really run on, and its build."""
    output = client.containers.run(image, ["python", "-m", "server.build", "--json"], remove=True,
                                       network_disabled=True)
    return json.loads(output)


def cpu_model():
    """The CPU's model name (/proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
