#!/usr/bin/env python3
"""Run the lab's experiment matrix on real containers and write results/<UTC-timestamp>-<id>/.

Usually called through `scripts/lab run`, which provides the pinned Python packages.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import docker
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from matrix import claims, environment, experiments, versions
from matrix.containers import Lab, LabError
from matrix.cpusets import parse_cpuset
from matrix.locust_load import HeadlessLocust, LiveLocust
from matrix.results import Run

REPO = Path(__file__).resolve().parent.parent
console = Console(stderr=True)


def dotenv(name):
    """A setting from the environment, else from the repo's .env (the one compose reads)."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        for line in (REPO / ".env").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == name and value.strip():
                return value.strip()
    except OSError:
        pass
    return None


def parse_args(argv):
    cpus = sorted(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(
        prog="scripts/lab run",
        description="Reproduce the article's claims (C1-C13) on real, CPU-pinned containers of the lab "
        "image, and write results/<UTC-timestamp>-<id>/results.json with the raw files beside it. "
        "Then: scripts/lab report RUN_DIR.",
        epilog="Ctrl-C keeps every finished cell and marks the run incomplete; --resume RUN_DIR finishes it.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller n and shorter runs: the whole matrix in about 90 s on 2 cores "
                        "(default: the full mode, the article's sizes where they fit, about 10 min)")
    parser.add_argument("--strategies", type=csv_list(experiments.strategies_known()),
                        help="only cells of these strategies, comma-separated (cells of no strategy still run)")
    parser.add_argument("--experiments", type=csv_list(experiments.EXPERIMENTS),
                        help="only these experiments, comma-separated: " + ", ".join(experiments.EXPERIMENTS))
    parser.add_argument("--server-cpus", default=dotenv("LAB_SERVER_CPUS") or "0",
                        help="CPUs of the single-process servers (default: LAB_SERVER_CPUS in .env, or %(default)s)")
    parser.add_argument("--pool-cpus", default=dotenv("LAB_POOL_CPUS") or f"{cpus[0]}-{cpus[-1]}",
                        help="CPUs of the strategies that could use more than one: threaded, the pools, "
                        "prefork, asyncio-pool, subinterpreters (whether they do is what C4, C6 and C7 show; "
                        "C7 needs 2 or more) (default: LAB_POOL_CPUS, or every CPU: %(default)s)")
    parser.add_argument("--load-cpus", default=dotenv("LAB_LOAD_CPUS") or (str(cpus[1]) if len(cpus) > 1 else "0"),
                        help="CPUs of the load container that runs the clients (default: LAB_LOAD_CPUS, or %(default)s)")
    parser.add_argument("--load", choices=["auto", "clients", "locust"], default="auto",
                        help="what drives the perf1 cells (C4, C7). auto (default) and locust: Locust's perf1 "
                        "scenario, through the running compose lab's master if it is up (the room watches in "
                        "its UI), else headless with distributed workers in the load container. clients: "
                        "clients.perf1. The other cells need sub-second timing and always use the clients.")
    parser.add_argument("--python", dest="pythons", type=csv_list(experiments.PYTHONS),
                        help="run the servers and the GIL and memory experiments on each of these Pythons, "
                        "comma-separated: " + ", ".join(experiments.PYTHONS) + " (t: free-threaded). Each "
                        "runs in its image concurrency-lab-server:VERSION, built first by "
                        "scripts/build-python-image if missing; the load stays on the lab image, so that "
                        "only the server's Python changes (default: the lab image's Python for all)")
    parser.add_argument("--image", default=os.environ.get("LAB_IMAGE", "concurrency-lab:latest"),
                        help="the lab image (default: %(default)s; build it with docker compose build)")
    parser.add_argument("--results", default=str(REPO / "results"), help="where run directories go (default: results/)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an incomplete run, with its own settings")
    args = parser.parse_args(argv)
    for option in ("server_cpus", "pool_cpus", "load_cpus"):
        try:
            parse_cpuset(getattr(args, option))
        except ValueError as e:
            parser.error(f"--{option.replace('_', '-')}: {e}")
    return args


def csv_list(known):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in known]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown) or repr(text)} (choose from {', '.join(known)})")
        return items
    return parse


