"""The claims table: C1-C13, the article's figure, the lab's measurement and a verdict with its rule.

A verdict comes only from cells that ran: a missing or failed cell makes the claim 'not run'.
"""
from matrix.cpusets import parse_cpuset
from matrix.experiments import python_view

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"

CLAIMS = [
    ("C1", "The sequential server serves one client at a time.", "qualitative"),
    ("C2", "Thread-per-connection serves many clients at once (echo).", "qualitative"),
    ("C3", "fib(n) is answered correctly; large n takes very long.", "fib(40) up to a minute"),
    ("C4", "A 2nd perf1 client doubles each client's latency on the threaded server (GIL).", "0.6 s -> 1.3 s (x2.2)"),
    ("C5", "One long C-level call stalls every other thread, and Ctrl-C.", "the ticker goes silent"),
    ("C6", "perf2 on the threaded server drops > 99% while a long request runs.", "~22k -> ~100 req/s"),
    ("C7", "With a process pool, a 2nd perf1 client no longer doubles latency.", "qualitative"),
    ("C8", "A process pool costs short requests ~95% of their rate, but a long request no longer drops it.",
     "~22k -> ~1.3k req/s, steady"),
    ("C9", "A threshold pool keeps short requests fast while long ones run elsewhere.", "implied"),
    ("C10", "Prefork has no IPC cost but serves only N at once: N long requests lock everyone out.", "qualitative"),
    ("C11", "A thread's 8 MB stack is virtual: VSZ per thread far above RSS; stack_size() shrinks it.",
     "< 200 B/thread, 8 MB virtual"),
    ("C12", "Deep recursion is the real stack risk.", "~15,000 levels"),
    ("C13", "Coroutines hold many idle connections; threaded pays a thread each.", "qualitative"),
]


DOUBLED = 1.5  # a perf1 latency ratio nearer 2 (doubled) than 1 (unchanged)


class NotRun(Exception):
    pass


def verdicts(record):
    """The claims table; a run over several Pythons (--python) has one row per claim and Python,
    its id saying which ('C4 on 3.14t')."""
    pythons = record.get("settings", {}).get("pythons")
    if pythons:
        return [dict(row, id=f"{row['id']} on {python}")
                for python in pythons for row in verdicts_of(python_view(record, python))]
    return verdicts_of(record)


def verdicts_of(record):
    cells = record.get("cells", {})

    def m(cell_id):
        cell = cells.get(cell_id)
        if not cell or cell.get("status") != "ok":
            raise NotRun(f"{cell_id} {'failed' if cell else 'was not run'}")
        return cell["measurements"]

    rows = []
    for claim_id, claim, article in CLAIMS:
        try:
            measured, ok, rule = RULES[claim_id](m, record)
            verdict = REPRODUCED if ok else NOT_REPRODUCED
        except NotRun as e:
            measured, verdict, rule = str(e), NOT_RUN, RULE_TEXT.get(claim_id, "")
        rows.append({"id": claim_id, "claim": claim, "article": article, "measured": measured,
                     "verdict": verdict, "rule": rule})
    return rows


def pct(x):
    return f"{x * 100:.1f}%"


def rate(x):
    return "n/a" if x is None else f"{x:,.0f} req/s"


def c1(m, record):
    c = m("one_at_a_time/sequential")
    late = c["second_reply_after_first_close_s"]
    return (f"2nd client's reply came {late:+.2f} s after the 1st client closed (waited {c['second_wait_s']:.2f} s)",
            late >= -0.1, RULE_TEXT["C1"])


def c2(m, record):
    c = m("echo_clients/threaded")
    return f"{c['served']} of {c['clients']} echo clients served at once", c["served"] == c["clients"], RULE_TEXT["C2"]


def c3(m, record):
    seconds = m("fib/threaded")["seconds"]
    ns = sorted(seconds, key=int)
    lo, hi = ns[0], ns[-1]
    growth = seconds[hi] / max(seconds[lo], 1e-6)
    text = ", ".join(f"fib({n}) {seconds[n]:.3f} s" for n in ns)
    return f"all correct; {text}", growth >= 10, RULE_TEXT["C3"]


