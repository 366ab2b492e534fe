"""workshop: the article's claims as named experiments in Locust's own UI, and the Lab view.

Every live form of an experiment (lab.experiments.live(): C4 in perf1, C6, C8 and C9 in convoy, ...)
becomes a shape class that Locust's UI lists (--class-picker), with one user class per role. The
teacher picks one, presses Start, and the shape runs its stages, chooses the users and their servers,
and stops by itself.

What this file holds is what Locust loads: those classes, the command-line options, and install(),
which wires the master's live controller (lab.live.controller: the run, its verdict, its files) into
Locust's events and its web UI (lab.live.routes: the Lab view at /lab, and a "Lab" tab).

Workers outside the compose network reach the servers through their published ports:
--lab-servers HOST (with --lab-port-prefix if the lab's LAB_PORT_PREFIX is not the default).
"""
import functools
import logging
import os
import socket
import sys

import gevent
from locust import LoadTestShape, constant, events
from locust.runners import STATE_INIT, MasterRunner, WorkerRunner

import _latency
from _tcp import FibUser, fib_request, parse_tcp_url

from clients import common
from lab.experiments import live as live_forms
from lab.live import forms, routes
from lab.live.controller import LiveController, connected_workers

ONCE_MESSAGE = "lab_once"
IDLE_S = 3600.0
ONCE_TIMEOUT_S = 600.0
CHECK_TIMEOUT_S = 3.0

logger = logging.getLogger(__name__)


@events.init_command_line_parser.add_listener
def add_options(parser):
    # Not in the web UI: where a worker finds the servers is the worker's own business.
    parser.add_argument("--lab-servers", default="", env_var="LOCUST_LAB_SERVERS", include_in_web_ui=False,
                        help="workshop experiments: where a worker finds the lab's servers. Empty (default): by "
                             "compose service name; HOST: through the ports the lab publishes on HOST")
    parser.add_argument("--lab-port-prefix", default="2500", env_var="LAB_PORT_PREFIX", include_in_web_ui=False,
                        help="the lab's LAB_PORT_PREFIX, for --lab-servers (default: %(default)s)")


# This process's own --lab-servers and --lab-port-prefix, kept at init: the master's options, which
# it sends with every spawn message, overwrite a worker's.
REACH = {}


def server_address(role):
    """Where a role's server answers, as this process sees it: 'server-threaded:25000' inside the
    compose network, 'HOST:25002' through the published port."""
    host = REACH.get("servers")
    return forms.published_address(role.strategy, host, REACH["port_prefix"]) if host else role.address()


def check_server(address):
    """None if the server at NAME:PORT answers fib(10) right within CHECK_TIMEOUT_S, else why not, in
    the lab's clients' own words (compose's health check, server.healthcheck, asks the same). The live
    controller asks it of a run's servers; it is here because it reads an address as the users do."""
    try:
        with common.FibConnection(*parse_tcp_url(address), CHECK_TIMEOUT_S) as connection:
            common.check_fib_reply(10, connection.ask(b"10\n"))
    except common.ClientError as error:
        return f"{address} does not answer fib(10): {error}"
    return None


class LiveUser(FibUser):
    """A user of one role of a live experiment (the class is made per role, below)."""

    abstract = True
    role: forms.Role = None
    asked = False  # a one-shot user's request has gone

    def request_for(self, options):
        _, payload, expected = fib_request(self.role.n)
        return self.role.request_name, payload, expected

    def target(self, options):
        return "tcp://" + server_address(self.role)

    def send_requests(self):
        if not self.role.once:
            return super().send_requests()
        if self.asked:
            return None
        self.asked = True
        gevent.sleep(self.role.once_after_s)
        self.request_reported(ONCE_MESSAGE, role=self.role.key, user=f"{id(self):x}@{socket.gethostname()}")
        if not self.role.hold:  # a prefork child serves one connection until it closes
            self.client.close()
        return None


class LiveShape(LoadTestShape):
    """An experiment's stages, one after the other (the class is made per experiment, below)."""

    abstract = True
    experiment: forms.LiveForm = None

    def tick(self):
        return CONTROLLER.tick(self.experiment, starting=self.runner.state == STATE_INIT)


def user_class(experiment, role):
    """The user class of one role: its name is what Locust's UI lists ('C6_long_request')."""
    attributes = {"role": role, "fixed_count": role.count(forms.lab_settings(os.environ)), "abstract": False,
                  "host": f"tcp://{role.address()}", "__module__": __name__}  # what the UI lists beside it
    if role.once:
        attributes.update(wait_time=constant(IDLE_S), min_request_timeout_s=ONCE_TIMEOUT_S)
    return type(f"{experiment.key}_{role.key}", (LiveUser,), attributes)


ROLE_CLASSES = {}  # {claim id: {role key: user class}}


def make_classes():
    for experiment in live_forms().values():
        roles = ROLE_CLASSES[experiment.key] = {role.key: user_class(experiment, role) for role in experiment.roles}
        globals().update({cls.__name__: cls for cls in roles.values()})
        shape = type(experiment.shape_name, (LiveShape,), {
            "experiment": experiment, "abstract": False, "__module__": __name__,
            "__doc__": f"{experiment.title}: {experiment.about}"})
        globals()[shape.__name__] = shape


make_classes()


CONTROLLER = LiveController(ROLE_CLASSES, spawn=gevent.spawn, address=server_address, check=check_server,
                            latency=_latency)


@events.init.add_listener
def install(environment, **_):
    options = environment.parsed_options
    REACH.update(servers=getattr(options, "lab_servers", ""), port_prefix=getattr(options, "lab_port_prefix", ""))
    runner = environment.runner
    if runner is None or isinstance(runner, WorkerRunner):
        return
    CONTROLLER.attach(environment, functools.partial(connected_workers, runner)
                      if isinstance(runner, MasterRunner) else None)
    runner.register_message(ONCE_MESSAGE, CONTROLLER.on_once_message)
    environment.events.test_stop.add_listener(CONTROLLER.on_test_stop)
    _latency.results_writers.append(CONTROLLER.save)
    if environment.web_ui:
        routes.install(environment, CONTROLLER)
    gevent.spawn(CONTROLLER.measure_load_side)
    if sys.version_info < (3, 11):
        logger.warning("the Lab view needs Python 3.11 or later")
