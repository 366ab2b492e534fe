"""lab run: reproduce the article's claims on real, CPU-pinned containers, and store the run.

It plans the cells (lab.experiments), measures each one, and after each saves its measurements and
the verdicts they give to results/<UTC-timestamp>-<id>/results.json, raw files beside it.
"""
import argparse
import os
import signal
import subprocess
import sys
import time
import traceback

import docker
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lab import REPO, experiments, pythons
from lab.cells import Cell, Context
from lab.cpu.cpusets import parse_cpuset
from lab.records import across_pythons
from lab.records import verdicts
from lab.records.document import Heading, Paragraph, Table, to_terminal
from lab.records.store import Run
from lab.runner import environment
from lab.runner.containers import Lab, LabError
from lab.runner.locust_load import HeadlessLocust, LiveLocust
from server import layouts, strategies

PROG = "lab run"
console = Console(stderr=True)


def dotenv_settings():
    """{name: value} of the repo's .env (the one compose reads); {} without one."""
    try:
        lines = (REPO / ".env").read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in lines if not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


def dotenv(name):
    """A setting from the environment, else from the repo's .env; None if neither sets it."""
    return os.environ.get(name) or dotenv_settings().get(name) or None


def parse_args(argv):
    multicore = ", ".join(name for name, module in strategies.ALL.items() if module.MULTICORE)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Reproduce the article's claims (C1-C13) on real, CPU-pinned containers of the lab "
        "image, and write results/<UTC-timestamp>-<id>/results.json with the raw files beside it; the "
        "record and its verdicts are saved after every cell. Then: scripts/lab report RUN_DIR.",
        epilog="Ctrl-C keeps every finished cell and marks the run incomplete; --resume RUN_DIR finishes it. "
        "'scripts/lab experiments' lists the experiments and what each measures.")
    parser.add_argument("--quick", action="store_true",
                        help="smaller n and shorter runs (default: the full mode, the article's sizes where they "
                        "fit); --plan estimates a run's seconds, docs/results.md lists measured runs with their dates")
    parser.add_argument("--plan", action="store_true",
                        help="print the cells this run would measure, with their estimated seconds, and exit "
                        "without running anything")
    parser.add_argument("--strategies", type=csv_list(list(strategies.ALL)),
                        help="only cells of these strategies, comma-separated (cells of no strategy still run): "
                        + ", ".join(strategies.ALL))
    parser.add_argument("--experiments", type=csv_list(list(experiments.modules())),
                        help="only these experiments, comma-separated: " + ", ".join(experiments.modules()))
    # None: chosen when the Docker host's CPUs are known (main, choose_cpus)
    parser.add_argument("--server-cpus", default=dotenv("LAB_SERVER_CPUS"),
                        help="CPUs of the single-process servers (default: " + cpus_default("server") + ")")
    parser.add_argument("--pool-cpus", default=dotenv("LAB_POOL_CPUS"),
                        help=f"CPUs of the strategies that could use more than one: {multicore} (whether they "
                        "do is what C4, C6 and C7 show; C7 needs 2 or more) (default: " + cpus_default("pool") + ")")
    parser.add_argument("--load-cpus", default=dotenv("LAB_LOAD_CPUS"),
                        help="CPUs of the load container that runs the clients (default: " + cpus_default("load") + ")")
    parser.add_argument("--load", choices=["auto", "clients", "locust"], default="auto",
                        help="what drives the perf1 cells (C4, C7). auto (default) and locust: Locust's perf1 "
                        "scenario, through the running compose lab's master if it is up (the room watches in "
                        "its UI), else headless with distributed workers in the load container. clients: "
                        "clients.perf1. The other cells need sub-second timing and always use the clients.")
    parser.add_argument("--python", dest="pythons", type=csv_list(pythons.versions()),
                        help="run the servers and the GIL and memory experiments on each of these Pythons, "
                        "comma-separated: " + ", ".join(pythons.versions()) + " (t: free-threaded; g: its twin, "
                        "the same source and flags with the GIL, added after each t that it does not "
                        "follow already, so that the table can split its cost). Each "
                        "runs in its image concurrency-lab-server:VERSION, built first by "
                        "scripts/build-python-image (a Python whose image cannot be built has its cells "
                        "recorded as failed, with the reason); the load stays on the lab image, so that "
                        "only the server's Python changes (default: the lab image's Python for all)")
    parser.add_argument("--image", default=os.environ.get("LAB_IMAGE", "concurrency-lab:latest"),
                        help="the lab image (default: %(default)s; build it with docker compose build)")
    parser.add_argument("--results", default=str(REPO / "results"), help="where run directories go (default: results/)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an incomplete run, with its own settings and plan")
    args = parser.parse_args(argv)
    for role in layouts.ROLES:
        try:
            if getattr(args, f"{role}_cpus") is not None:
                parse_cpuset(getattr(args, f"{role}_cpus"))
        except ValueError as e:
            parser.error(f"--{role}-cpus: {e}")
    return args


