"""What an experiment measures and where: its cells, and the context its measurements run in.

An experiment module (lab/experiments/) says what to measure with Cell, and is given a Context to start
servers and run clients in the run's containers. Its claims are judged by lab.claims.
"""
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from server import strategies


@dataclass
class Cell:
    """One measurement of a run: an experiment, on a strategy (and a variant), on a Python.

    Its id is made of these fields for the record's keys and the reader's eye; code asks for the
    fields, never parses the id: '3.13t/perf1/threaded', 'switch_interval/0.001', 'gil_stall'.
    """
    experiment: str = None  # set by the plan: the name of the module that measures it
    strategy: str = None  # the server's strategy (given as its module or its name), if the cell has a server
    variant: str = None  # what else tells an experiment's cells apart (a switch interval): the id shows it
    python: str = None  # the server's Python (--python); None: the lab image's
    params: dict = field(default_factory=dict)
    estimate_s: float = 5.0

    def __post_init__(self):
        self.strategy = strategies.key(self.strategy)

    @property
    def label(self):
        """The id within one Python's part of a run: 'perf1/threaded'."""
        return "/".join(filter(None, (self.experiment, self.variant or self.strategy)))

    @property
    def id(self):
        return "/".join(filter(None, (self.python, self.label)))

    def fields(self):
        return asdict(self)

    @classmethod
    def from_record(cls, record):
        """A cell from its stored fields (a stored cell holds its results beside them)."""
        return cls(**{name: record.get(name) for name in cls.__dataclass_fields__ if name in record})


def experiment_name(experiment):
    """An experiment's name, given its module, its module's __name__ or its name: 'convoy'."""
    return getattr(experiment, "__name__", experiment).rpartition(".")[2]


def target(server):
    """A client's arguments that aim it at the server."""
    return ["--host", server.host, "--port", server.port]


class Context:
    """What a measurement needs: the run's containers, its raw files, its CPU settings and its load."""

    def __init__(self, lab, run, settings, locust=None):
        self.lab, self.run, self.settings = lab, run, settings
        self.locust = locust  # None: the perf1 cells use clients.perf1

    @contextmanager
    def server(self, cell, *args):
        """The cell's strategy in its pinned container; its docker stats are saved with the cell.
        A strategy that could use several CPUs gets the pool's: whether it does is what is measured."""
        multicore = strategies.load(cell.strategy).MULTICORE
        cpus = self.settings["pool_cpus"] if multicore else self.settings["server_cpus"]
        with self.lab.server(cell.strategy, *args, cpus=cpus, python=cell.python) as server:
            yield server
        self.run.save_raw(cell.id, "docker_stats.json", {"strategy": cell.strategy, "cpus": cpus,
                                                         "python": cell.python, "samples": server.stats})

    def client(self, cell, name, module, *args, timeout, on_line=None, python=None, on=None):
        """clients.MODULE in the load container, its JSON record saved as the cell's raw file NAME.json;
        with python, in a container of that Python's image (the GIL and memory experiments measure
        the interpreter itself); with on=server, in that server's container, on its CPUs."""
        if on is not None:
            record = on.run_client(module, *args, "--json", timeout=timeout)
        else:
            record = self.lab.run_client(module, *args, "--json", timeout=timeout, on_line=on_line, python=python)
        self.run.save_raw(cell.id, f"{name}.json", record)
        return record

    def in_background(self, fn, *args, **kwargs):
        """Run fn(*args, **kwargs) in a thread; join() returns its result or raises its error."""
        return Background(fn, *args, **kwargs)


class Background(threading.Thread):
    def __init__(self, fn, *args, **kwargs):
        super().__init__(daemon=True)
        self.fn, self.args, self.kwargs, self.result, self.error = fn, args, kwargs, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kwargs)
        except Exception as e:
            self.error = e

    def join(self, timeout=None):
        super().join(timeout)
        if self.error:
            raise self.error
        return self.result
