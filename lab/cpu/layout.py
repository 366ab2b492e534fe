"""perf2's layout: which CPU answers and which CPU asks, and the check that it held while a rate was measured.

On the development VM a bare ping-pong on one CPU runs 3 to 6 times as fast as across two (waking an
idle CPU costs that much: the wake-up cost, docs/runner.md), and a perf2 rate with it. So every perf2
comparison is measured in one layout, which the lab chooses (server.placement pins the threads): the
answering thread on the server's first CPU, the client on the load's first CPU. A phase of the
comparison in which the layout did not hold is measured again: an answering thread seen on a CPU other
than where it ran before, or a CPU of the server's that another job took, or left, in the middle.
"""
from lab.cpu.cpusets import parse_cpuset
from server import strategies

MIN_SHARE = 0.05  # a thread busy less than this in a phase says little about where it runs
FOREIGN_CHANGE = 0.3  # a share (another job's of a server CPU, the short requests' on a CPU) moved this much


def cpus(settings, strategy=None):
    """(answer CPU, client CPU) of perf2 on `strategy` (None: a pool server's) under the run's CPU settings:
    the first of the server's CPUs and the first of the load's. ValueError: a setting that is no CPU set."""
    multicore = strategy is None or strategies.load(strategies.key(strategy)).MULTICORE
    return (min(parse_cpuset(settings["pool_cpus" if multicore else "server_cpus"])),
            min(parse_cpuset(settings["load_cpus"])))


def of(settings, strategy):
    """{'answer_cpu', 'client_cpu', 'name', 'text'} of a perf2 cell on `strategy` under the run's CPU settings."""
    answer, client = cpus(settings, strategy)
    return {"answer_cpu": answer, "client_cpu": client, "name": name(answer, {client}),
            "text": text(answer, {client})}


def name(answer_cpu, client_cpus):
    return "same CPU" if {answer_cpu} == set(client_cpus) else "across CPUs"


def text(answer_cpu, client_cpus, client="the client asks"):
    """'across CPUs: the server answers on CPU 0, the client asks on CPU 1': a layout in words, as every
    rate the lab prints names it."""
    return f"{name(answer_cpu, client_cpus)}: the server answers on CPU {answer_cpu}, {client} on CPU {format_cpus(client_cpus)}"


class Phase:
    """What a clients.thread_cpus record saw between start and end (epoch s): each thread's CPU time per
    CPU, and each CPU's busy time; too few samples: seconds is 0 and nothing was seen."""

    def __init__(self, watch, start, end):
        samples = [s for s in watch["samples"] if start <= s[0] <= end]
        self.seconds = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0
        self.ticks = self.seconds * watch["ticks_per_s"]
        self.ran = {}  # tid -> {cpu: ticks}, a thread's time counted on the CPU it was seen on next
        self.busy = {}  # cpu -> ticks
        for (_, _, seen_a), (_, _, seen_b) in zip(samples, samples[1:]):
            for tid, (cpu, ticks) in seen_b.items():
                spent = ticks - seen_a.get(tid, [cpu, ticks])[1]
                if spent > 0:
                    per_cpu = self.ran.setdefault(tid, {})
                    per_cpu[cpu] = per_cpu.get(cpu, 0) + spent
        if self.seconds:
            self.busy = {int(cpu): samples[-1][1][cpu] - ticks for cpu, ticks in samples[0][1].items()}

    def cpus_of(self, tid):
        """The CPUs a thread ran on, if it was busy enough to tell (else an empty set)."""
        per_cpu = self.ran.get(tid, {})
        return set(per_cpu) if self.ticks and sum(per_cpu.values()) >= MIN_SHARE * self.ticks else set()

    def foreign_share(self, cpu):
        """The share of a CPU's time that none of the sampled threads took: another job's."""
        own = sum(per_cpu.get(cpu, 0) for per_cpu in self.ran.values())
        return max(0.0, self.busy.get(cpu, 0) - own) / self.ticks

    def short_work(self, watch, planned, load_cpus):
        """{where: share} of the pool workers' CPU time, the busiest thread (a long request) left out, by
        where it ran in the layout (beside()): a short request crosses to that CPU and back, so where it
        computes is part of the layout. {} when too little ran to tell."""
        long = self.busiest()
        by_place = {}
        for tid, ran in self.ran.items():
            if watch["threads"].get(tid, {}).get("role") == "worker" and (long is None or tid != long[0]):
                for cpu, ticks in ran.items():
                    place = beside(cpu, planned, load_cpus)
                    by_place[place] = by_place.get(place, 0) + ticks
        total = sum(by_place.values())
        if not self.ticks or total < MIN_SHARE * self.ticks:
            return {}
        return {place: ticks / total for place, ticks in by_place.items()}

    def busiest(self):
        """(tid, {cpu: ticks}) of the thread that took the most CPU time (None: nothing ran)."""
        return max(self.ran.items(), key=lambda item: sum(item[1].values()), default=None)


def changes(watch, phases, planned, load_cpus):
    """Why the layout did not hold over phases {name: (start, end)} (epoch s), from a clients.thread_cpus
    record: [] when it held. planned: the layout (of()); load_cpus: the load's CPUs (the client's time
    there is not another job's)."""
    seen = {name: Phase(watch, *window) for name, window in phases.items()}
    seen = {name: phase for name, phase in seen.items() if phase.seconds}
    reasons = []
    for tid, info in watch["threads"].items():
        if info.get("role") != "answer":
            continue
        where = {name: cpus for name, phase in seen.items() if (cpus := phase.cpus_of(tid))}
        if len(set().union(*where.values())) > 1:
            reasons.append(f"the answering thread {tid} ran on more than one CPU ("
                           + ", ".join(f"{name}: {format_cpus(cpus)}" for name, cpus in where.items()) + ")")
    work = {name: share for name, phase in seen.items() if (share := phase.short_work(watch, planned, load_cpus))}
    places = {place for share in work.values() for place in share}
    if any(changed({name: share.get(place, 0) for name, share in work.items()}) for place in places):
        reasons.append("the pool's short requests computed elsewhere: " + "; ".join(
            f"{name} " + ", ".join(f"{share:.0%} on {place}" for place, share in sorted(s.items()))
            for name, s in work.items()))
    for cpu in sorted(set(watch["cpus"]) - set(load_cpus)):
        foreign = {name: phase.foreign_share(cpu) for name, phase in seen.items()}
        if changed(foreign):
            reasons.append(f"another job's share of CPU {cpu} changed: "
                           + ", ".join(f"{name} {share:.0%}" for name, share in foreign.items()))
    return reasons


def changed(shares):
    """Whether a share ({phase: 0..1}) moved by FOREIGN_CHANGE or more between two of the phases."""
    return len(shares) > 1 and max(shares.values()) - min(shares.values()) >= FOREIGN_CHANGE


def beside(cpu, planned, load_cpus):
    """Where a CPU is in the layout: a pool worker there crosses CPUs to the answering thread, or not."""
    if cpu == planned["answer_cpu"]:
        return "the answering thread's CPU"
    return "the client's CPU" if cpu in load_cpus else "CPUs of their own"


def computed_on(watch, start, end):
    """The CPUs of the thread that took the most CPU time between start and end: where a long request
    computed (None: nothing was seen)."""
    busiest = Phase(watch, start, end).busiest()
    return sorted(busiest[1]) if busiest else None


def format_cpus(cpus):
    return ", ".join(map(str, sorted(cpus)))