def perf1_ratio(m, strategy):
    c = m(f"perf1/{strategy}")
    return c["ratio"], (f"perf1 fib({c['n']}): {c['one_client_mean_s'] * 1000:.1f} ms with 1 client, "
                        f"{c['two_clients_mean_s'] * 1000:.1f} ms with 2 (x{c['ratio']:.2f})")


def c4(m, record):
    ratio, text = perf1_ratio(m, "threaded")
    return text, ratio >= DOUBLED, RULE_TEXT["C4"]


def c5(m, record):
    c = m("gil_stall")
    stalled = c["longest_gap_s"] >= 0.8 * c["call_s"] and c["control_longest_gap_s"] < 0.25 * c["call_s"]
    return (f"call {c['call_s']:.2f} s: longest tick gap {c['longest_gap_s']:.2f} s; control "
            f"{c['control_longest_gap_s'] * 1000:.0f} ms; SIGINT: {c['sigint']}", stalled, RULE_TEXT["C5"])


def convoy_text(c):
    change = "" if c["drop"] is None else f" ({-c['drop'] * 100:+.1f}%)"
    return f"{rate(c['rate_before_per_s'])} -> {rate(c['rate_during_per_s'])} during fib({c['long_n']}){change}"


def c6(m, record):
    (c,) = rates(m, "convoy/threaded")
    return convoy_text(c), c["drop"] is not None and c["drop"] >= 0.9, RULE_TEXT["C6"]


def c7(m, record):
    cpus = record.get("settings", {}).get("pool_cpus", "")
    if len(_cpus(cpus)) < 2:
        raise NotRun(f"the pool had CPUs {cpus!r}; C7 needs 2 or more (--pool-cpus)")
    ratio, text = perf1_ratio(m, "process-pool")
    return text + f" on CPUs {cpus}", ratio < DOUBLED, RULE_TEXT["C7"]


def rates(m, *cell_ids):
    """Convoy cells whose before-rate was measured (it is None when no whole bucket preceded the
    long request, e.g. a delay shorter than two buckets): such a cell gives no verdict."""
    cells = [m(cell_id) for cell_id in cell_ids]
    for cell_id, cell in zip(cell_ids, cells):
        if not cell["rate_before_per_s"]:
            raise NotRun(f"{cell_id} measured no perf2 rate before the long request")
    return cells


def c8(m, record):
    pool, threads = rates(m, "convoy/process-pool", "convoy/threaded")
    cost = 1 - pool["rate_before_per_s"] / threads["rate_before_per_s"]
    steady = pool["drop"] is not None and pool["drop"] <= 0.3
    return (f"{rate(pool['rate_before_per_s'])} vs threaded {rate(threads['rate_before_per_s'])} "
            f"({pct(cost)} lower); during the long request: {convoy_text(pool)}", cost >= 0.5 and steady,
            RULE_TEXT["C8"])


def c9(m, record):
    pool, threads = rates(m, "convoy/threshold-pool", "convoy/threaded")
    share = pool["rate_before_per_s"] / threads["rate_before_per_s"]
    steady = pool["drop"] is not None and pool["drop"] <= 0.3
    return (f"{pct(share)} of threaded's rate; {convoy_text(pool)}", share >= 0.5 and steady, RULE_TEXT["C9"])


def c10(m, record):
    c = m("prefork_lockout/prefork")
    (threads,) = rates(m, "convoy/threaded")
    floor = m("loopback_floor")["rate_per_s"]
    late = c["late_reply_after_first_free_s"]
    share = c["rate_per_s"] / threads["rate_before_per_s"]
    return (f"perf2 {rate(c['rate_per_s'])}, {pct(share)} of threaded's (loopback floor {rate(floor)}); with "
            f"{c['workers']} long requests running, a new client waited {c['late_wait_s']:.2f} s "
            f"(reply {late:+.2f} s after the first child was free)", late >= -0.1 and share >= 0.5, RULE_TEXT["C10"])


