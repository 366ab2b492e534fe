"""The report's plots: each function takes a Run and returns a Plot (PNG bytes and the cells it lacked).

A missing or failed cell never stops a plot: it says "not run" where the cell's data would be.
"""
import io
import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402 (after the backend)

from matrix import claims  # noqa: E402
from matrix.run_view import cell_ids, cell_state, ok_measurements, read_raw, switch_interval_cells  # noqa: E402

BEFORE, DURING, FLOOR, LONG = "tab:blue", "tab:red", "tab:gray", "tab:orange"
WIDTH_IN = 9.0


@dataclass
class Plot:
    png: bytes
    not_run: list  # the cells the plot would show but which are missing or failed, as lacking() names them


def finish(fig, not_run):
    """The figure as a Plot; the figure is closed. No PNG metadata, so the same run gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return Plot(buffer.getvalue(), list(not_run))


def lacking(record, ids):
    """The cells of ids without data, each as 'cell' or 'cell (failed)'."""
    return [cell_id + (" (failed)" if cell_state(record, cell_id) == "failed" else "") for cell_id in ids
            if ok_measurements(record, cell_id) is None]


def absent(record, cell_id):
    """Why a cell has no data: 'not run', 'not run (failed: ...)', or 'n/a' for a figure an ok cell lacks."""
    state = cell_state(record, cell_id)
    if state == "ok":
        return "n/a"  # the cell ran but has no such figure, e.g. no whole bucket before the long request
    if state == "failed":
        return f"not run (failed: {record['cells'][cell_id].get('error') or 'no error recorded'})"
    return "not run"


def say(ax, text):
    """Write text where a plot (or a subplot) would be."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="dimgray", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def say_at(ax, x, text):
    """Write text at x (data) halfway up the axes, where a missing cell's bar or point would be."""
    ax.text(x, 0.5, text, transform=ax.get_xaxis_transform(), ha="center", va="center", color="dimgray",
            fontsize="small", wrap=True)


def short(cell_id):
    return cell_id.partition("/")[2] or cell_id


def perf1(run):
    """C4, C7: mean latency alone and with a second client at once, per strategy."""
    record = run.record
    ids = cell_ids(record, "perf1/")
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4))
    ax.set_title("perf1: mean latency with 1 client, then with 2 clients at once")
    found = [ok_measurements(record, cell_id) for cell_id in ids]
    if not any(found):
        say(ax, "perf1: not run")
        return finish(fig, lacking(record, ids))
    x = range(len(ids))
    one = [m["one_client_mean_s"] * 1000 if m else math.nan for m in found]
    two = [m["two_clients_mean_s"] * 1000 if m else math.nan for m in found]
    ax.bar([i - 0.2 for i in x], one, 0.4, color=BEFORE, label="1 client")
    ax.bar([i + 0.2 for i in x], two, 0.4, color=DURING, label="2 clients (mean of both)")
    for i, (cell_id, m) in enumerate(zip(ids, found)):
        if m:
            ax.annotate(f"×{m['ratio']:.2f}", (i, max(one[i], two[i])), textcoords="offset points",
                        xytext=(0, 4), ha="center")
        else:
            say_at(ax, i, absent(record, cell_id))
    ax.set_xticks(list(x), [short(cell_id) for cell_id in ids])
    ax.set_xlim(-0.6, len(ids) - 0.4)
    ax.set_ylabel("mean latency (ms)")
    ax.margins(y=0.15)
    ax.legend(loc="upper left", bbox_to_anchor=(1, 1))  # outside, clear of the bars and their ratios
    return finish(fig, lacking(record, ids))


