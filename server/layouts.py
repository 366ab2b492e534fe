"""The lab's CPU layout for a machine: which of its CPUs each of the three roles runs on, when no setting
names them (LAB_SERVER_CPUS, LAB_POOL_CPUS, LAB_LOAD_CPUS empty, the default).

  server  the single-process servers (MULTICORE = False in server/strategies): the first CPU
  pool    the servers that could use more CPUs (threaded, the pools, prefork): the first half of the
          CPUs and one more, but at least the first two (all there are, on one)
  load    Locust, the clients service, the runner's load container: the CPUs after the pool's, or the
          last CPU when none is left (on one or two)

  CPUs      1   2    3    4    8    16
  server    0   0    0    0    0    0
  pool      0   0-1  0-1  0-2  0-4  0-8
  load      0   1    2    3    5-7  9-15

(.env and docs/docker.md repeat this table for their readers: tests/test_layouts.py checks all three.)

"First" is the lowest CPU id: a container given CPUs 2-5 gets 2 / 2-4 / 5. Why this layout: the pool
has two CPUs whenever the machine has them, so C4 and C7 (two perf1 clients) and C8 and C9 (the pools)
can show what a second CPU does; from three pool CPUs on, the pool's workers keep off its first CPU,
where the server answers (server.placement), and still have two CPUs, so a long request never takes
the answering CPU; from three CPUs on, the load runs on CPUs no server uses, so it takes nothing from
the servers it measures; and the answer thread of a perf2
server is on the pool's first CPU (the server's CPU) while the client is on the load's first CPU, so
from two CPUs on every request crosses from one CPU to another the same way. On two CPUs the load shares
CPU 1 with the pools (light: perf1 clients mostly wait for their reply); on one CPU everything shares
CPU 0 and the lab still starts (the Lab view says which claims need two: lab/live/forms.py short_of_cpus).

Standard library only: server.affinity, the image's entrypoint, resolves a container's role with it.
"""
from server.cpusets import format_cpuset

ROLES = ("server", "pool", "load")
SETTINGS = {"server": "LAB_SERVER_CPUS", "pool": "LAB_POOL_CPUS", "load": "LAB_LOAD_CPUS"}  # .env's, by role
RULES = {  # the layout in words, for help texts
    "server": "the first",
    "pool": "the first half and one more, at least the first two",
    "load": "those after the pool's, or the last when none is left",
}


def layout(cpus):
    """{'server': '0', 'pool': '0-1', 'load': '1'} for a machine with these CPU ids (any iterable of ints).
    ValueError when there are none."""
    ids = sorted(set(cpus))
    if not ids:
        raise ValueError("no CPUs to lay the lab out on")
    pool = ids[:max(2, len(ids) // 2 + 1)]
    return {"server": format_cpuset(ids[:1]), "pool": format_cpuset(pool),
            "load": format_cpuset(ids[len(pool):] or ids[-1:])}


def resolve(given, cpus):
    """({role: CPU set text}, how it was chosen) for the roles' settings `given` ({role: text}; an empty or
    missing one is left to the layout of `cpus`, the machine's CPU ids). How: 'automatic for 2 CPUs', 'set',
    or 'load set, the rest automatic for 4 CPUs'."""
    given = {role: (given.get(role) or "").strip() for role in ROLES}
    unset = [role for role in ROLES if not given[role]]
    if not unset:
        return given, "set"
    cpus = sorted(set(cpus))
    chosen = layout(cpus)
    automatic = f"automatic for {len(cpus)} CPU{'s' if len(cpus) > 1 else ''}"
    named = [role for role in ROLES if given[role]]
    how = f"{' and '.join(named)} set, the rest {automatic}" if named else automatic
    return {role: given[role] or chosen[role] for role in ROLES}, how