def c11(m, record):
    variants = m("thread_memory")["variants"]
    default = next(v for v in variants if v["stack_size_kib"] is None)
    small = next(v for v in variants if v["stack_size_kib"] is not None)
    virtual_far_above = default["vm_size_per_thread_kib"] >= 10 * max(default["vm_rss_per_thread_kib"], 1)
    shrinks = small["vm_size_per_thread_kib"] < default["vm_size_per_thread_kib"] / 2
    return (f"default stack: {default['vm_size_per_thread_kib']:,.0f} KiB virtual, "
            f"{default['vm_rss_per_thread_kib']:,.1f} KiB resident per thread; {small['stack_size_kib']} KiB stack: "
            f"{small['vm_size_per_thread_kib']:,.0f} KiB virtual", virtual_far_above and shrinks, RULE_TEXT["C11"])


def c12(m, record):
    c = m("recursion_depth")
    text = "; ".join(f"{p['kind']} recursion, {'default' if p['stack_size_kib'] is None else p['stack_size_kib']}"
                     f"{'' if p['stack_size_kib'] is None else ' KiB'} stack: {p['outcome']} at depth {p['depth']:,}"
                     for p in c["probes"])
    blown = any(p["stack_size_kib"] is None and p["outcome"] in ("crashed", "memory-error") and p["depth"] >= 1000
                for p in c["probes"])
    return text + f" (recursion limit {c['recursion_limit']:,})", blown, RULE_TEXT["C12"]


def c13(m, record):
    coroutines = [m("idle_connections/asyncio"), m("idle_connections/generators")]
    threaded = m("idle_connections/threaded")
    cheap = all(c["served"] == c["connections"] and c["threads_per_connection"] < 0.01 for c in coroutines)
    costly = threaded["threads_per_connection"] >= 0.9
    text = "; ".join(f"{name}: {c['served']:,}/{c['connections']:,} served, {c['threads_per_connection']:.2f} "
                     f"threads and {c['rss_kib_per_connection']:.1f} KiB per connection"
                     for name, c in zip(("asyncio", "generators", "threaded"), coroutines + [threaded]))
    return text, cheap and costly, RULE_TEXT["C13"]


def _cpus(text):
    try:
        return parse_cpuset(text)
    except ValueError:
        return set()


RULE_TEXT = {
    "C1": "reproduced if the 2nd client's reply comes no earlier than the 1st client's close (0.1 s slack)",
    "C2": "reproduced if every echo client is served while all are connected",
    "C3": "reproduced if every reply is fib(n) (checked by the client) and the largest n takes >= 10x the smallest",
    "C4": "reproduced if the 2-client / 1-client mean latency ratio on threaded is >= 1.5 (nearer 2 than 1)",
    "C5": "reproduced if the longest ticker gap is >= 80% of the call and < 25% of it in the control",
    "C6": "reproduced if threaded's perf2 rate drops >= 90% while the long request runs",
    "C7": "reproduced if the ratio on process-pool with >= 2 CPUs is < 1.5 (nearer 1 than 2)",
    "C8": "reproduced if process-pool's perf2 rate is >= 50% below threaded's and drops <= 30% during the long request",
    "C9": "reproduced if threshold-pool keeps >= 50% of threaded's rate and drops <= 30% during the long request",
    "C10": "reproduced if prefork's perf2 rate is >= 50% of threaded's (no IPC cost) and a new client's reply "
           "waits for a child to be free (0.1 s slack)",
    "C11": "reproduced if virtual memory per thread is >= 10x resident, and the small stack halves the virtual size",
    "C12": "reproduced if, with the default thread stack, deep recursion blows the stack (a crash or MemoryError) "
           "after >= 1,000 levels; a RecursionError first means Python's own limit protects the stack",
    "C13": "reproduced if asyncio and generators serve every connection with < 0.01 threads each and threaded adds >= 0.9",
}
RULES = {"C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9, "C10": c10,
         "C11": c11, "C12": c12, "C13": c13}