def cpus_default(role):
    return (f"{layouts.SETTINGS[role]} in .env or the environment, else chosen for the Docker host's CPUs: "
            f"{layouts.RULES[role]}; docs/docker.md#cpu-pinning")


def csv_list(known):
    def parse(text):
        items = [item.strip() for item in text.split(",") if item.strip()]
        unknown = [item for item in items if item not in known]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown) or repr(text)} (choose from {', '.join(known)})")
        return items
    return parse


def choose_cpus(settings, host_cpus):
    """Fill in the CPU sets no option or setting gave with the layout for a Docker host with CPUs
    0..host_cpus-1 (server/layouts.py), as compose's containers do; how they were chosen, in a few words."""
    chosen, how = layouts.resolve({role: settings[f"{role}_cpus"] for role in layouts.ROLES}, range(host_cpus))
    settings.update({f"{role}_cpus": cpus for role, cpus in chosen.items()})
    return how


def check_cpus(settings, host_cpus):
    for role in layouts.ROLES:
        cpus = parse_cpuset(settings[f"{role}_cpus"])
        missing = sorted(c for c in cpus if c >= host_cpus)
        if missing:
            raise LabError(f"--{role}-cpus {settings[f'{role}_cpus']}: the Docker host has no CPU "
                           f"{', '.join(map(str, missing))} (it has 0-{host_cpus - 1})")


def settings_of(args):
    return {"mode": "quick" if args.quick else "full", "strategies": args.strategies,
            "experiments": args.experiments, "server_cpus": args.server_cpus, "pool_cpus": args.pool_cpus,
            "load_cpus": args.load_cpus, "image": args.image, "load": args.load,
            "pythons": pythons.with_twins(args.pythons) if args.pythons else args.pythons}


def plan(settings, lab_python):
    """The run's cells; lab_python: the lab image's Python version ('3.13.5'), None if unknown."""
    versions = {None: pythons.version_tuple(lab_python) if lab_python else None}
    return experiments.plan(settings["mode"], settings["strategies"], settings["experiments"],
                            settings.get("pythons"), versions)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop like Ctrl-C: keep what is done
    try:
        run = Run.load(args.resume) if args.resume else None
        if args.plan:
            return print_plan(settings_of(args)) if run is None else print_plan(run.record["settings"],
                                                                                stored_plan(run), run.done)
        settings = run.record["settings"] if run else settings_of(args)
        lab = Lab(settings["image"], settings["server_cpus"], settings["load_cpus"])
        host_cpus = lab.docker.info()["NCPU"]
        layout = choose_cpus(settings, host_cpus)  # a resumed run's are its own: 'set'
        lab.server_cpus, lab.load_cpus = settings["server_cpus"], settings["load_cpus"]  # known only now
        check_cpus(settings, host_cpus)
        unbuilt = build_python_images(settings.get("pythons"))
        if run is None:
            env = environment.describe(lab, settings, unbuilt)
            run = Run.create(args.results, settings, env, plan(settings, env["python"]["version"]))
    except (LabError, ValueError) as e:
        console.print(f"{PROG}: {e}", markup=False, highlight=False, style="red")
        return 2
    cells = stored_plan(run)
    run.record["planned"] = [cell.fields() for cell in cells]  # a record from before plans were stored gets one
    console.print(f"run {run.id}: {len(cells)} cells, {settings['mode']} mode, servers on CPUs "
                  f"{settings['server_cpus']}, pools on {settings['pool_cpus']}, load on {settings['load_cpus']} "
                  f"({layout})")
    interrupted = False
    try:
        with lab.open(run.id):
            run_cells(Context(lab, run, settings, choose_load(lab, settings)), cells, unbuilt)
    except KeyboardInterrupt:
        interrupted = True
    except docker.errors.DockerException as e:  # the engine itself failed; cells done so far are kept
        console.print(f"{PROG}: Docker failed: {e}", markup=False, style="red")
    complete = all(run.done(cell.id) for cell in cells)
    run.finish("complete" if complete else "incomplete")
    summary = [Heading(f"claims, run {run.id} ({run.record['status']})"), Paragraph(verdicts.counts(run.record["claims"])),
               verdicts.table(run.record["claims"], brief=True)]
    if settings.get("pythons"):
        summary += [Heading("across Pythons and builds"), across_pythons.table(run)]
    to_terminal(summary, console)
    # paths never wrap, so that they can be copied
    console.print(f"results: {run.dir / 'results.json'}", soft_wrap=True)
    if not complete:
        console.print(f"[yellow]incomplete: finish it with  scripts/lab run --resume {run.dir}[/yellow]", soft_wrap=True)
        return 130 if interrupted else 1
    console.print(f"report: scripts/lab report {run.dir}", soft_wrap=True)
    return 0


