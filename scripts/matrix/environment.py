"""What every figure depends on, recorded with the run."""
import os
import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Runs inside the lab image: the Python that the servers and clients really run on.
IMAGE_PYTHON = ("import json, sys, sysconfig; print(json.dumps({'version': sys.version.split()[0], "
                "'implementation': sys.implementation.name, "
                "'free_threaded': bool(sysconfig.get_config_var('Py_GIL_DISABLED')), "
                "'gil_enabled': getattr(sys, '_is_gil_enabled', lambda: True)(), "
                "'switch_interval_s': sys.getswitchinterval()}))")


def describe(lab, settings):
    info = lab.docker.info()
    image = lab.docker.images.get(lab.image)
    output = lab.docker.containers.run(lab.image, ["python", "-c", IMAGE_PYTHON], remove=True,
                                       network_disabled=True)
    return {
        "python": __import__("json").loads(output),
        "image": {"name": lab.image, "id": image.id},
        "cpusets": {"server": settings["server_cpus"], "pool": settings["pool_cpus"],
                    "load": settings["load_cpus"]},
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "host_cpus": info.get("NCPU"),
        "kernel": platform.release(),
        "docker": {"server_version": lab.docker.version().get("Version"),
                   "operating_system": info.get("OperatingSystem")},
        "lab_commit": _git("rev-parse", "HEAD"),
        "lab_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "runner_python": platform.python_version(),
    }


def _cpu_model():
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