def rate_over_time(run, ids, title):
    """perf2's rate in each bucket, one subplot per convoy cell, with the long request shaded."""
    record = run.record
    if not ids:
        fig, ax = plt.subplots(figsize=(WIDTH_IN, 2))
        say(ax, f"{title}: not run")
        return finish(fig, [])
    fig, axes = plt.subplots(len(ids), 1, figsize=(WIDTH_IN, 1.9 * len(ids) + 0.6), sharex=True, squeeze=False)
    fig.suptitle(title)
    for ax, cell_id in zip(axes[:, 0], ids):
        m = ok_measurements(record, cell_id)
        perf2 = read_raw(run, cell_id, "perf2.json") if m else None
        if m is None or not perf2 or not perf2.get("buckets"):
            ax.set_title(cell_id, fontsize="medium", loc="left")
            say(ax, absent(record, cell_id) if m is None else "no raw perf2.json for this cell")
            continue
        start = perf2.get("started_at") or perf2["buckets"][0][0]
        edges, rates = bucket_rates(perf2, start)
        ax.stairs(rates, edges, color=BEFORE, fill=True, alpha=0.6, label="perf2 rate")
        ax.axvspan(m["long_started_at"] - start, m["long_ended_at"] - start, color=LONG, alpha=0.35,
                   label=f"fib({m['long_n']}) running")
        if m["rate_before_per_s"] is not None:
            ax.axhline(m["rate_before_per_s"], color=BEFORE, linestyle="--", linewidth=1, label="mean before")
        ax.set_title(f"{cell_id}: {claims.convoy_text(m)}", fontsize="medium", loc="left")
        ax.set_ylabel("req/s")
        ax.set_ylim(bottom=0)
    axes[-1, 0].set_xlabel(f"seconds since perf2 started (buckets of {bucket_width(run, ids):g} s)")
    handles = next((ax.get_legend_handles_labels() for ax in axes[:, 0] if ax.get_legend_handles_labels()[0]),
                   None)
    if handles:
        axes[0, 0].legend(*handles, loc="upper right", fontsize="small")
    return finish(fig, lacking(record, ids))


def bucket_rates(perf2, start):
    """(edges, rates) of perf2's buckets, time relative to start. The last bucket may be cut short by
    the end of the run, so its rate is over the part that ran."""
    width = perf2["interval_s"]
    ended = perf2.get("ended_at")
    edges, rates = [], []
    for bucket_start, count in perf2["buckets"]:
        ran = min(width, ended - bucket_start) if ended and ended > bucket_start else width
        edges.append(bucket_start - start)
        rates.append(count / ran)
    edges.append(edges[-1] + width)
    return edges, rates


def bucket_width(run, ids):
    for cell_id in ids:
        width = (run.record["cells"].get(cell_id) or {}).get("params", {}).get("interval_s")
        if width:
            return width
    return math.nan