def stored_plan(run):
    """The cells a run planned; for a record from before plans were stored, today's plan of its settings."""
    if run.record.get("planned") is None:
        return plan(run.record["settings"], run.record["environment"].get("python", {}).get("version"))
    return [Cell.from_record(fields) for fields in run.record["planned"]]


def print_plan(settings, cells=None, done=lambda cell_id: False):
    """The plan as a table; without a stored plan, today's for these settings and the lab image's Python."""
    note = None
    if cells is None:
        lab_python = image_python_version(settings["image"])
        if lab_python is None:
            note = (f"The lab image {settings['image']} could not be asked for its Python (no Docker Engine or no "
                    "image), so cells of strategies that not every Python can run are listed too.")
        cells = plan(settings, lab_python)
    rows = [[cell.id, f"{cell.estimate_s:g} s", "done" if done(cell.id) else ""] for cell in cells]
    blocks = [Heading(f"{len(cells)} cells, {settings['mode']} mode, about "
                      f"{sum(cell.estimate_s for cell in cells if not done(cell.id)):.0f} s of measuring to do"),
              Table(["cell", "estimate", ""], rows)]
    if note:
        blocks.append(Paragraph(note, warning=True))
    to_terminal(blocks, Console())
    return 0


def image_python_version(image):
    """The Python version of the lab image ('3.13.5'), or None if Docker cannot say."""
    try:
        return environment.image_python(docker.from_env(), image)["version"]
    except docker.errors.DockerException:
        return None


def build_python_images(versions):
    """Each Python's server image, from today's code, by scripts/build-python-image (seconds when
    cached; a compiled Python's first build takes a few minutes). {Python: why its image could not be
    built}: their cells fail with that reason, and the rest of the run goes on."""
    unbuilt = {}
    for python in versions or []:
        console.print(f"building the server image of Python {python}")
        proc = subprocess.run([str(REPO / "scripts" / "build-python-image"), python], stdout=sys.stderr,
                              stderr=subprocess.PIPE, text=True)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            unbuilt[python] = lines[-1].removeprefix("build-python-image: error: ")
            console.print(f"{PROG}: the image of Python {python} could not be built: {unbuilt[python]}; its cells "
                          "will be recorded as failed", markup=False, highlight=False, style="red")
    return unbuilt


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


def run_cells(ctx, cells, unbuilt=None):
    """Measure each cell not done yet; a cell of a Python whose image could not be built (unbuilt:
    {Python: why}) fails with that reason, unmeasured."""
    run, unbuilt = ctx.run, unbuilt or {}
    todo = [cell for cell in cells if not run.done(cell.id)]
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[done]}/{task.fields[of]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    modules = experiments.modules()
    with Progress(*columns, console=console) as progress:
        # Progress is measured in estimated seconds, so the ETA weighs long cells properly.
        task = progress.add_task("", total=sum(c.estimate_s for c in todo), done=0, of=len(todo))
        for i, cell in enumerate(todo):
            progress.update(task, description=cell.id)
            started = time.time()
            try:
                if cell.python in unbuilt:
                    raise LabError(f"the image of Python {cell.python} could not be built: {unbuilt[cell.python]}")
                measurements = modules[cell.experiment].measure(ctx, cell)
                result = {"status": "ok", "measurements": measurements, "error": None}
                result["figures"] = experiments.figures({**cell.fields(), **result})
            except Exception as e:  # a failed cell is a result too; the run goes on
                result = {"status": "failed", "measurements": None, "error": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
            run.save_cell(cell, {"started_at": started, "ended_at": time.time(), **result}, verdicts.judge)
            mark = "[green]ok[/green]" if result["status"] == "ok" else f"[red]failed: {escape(result['error'])}[/red]"
            progress.console.print(f"{cell.id}: {mark} ({time.time() - started:.1f} s)")
            progress.update(task, advance=cell.estimate_s, done=i + 1)


if __name__ == "__main__":
    sys.exit(main())
