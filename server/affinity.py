"""Run a command on the CPUs LAB_CPUS names, of those this container may use: the lab image's ENTRYPOINT.

    LAB_CPUS=0-1 python -S -m server.affinity python -m server --strategy process-pool ...
    LAB_CPU_ROLE=pool python -S -m server.affinity python -m server --strategy process-pool ...

compose.yaml gives each service LAB_CPUS (from LAB_SERVER_CPUS, LAB_POOL_CPUS or LAB_LOAD_CPUS in .env) and
its role, LAB_CPU_ROLE (server, pool or load), instead of a cgroup cpuset, which Docker refuses outright
when it names a CPU the engine lacks ("Requested CPUs are not available"), so that the lab also starts on a
Docker with one CPU. This pins the process to LAB_CPUS intersected with the CPUs it may use
(os.sched_getaffinity: the container's), or to all of those when none of the wanted ones exists, with one
line on stderr that says so (on a host that cannot pin, macOS or Windows, one line says that instead);
then it becomes the command (exec): its threads, its forked and spawned
children (pool workers, prefork's children) and whatever it execs inherit the pinning. LAB_CPUS_AVAILABLE,
exported to the command, is the container's CPUs before pinning (the Lab view tells from it which claims
this Docker has too few CPUs for, and which CPUs the layout gave each role).

LAB_CPUS unset or empty (the .env as shipped): the CPUs of LAB_CPU_ROLE's role in the lab's layout for the
CPUs the container may use (server/layouts.py), so that the lab fits the machine it finds with no
setting. Neither set: the command runs as it would without this (`docker run IMAGE ...`, the runner's
containers, which keep their cgroup cpuset). A LAB_CPUS that is not a CPU set, or a LAB_CPU_ROLE the
layout lacks: one line, exit status 2.
Standard library only, imported with -S (no site): a container starts a few milliseconds later, no more.
"""
import os
import sys

from server import layouts
from server.cpusets import CAN_PIN, NO_PINNING, format_cpuset, parse_cpuset, pinned, usable_cpus

WANTED = "LAB_CPUS"
ROLE = "LAB_CPU_ROLE"
AVAILABLE = "LAB_CPUS_AVAILABLE"
USAGE = f"usage: [LAB_CPUS=CPUS] [LAB_CPU_ROLE={'|'.join(layouts.ROLES)}] python -S -m server.affinity COMMAND [ARG...]"


def plural(cpus):
    return f"CPU{'s' if len(cpus) > 1 else ''} {format_cpuset(cpus)}"


def wanted_cpus(environ, available):
    """The CPU set text a command is to run on: LAB_CPUS, else LAB_CPU_ROLE's CPUs in the layout for the
    `available` ones; None without either. ValueError: a role the layout lacks."""
    text = environ.get(WANTED, "").strip()
    role = environ.get(ROLE, "").strip()
    if text or not role:
        return text or None
    if role not in layouts.ROLES:
        raise ValueError(f"{ROLE}={role}: not a role of the lab's CPU layout ({', '.join(layouts.ROLES)})")
    return layouts.layout(available)[role]


def pin(wanted_text, available):
    """The CPUs to run on, and a line for stderr when they are not all the wanted ones (else None).
    ValueError: wanted_text is not a CPU set."""
    wanted = parse_cpuset(wanted_text)
    cpus = pinned(wanted, available)
    if wanted <= available:
        return cpus, None
    return cpus, (f"{WANTED}={wanted_text}: this Docker gives the container {plural(available)} only; "
                  f"running on {format_cpuset(cpus)}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(USAGE, file=sys.stderr)
        return 2
    available = usable_cpus()
    os.environ[AVAILABLE] = format_cpuset(available)
    try:
        wanted_text = wanted_cpus(os.environ, available)
    except ValueError as e:
        print(f"server.affinity: {e}", file=sys.stderr)
        return 2
    if wanted_text and not CAN_PIN:  # a container is Linux: only a command run by hand gets here
        print(f"server.affinity: {NO_PINNING}: {WANTED}={wanted_text} ignored", file=sys.stderr, flush=True)
    elif wanted_text:
        try:
            cpus, line = pin(wanted_text, available)
            os.sched_setaffinity(0, cpus)
        except ValueError as e:
            print(f"server.affinity: {WANTED}: {e}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"server.affinity: cannot pin to CPUs {format_cpuset(cpus)}: {e.strerror}", file=sys.stderr)
            return 2
        if line:
            print(line, file=sys.stderr, flush=True)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        print(f"server.affinity: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
        return 127 if isinstance(e, FileNotFoundError) else 126


if __name__ == "__main__":
    sys.exit(main())
