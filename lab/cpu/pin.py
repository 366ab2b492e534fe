"""lab pin: show and change the CPU pinning of the lab's containers (docker SDK).

  scripts/lab pin                        list every lab container: the CPUs it is configured for
                                         and the CPUs its processes may and do run on
  scripts/lab pin server-threaded 0-1    re-pin a running container (service or container name)
  scripts/lab pin --help

A container is configured for its LAB_CPUS (compose sets it from .env; the image's
entrypoint, server/affinity.py, pins the container's command to it), of the CPUs the
container may use; without LAB_CPUS, for all of these (its cgroup cpuset: the runner's).
A re-pin is live (docker update --cpuset-cpus: the CPUs the container may use, of which
its processes keep their LAB_CPUS) and lasts until the container is recreated; to make
it stick, set LAB_SERVER_CPUS / LAB_POOL_CPUS / LAB_LOAD_CPUS in .env and run
`docker compose up -d`. Pool and prefork servers size themselves from their
CPUs at start, so restart such a server to resize it after a re-pin.
"""

import argparse
import json
import sys

import docker

from lab.cpu.cpusets import format_cpuset, parse_cpuset, pinned
from lab.runner.compose import PROJECT_LABEL, ROLE_LABEL, SERVICE_LABEL
from server.affinity import wanted_cpus


# Runs inside a container (the lab image has python): every process but itself, with its parent, UIDs,
# GIDs, effective capabilities, the CPUs its threads may use (all of them: server.placement pins a
# server's threads to one CPU each) and the CPUs its threads last ran on (field 39 of
# /proc/PID/task/TID/stat); and the CPUs the probe itself may use: an exec skips the image's entrypoint,
# so those are the container's (its cgroup's).
PROBE = r"""
import json, os
me = os.getpid()
out = []
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit()):
    if pid == me:
        continue
    try:
        with open('/proc/%d/status' % pid) as f:
            st = dict(l.rstrip('\n').split(':\t', 1) for l in f if ':\t' in l)
        ran, allowed = set(), set()
        for tid in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/stat' % (pid, tid)) as f:
                ran.add(int(f.read().rsplit(')', 1)[1].split()[36]))
            allowed |= os.sched_getaffinity(int(tid))
    except (OSError, IndexError, ValueError):
        continue
    out.append({'pid': pid, 'ppid': int(st.get('PPid', 0)), 'name': st.get('Name', '?'),
                'uid': st.get('Uid', '').split(), 'gid': st.get('Gid', '').split(), 'cap_eff': st.get('CapEff', '?'),
                'allowed': sorted(allowed), 'ran_on': sorted(ran)})
print(json.dumps({'procs': out, 'affinity': sorted(os.sched_getaffinity(0))}))
"""


class PinError(Exception):
    """A clear, user-facing error."""


def parse_cpus(text):
    """'0-1,3' -> {0, 1, 3}; raises PinError on anything else."""
    try:
        return parse_cpuset(text)
    except ValueError as e:
        raise PinError(str(e)) from None


def connect():
    try:
        client = docker.from_env(version="auto", timeout=30)
        client.ping()
        return client
    except Exception as e:  # docker.errors.DockerException and socket errors
        raise PinError(f"cannot reach the Docker Engine: {e}") from None


def host_cpus(client):
    n = int(client.info().get("NCPU") or 0)
    if n < 1:
        raise PinError("the Docker Engine did not say how many CPUs it has")
    return set(range(n))


def lab_containers(client, project=None, all_states=False):
    filters = {"label": [ROLE_LABEL] + ([f"{PROJECT_LABEL}={project}"] if project else [])}
    found = client.containers.list(all=all_states, filters=filters)
    return sorted(found, key=lambda c: (c.labels.get(PROJECT_LABEL, ""), c.name))


def own(procs):
    """The processes of the container's own command: not PID 1 (docker-init, with compose's init: true)
    nor a `docker exec`'s (a health check, this probe), which have no parent in the container's PID
    namespace (PPid 0) and are not pinned by its entrypoint."""
    return [p for p in procs if p["ppid"] != 0]


def configured(container, available):
    """The CPUs a container's command is pinned to: its LAB_CPUS of the `available` ones (server.affinity's
    rule), or all of them without LAB_CPUS."""
    env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
    try:
        wanted = wanted_cpus(env, available)
    except ValueError as e:
        raise PinError(str(e)) from None
    return pinned(parse_cpus(wanted), available) if wanted else set(available)