def rate_vs_floor(run):
    """C8, C10: each strategy's perf2 rate (before any long request) next to the bare-socket floor."""
    record = run.record
    rows = [("loopback floor (bare sockets)", "loopback_floor", "rate_per_s", FLOOR)]
    rows += [(short(cell_id), cell_id, "rate_before_per_s", BEFORE) for cell_id in cell_ids(record, "convoy/")]
    rows += [(f"{short(cell_id)} (lockout cell)", cell_id, "rate_per_s", BEFORE)
             for cell_id in cell_ids(record, "prefork_lockout/")]
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 0.45 * len(rows) + 1.4))
    ax.set_title("perf2 rate per strategy, next to the loopback floor")
    rates = [(ok_measurements(record, cell_id) or {}).get(key) for _, cell_id, key, _ in rows]
    if not any(rates):
        say(ax, "perf2 and the loopback floor: not run")
        return finish(fig, lacking(record, [cell_id for _, cell_id, _, _ in rows]))
    y = range(len(rows))
    ax.barh(list(y), [r if r is not None else math.nan for r in rates], color=[c for *_, c in rows])
    floor = rates[0]
    if floor:
        ax.axvline(floor, color=FLOOR, linestyle="--", linewidth=1)
    for i, ((_, cell_id, _, _), r) in enumerate(zip(rows, rates)):
        if r is None:
            ax.text(0, i, " " + absent(record, cell_id), va="center", color="dimgray")
        else:
            share = f" ({r / floor:.0%} of the floor)" if floor and i else ""
            ax.text(r, i, f" {claims.rate(r)}{share}", va="center", fontsize="small")
    ax.set_yticks(list(y), [label for label, *_ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("requests per second")
    ax.margins(x=0.35)
    return finish(fig, lacking(record, [cell_id for _, cell_id, _, _ in rows]))


def switch_sweep(run):
    """perf2's rate before and during the long request against sys.setswitchinterval()."""
    record = run.record
    sweep = switch_interval_cells(record)
    fig, ax = plt.subplots(figsize=(WIDTH_IN, 4))
    ax.set_title("threaded convoy against the switch interval")
    points = {si: ok_measurements(record, cell_id) for si, cell_id in sweep.items()}
    if not any(points.values()):
        say(ax, "switch-interval sweep: not run")
        return finish(fig, lacking(record, sweep.values()))
    for key, label, colour in (("rate_before_per_s", "before the long request", BEFORE),
                               ("rate_during_per_s", "while it runs", DURING)):
        xs = [si for si, m in points.items() if m and m[key] is not None]
        ax.plot(xs, [points[si][key] for si in xs], marker="o", color=colour, label=label)
    for si, m in points.items():
        if m is None:
            say_at(ax, si, absent(record, sweep[si]))
        elif m["drop"] is not None and m["rate_during_per_s"] is not None:
            ax.annotate(f"−{m['drop']:.1%}" if m["drop"] >= 0 else f"+{-m['drop']:.1%}",
                        (si, m["rate_during_per_s"]), textcoords="offset points", xytext=(0, -14),
                        ha="center", fontsize="small", color=DURING)
    ax.set_xscale("log")
    ax.set_xlim(min(sweep) / 2, max(sweep) * 2)  # every interval in view, run or not
    ax.set_yscale("symlog", linthresh=10)  # a log scale that still shows a rate of 0
    highest = max(m[key] or 0 for m in points.values() if m for key in ("rate_before_per_s", "rate_during_per_s"))
    ax.set_ylim(0, 3 * highest + 10)  # room above the top point on a log scale
    default = record["environment"].get("python", {}).get("switch_interval_s")
    ax.set_xticks(list(sweep), [f"{si:g}" + (" (default)" if si == default else "") for si in sweep])
    ax.minorticks_off()
    ax.set_xlabel("switch interval (s), log scale")
    ax.set_ylabel("perf2 req/s (log scale)")
    ax.legend()
    return finish(fig, lacking(record, sweep.values()))


def docker_stats(run):
    """Each server cell's container: mean CPU over the cell and peak memory, from docker stats."""
    record = run.record
    stats = {}
    for cell_id in cell_ids(record, ""):
        samples = (read_raw(run, cell_id, "docker_stats.json") or {}).get("samples") or []
        if samples:
            stats[cell_id] = samples
    fig, (cpu_ax, memory_ax) = plt.subplots(1, 2, figsize=(WIDTH_IN, 0.32 * len(stats) + 1.4), sharey=True)
    fig.suptitle("server containers (docker stats)")
    if not stats:
        say(cpu_ax, "no docker stats")
        say(memory_ax, "no docker stats")
        return finish(fig, [])
    y = list(range(len(stats)))
    cpu = [cpu_percent(samples) for samples in stats.values()]
    cpu_ax.barh(y, [c if c is not None else math.nan for c in cpu], color=BEFORE)
    for i, c in enumerate(cpu):
        cpu_ax.text(c or 0, i, f" {c:.0f}%" if c is not None else " one sample only", va="center",
                    fontsize="small")
    cpu_ax.set_xlabel("CPU %, mean over the cell (100 = one CPU)")
    memory = [max(s["memory_bytes"] for s in samples) / 2**20 for samples in stats.values()]
    memory_ax.barh(y, memory, color=FLOOR)
    for i, mib in enumerate(memory):
        memory_ax.text(mib, i, f" {mib:.0f}", va="center", fontsize="small")
    memory_ax.set_xlabel("peak memory (MiB)")
    cpu_ax.set_yticks(y, list(stats))
    cpu_ax.invert_yaxis()
    for ax in (cpu_ax, memory_ax):
        ax.margins(x=0.2)
    return finish(fig, [])


def cpu_percent(samples):
    """Mean CPU use between the first and the last sample, in % of one CPU; None with one sample."""
    first, last = samples[0], samples[-1]
    if last["t"] <= first["t"]:
        return None
    return (last["cpu_total_ns"] - first["cpu_total_ns"]) / 1e9 / (last["t"] - first["t"]) * 100
