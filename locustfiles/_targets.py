"""The lab's targets (lab.targets: the lab's servers, loopback, and what LAB_EXTRA_TARGETS adds on purpose)
at each of Locust's entries. _tcp imports it, so every locustfile has it.

- The command line's --host, at init: one error line and exit code 2 before any user starts, on a master,
  a worker or a local run.
- The web UI and its API: POST /swarm with a Host not allowed answers as Locust's own refusals do (200,
  {"success": false, "message": ...} on one line, which its start form shows), and starts nothing; POST
  /user (a user class's settings, which has no refusal of Locust's to copy) with such a "host" answers 400
  with the same JSON. It is a Flask before_request on environment.web_ui.app, registered at init before
  workshop.py's routes, so that a refused Start is no Start for the Lab view either. Without a session
  (--web-login) it lets the request through to Locust's own 401: the allow-list is for those logged in.
  An empty Host is let through: each user class then keeps its own, which the TCP client checks.
- The TCP client, before every connection (_tcp.TcpClient), against this process's own allow-list, kept at
  init: a worker's parsed options are overwritten by the master's with every spawn message, and a worker
  refuses what a master let through. It sends nothing and reports the refusal once (first_report).

--lab-extra-targets is not in the web UI: a target is allowed by whoever starts the load generator, not by
whoever reaches its UI. --lab-servers and --lab-port-prefix are workshop.py's (every run of the
locustfiles/ directory has them); a single locustfile's run has neither, and takes --lab-extra-targets.
"""
import json
import logging
import sys

from flask import Response, request
from locust import events

from lab import targets
from lab.live import login

logger = logging.getLogger(__name__)

# This process's allow-list, set at init from its own options; the defaults until then (a TcpClient made
# outside a Locust run).
ALLOWED = targets.Targets()
REPORTED = set()
EXIT_REFUSED = 2  # as for any other bad command line


@events.init_command_line_parser.add_listener
def add_option(parser):
    parser.add_argument(targets.EXTRA_FLAG, default="", env_var=targets.EXTRA_SETTING, include_in_web_ui=False,
                        help="NAME:PORT,...: targets besides the lab's servers and loopback, allowed on purpose")


@events.init.add_listener
def check_at_init(environment, **_):
    global ALLOWED
    options = environment.parsed_options
    try:
        ALLOWED = targets.Targets.from_settings(getattr(options, "lab_servers", ""),
                                                getattr(options, "lab_port_prefix", ""),
                                                getattr(options, "lab_extra_targets", ""))
        refused = refusal(environment.host) if environment.host else None
    except ValueError as error:  # a malformed LAB_EXTRA_TARGETS
        refused = str(error)
    if refused:
        logger.error("%s", refused)
        sys.exit(EXIT_REFUSED)
    if environment.web_ui:
        environment.web_ui.app.before_request(refuse_other_hosts)


def refuse_other_hosts():
    """Locust's two ways to set a host from the web: the start form's Host (POST /swarm) and a user class's
    settings (POST /user, which sets any attribute, its host too)."""
    if request.method != "POST" or not request.path.endswith(("/swarm", "/user")):
        return None
    if login.asks() and not login.has_session():
        return None  # the route's own login check answers 401
    if request.path.endswith("/swarm"):
        host = request.form.get("host", "")
    else:
        settings = request.get_json(force=True, silent=True)
        host = settings.get("host", "") if isinstance(settings, dict) else ""
    host = str(host or "").strip()
    refused = host and refusal(host)
    if not refused:
        return None
    logger.error("Start refused: %s", refused)
    status = 200 if request.path.endswith("/swarm") else 400  # Locust's start form shows only a 200's message
    # one line: Flask's jsonify pretty-prints in Locust's app
    return Response(json.dumps({"success": False, "message": refused}), status, mimetype="application/json")


def refusal(url):
    """None if this process may connect to `url`, else why not, in one line (lab.targets.Targets.refusal)."""
    return ALLOWED.refusal(url)


def reach(url):
    """Where this process finds `url` (lab.targets.Targets.reach)."""
    return ALLOWED.reach(url)


def first_report(refused):
    """True the first time this process meets this refusal, which it then logs: a refused target is one
    error, not one per user and attempt."""
    if refused in REPORTED:
        return False
    REPORTED.add(refused)
    logger.error("%s", refused)
    return True
