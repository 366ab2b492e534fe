"""Beyond the article: one run's answers side by side per Python and build (--python), a row per Python.

The experiments say which answers (their ACROSS_PYTHONS columns): does perf1 still double on
threaded (C4), does its convoy drop survive (C6), what does one free-threaded thread cost next to the
GIL build, how do subinterpreters compare with processes.
"""
from lab import experiments
from lab.document import Table
from lab.record import RunView, python_build


def columns():
    return [column for module in experiments.modules().values() for column in getattr(module, "ACROSS_PYTHONS", [])]


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