def probe(container):
    """Processes of a running container with their allowed and last-used CPUs, and the CPUs it may use."""
    try:
        res = container.exec_run(["python3", "-c", PROBE], user="10001:10001", demux=False)
    except Exception as e:
        return None, f"exec failed: {e}"
    if res.exit_code != 0:
        return None, (res.output or b"").decode(errors="replace").strip()[-200:]
    try:
        return json.loads(res.output.decode().strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, "unreadable probe output"


def show(client, project):
    ncpu = len(host_cpus(client))
    containers = lab_containers(client, project)
    if not containers:
        where = f" in compose project {project!r}" if project else ""
        print(f"no running lab containers{where} (start them with `docker compose up -d`)")
        return 0
    rows = [("CONTAINER", "SERVICE", "CONFIGURED", "ALLOWED", "RAN ON", "PROCS", "OK")]
    all_ok = True
    for c in containers:
        c.reload()
        found, err = probe(c)
        if found is None:
            rows.append((c.name, c.labels.get(SERVICE_LABEL, "?"), "?", "?", "?", "?", f"? ({err})"))
            all_ok = False
            continue
        wanted = configured(c, set(found["affinity"]))
        allowed, ran, procs = set(), set(), own(found["procs"])
        for p in procs:
            allowed |= set(p["allowed"])
            ran |= set(p["ran_on"])
        ok = bool(procs) and allowed <= wanted and ran <= wanted  # a server places its threads within them
        all_ok &= ok
        rows.append((c.name, c.labels.get(SERVICE_LABEL, "?"), format_cpuset(wanted), format_cpuset(allowed),
                     format_cpuset(ran), str(len(procs)), "yes" if ok else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    print(f"\nDocker host CPUs: {format_cpuset(range(ncpu))}. CONFIGURED = the container's LAB_CPUS, of the CPUs "
          "it may use; ALLOWED = its processes' threads' affinity (not docker-init's or an exec's), within CONFIGURED: "
          "a server places its threads on some of its CPUs (python -m server --placement); RAN ON = the CPUs they "
          "last ran on.")
    return 0 if all_ok else 3


def repin(client, target, cpus_text, project):
    wanted = parse_cpus(cpus_text)
    have = host_cpus(client)
    missing = sorted(wanted - have)
    if missing:
        raise PinError(
            f"refusing to pin to CPU {format_cpuset(missing)}: the Docker host has {len(have)} CPU"
            f"{'s' if len(have) != 1 else ''} ({format_cpuset(have)})")
    containers = lab_containers(client, project)
    chosen = [c for c in containers if c.name == target] or \
             [c for c in containers if c.labels.get(SERVICE_LABEL) == target]
    if not chosen:
        names = sorted({c.labels.get(SERVICE_LABEL, c.name) for c in containers})
        hint = ("running lab services: " + ", ".join(names)) if names else \
            "no lab container is running (docker compose up -d)"
        raise PinError(f"no running lab container or service named {target!r}; {hint}")
    if len({c.labels.get(PROJECT_LABEL) for c in chosen}) > 1:
        raise PinError(f"{target!r} runs in several compose projects; choose one with --project")
    cpuset = format_cpuset(wanted)
    for c in chosen:
        try:
            c.update(cpuset_cpus=cpuset)
        except Exception as e:
            raise PinError(f"docker refused to re-pin {c.name}: {e}") from None
        print(f"{c.name}: cpuset {cpuset}")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="lab pin",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__.split("\n\n", 1)[0],
        epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("container", nargs="?", help="service (e.g. server-threaded) or container name to re-pin")
    ap.add_argument("cpus", nargs="?", help="CPU list in cpuset syntax: 0, 1, 0-1, 0,2")
    ap.add_argument("--project", "-p", help="only this compose project (default: every project)")
    args = ap.parse_args(argv)
    try:
        if args.container and not args.cpus:
            ap.error("give both a container and a CPU list, e.g. scripts/lab pin server-threaded 0-1")
        if args.cpus is not None:
            parse_cpus(args.cpus)  # bad syntax fails before touching Docker
        client = connect()
        if args.container:
            return repin(client, args.container, args.cpus, args.project)
        return show(client, args.project)
    except PinError as e:
        print(f"pin: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
