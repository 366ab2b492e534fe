"""workshop: the article's claims as named experiments in Locust's own UI, and the Lab view.

Every live form of an experiment (lab.experiments.live(): C4 in perf1, C6, C8 and C9 in convoy, ...)
becomes a shape class that Locust's UI lists (--class-picker), with one user class per role. The
teacher picks one, presses Start, and the shape runs its stages, chooses the users and their servers,
and stops by itself.

What this file holds is what Locust loads: those classes, the command-line options, and install(),
which wires the master's live controller (lab.live.controller: the run, its verdict, its files) into
Locust's events and its web UI (lab.live.routes: the Lab view at /lab, and a "Lab" tab).

Workers outside the compose network reach the servers through their published ports:
--lab-servers HOST (with --lab-port-prefix if the lab's LAB_PORT_PREFIX is not the default), and prove
they are the lab's with --lab-token (LOCUST_LAB_TOKEN; compose gives its own workers .env's LAB_TOKEN):
at connect each worker sends the master lab_hello, an HMAC of its id under the token
(lab.live.controller.worker_proof); the master counts only the workers whose proof is right (its
WorkerGate), and tells the others lab_refused, on which a worker of this file stops.
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
from lab.live import forms, login, routes
from lab.live.controller import PROVE_S, LiveController, connected_workers, token_missing, worker_proof

ONCE_MESSAGE = "lab_once"
HELLO_MESSAGE = "lab_hello"  # worker -> master, at connect: {proof}
REFUSED_MESSAGE = "lab_refused"  # master -> a refused worker: {why}
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
    # Not LAB_TOKEN: on the master it would be a parsed option, which Locust sends to every worker.
    parser.add_argument("--lab-token", default="", env_var="LOCUST_LAB_TOKEN", include_in_web_ui=False,
                        help="workshop experiments: the lab's LAB_TOKEN (its .env), which a worker proves to the "
                             "master at connect; a lab whose LAB_TOKEN is set counts only workers that have it")
    login.web_login_by_default(parser)  # --web-login where the lab listens beyond loopback


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
    token = getattr(options, "lab_token", "")
    if options is not None:
        options.lab_token = ""  # a master's custom options go to every worker with each spawn message
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        say_hello(runner, token)
    if runner is None or isinstance(runner, WorkerRunner):
        return
    if problem := token_missing():
        logger.error("lab: %s", problem)
        sys.exit(1)
    if isinstance(runner, MasterRunner):
        CONTROLLER.attach(environment, functools.partial(connected_workers, runner), functools.partial(
            tell_refused, runner))
        runner.register_message(HELLO_MESSAGE, CONTROLLER.on_hello)
        environment.events.worker_connect.add_listener(on_worker_connect)
        _latency.worker_filters.append(CONTROLLER.counts)
    else:
        CONTROLLER.attach(environment)
    runner.register_message(ONCE_MESSAGE, CONTROLLER.on_once_message)
    environment.events.test_stop.add_listener(CONTROLLER.on_test_stop)
    _latency.results_writers.append(CONTROLLER.save)
    if environment.web_ui:
        routes.install(environment, CONTROLLER)
    gevent.spawn(CONTROLLER.measure_load_side)
    if sys.version_info < (3, 11):
        logger.warning("the Lab view needs Python 3.11 or later")


def say_hello(runner, token):
    """A worker's side: lab_hello with its proof of the token (None without one), once connected (init
    comes after the master's ack); on lab_refused, one line and a quit with exit code 1."""
    def refused(environment, msg, **_):
        logger.error("lab: the master refused this worker: %s", (msg.data or {}).get("why", "no reason given"))
        environment.process_exit_code = 1  # Locust's documented exit code of the process
        runner.quit()

    runner.register_message(REFUSED_MESSAGE, refused, concurrent=True)  # quit() kills the message loop
    runner.send_message(HELLO_MESSAGE, {"proof": worker_proof(token, runner.client_id) if token else None})


def on_worker_connect(client_id, **_):
    CONTROLLER.on_worker_connect(client_id)
    gevent.spawn_later(PROVE_S + 0.5, CONTROLLER.check_workers)  # refused on time, whether or not anyone looks


def tell_refused(runner, worker_id, why):
    runner.send_message(REFUSED_MESSAGE, {"why": why}, client_id=worker_id)