def check_cpus(settings, host_cpus):
    for role in ("server", "pool", "load"):
        cpus = parse_cpuset(settings[f"{role}_cpus"])
        missing = sorted(c for c in cpus if c >= host_cpus)
        if missing:
            raise LabError(f"--{role}-cpus {settings[f'{role}_cpus']}: the Docker host has no CPU "
                           f"{', '.join(map(str, missing))} (it has 0-{host_cpus - 1})")


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: keep what is done
    try:
        if args.resume:
            run = Run.load(args.resume)
            settings = run.record["settings"]
        else:
            settings = {"mode": "quick" if args.quick else "full", "strategies": args.strategies,
                        "experiments": args.experiments, "server_cpus": args.server_cpus,
                        "pool_cpus": args.pool_cpus, "load_cpus": args.load_cpus, "image": args.image,
                        "load": args.load, "pythons": args.pythons}
            run = None
        cells = experiments.plan(settings["mode"], settings["strategies"], settings["experiments"],
                                 settings.get("pythons"))
        lab = Lab(settings["image"], settings["server_cpus"], settings["load_cpus"])
        check_cpus(settings, lab.docker.info()["NCPU"])
        build_python_images(settings.get("pythons"))
        if run is None:
            run = Run.create(args.results, settings, environment.describe(lab, settings))
    except (LabError, ValueError) as e:
        console.print(f"[red]run_matrix: {e}[/red]")
        return 2
    console.print(f"run {run.id}: {len(cells)} cells, {settings['mode']} mode, servers on CPUs "
                  f"{settings['server_cpus']}, pools on {settings['pool_cpus']}, load on {settings['load_cpus']}")
    interrupted = False
    try:
        with lab.open(run.id):
            run_cells(lab, run, settings, cells)
    except KeyboardInterrupt:
        interrupted = True
    except docker.errors.DockerException as e:  # the engine itself failed; cells done so far are kept
        console.print(f"[red]run_matrix: Docker failed: {e}[/red]")
    complete = all(run.done(cell.id) for cell in cells)
    run.finish("complete" if complete else "incomplete", claims.verdicts(run.record))
    print_claims(run)
    print_versions(run)
    # paths never wrap, so that they can be copied
    console.print(f"results: {run.dir / 'results.json'}", soft_wrap=True)
    if not complete:
        console.print(f"[yellow]incomplete: finish it with  scripts/lab run --resume {run.dir}[/yellow]", soft_wrap=True)
        return 130 if interrupted else 1
    console.print(f"report: scripts/lab report {run.dir}", soft_wrap=True)
    return 0


def build_python_images(pythons):
    """Each Python's server image, from today's code, by scripts/build-python-image (seconds when
    cached; the first free-threaded build compiles CPython, a few minutes)."""
    if not pythons:
        return
    console.print(f"building the server images of Python {', '.join(pythons)}")
    if subprocess.run([str(REPO / "scripts" / "build-python-image"), *pythons], stdout=sys.stderr).returncode != 0:
        raise LabError(f"scripts/build-python-image {' '.join(pythons)} failed (its messages are above)")


def choose_load(lab, settings):
    """The perf1 cells' load: a running lab's Locust master, headless Locust, or None (the clients)."""
    wanted = settings.get("load", "clients")
    live = LiveLocust.find(lab.docker) if wanted in ("auto", "locust") else None
    if live:
        console.print(f"load: the running lab's Locust master, {live.url} (watch the perf1 cells there)")
        return live
    if wanted in ("auto", "locust"):
        console.print("load: headless Locust, a master and workers in the load container (no running lab's "
                      "Locust master found)")
        return HeadlessLocust(lab)
    console.print("load: the clients (--load clients)")
    return None


def run_cells(lab, run, settings, cells):
    ctx = experiments.Context(lab, run, settings, choose_load(lab, settings))
    todo = [cell for cell in cells if not run.done(cell.id)]
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}/{task.fields[of]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    with Progress(*columns, console=console) as progress:
        # Progress is measured in estimated seconds, so the ETA weighs long cells properly.
        task = progress.add_task("", total=sum(c.estimate_s for c in todo), done=0, of=len(todo))
        for i, cell in enumerate(todo):
            progress.update(task, description=cell.id)
            started = time.time()
            try:
                measurements = experiments.EXPERIMENTS[cell.experiment](ctx, cell)
                result = {"status": "ok", "measurements": measurements, "error": None}
            except Exception as e:  # a failed cell is a result too; the run goes on
                result = {"status": "failed", "measurements": None, "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
            run.save_cell(cell.id, {"experiment": cell.experiment, "strategy": cell.strategy, "params": cell.params,
                                    "started_at": started, "ended_at": time.time(), **result})
            mark = "[green]ok[/green]" if result["status"] == "ok" else f"[red]failed: {result['error']}[/red]"
            progress.console.print(f"{cell.id}: {mark} ({time.time() - started:.1f} s)")
            progress.update(task, advance=cell.estimate_s, done=i + 1)


def print_versions(run):
    rows = versions.rows(run.record)
    if run.record["settings"].get("pythons"):
        table = Table(title="across Pythons and builds")
        for column in versions.HEADER:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)


def print_claims(run):
    table = Table(title=f"claims, run {run.id} ({run.record['status']})")
    for column in ("claim", "verdict", "measured"):
        table.add_column(column, overflow="fold")
    colour = {claims.REPRODUCED: "green", claims.NOT_REPRODUCED: "red", claims.NOT_RUN: "yellow"}
    for row in run.record["claims"]:
        table.add_row(row["id"], f"[{colour[row['verdict']]}]{row['verdict']}[/]", row["measured"])
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
