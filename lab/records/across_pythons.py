"""Beyond the article: one run's answers side by side per Python and build (--python), a row per Python.

The experiments say which answers (their ACROSS_PYTHONS columns): does perf1 still double on
threaded (C4), does its convoy drop survive (C6), what does one free-threaded thread cost next to the
GIL build, how do subinterpreters compare with processes. One more column splits that cost where a run
has a free-threaded build's twin (images/pythons.tsv): free-threading alone, and the build alone.
"""
from lab import experiments, pythons
from lab.records.document import Table
from lab.records.record import RunView, python_build


def one_thread_s(view):
    """The mean latency of one request computed on one thread of the view's Python, as the experiment that
    declares one_thread_s measured it, or None."""
    source = experiments.provider("one_thread_s")
    return source.one_thread_s(view) if source else None


def builds_apart(view, python, views):
    """For X.Yt: its 1-thread latency over its twin X.Yg's (the same source and flags, the GIL: what
    free-threading costs); for X.Yg: its own over X.Y's (what the build lacks next to the distribution's)."""
    against, what = ((pythons.twin(python), "free-threading") if python.endswith(pythons.FREE_THREADED) else
                     (pythons.distribution(python), "this build") if python.endswith(pythons.TWIN) else (None, ""))
    if against is None or len(views) < 2:
        return "–"
    if against not in views:
        return f"(run {against} too)"
    this, other = one_thread_s(view), one_thread_s(views[against])
    return f"x{this / other:.2f} of {against}'s: {what}" if this and other else "not run"


COLUMNS = [("1 thread, builds apart: X.Yt / X.Yg (free-threading), X.Yg / X.Y (the build)", builds_apart)]


def columns():
    return [column for module in experiments.modules().values()
            for column in getattr(module, "ACROSS_PYTHONS", [])] + COLUMNS


def header():
    return ["Python", "build", *(title for title, _ in columns())]


def rows(run):
    """[[cell text per header() column]] for each Python of the run, or for the lab image's."""
    views = RunView(run).parts()
    return [[python, python_build(view.environment.get("python")), *(column(view, python, views)
                                                                    for _, column in columns())]
            for python, view in views.items()]


def table(run):
    return Table(header(), rows(run))


def side_by_side(labelled_runs):
    """The table of several runs, [(label, run)], with a first column that names each ('A', 'B')."""
    labelled = [[label, *row] for label, run in labelled_runs for row in rows(run)]
    return Table(["run", *header()], labelled, [[None] * len(row) for row in labelled])
