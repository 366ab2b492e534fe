"""The web UI's login, when the lab listens beyond loopback: Locust's own --web-login (flask-login), with
one password for the room.

Whether: LAB_BIND (compose passes .env's to the master) is not a loopback address, or LAB_PASSWORD is set.
Then --web-login is on by default (web_login_by_default, from the locustfile's command-line hook: Locust
makes its login manager when it builds the web UI, before any init listener runs), every route of Locust's
own and of the Lab view asks for a session, and the password is LAB_PASSWORD, else one generated at start
and printed in the master's log. On 127.0.0.1, as shipped, nothing asks.

Without a session, a page (a browser's GET that asks for HTML) goes to the login page and comes back
after it; anything else (a POST, a download, the Lab view's data) gets 401. The GIL sampler's posts to
/lab/gil carry LAB_TOKEN instead (lab.live.routes).

Nothing here imports Locust: install() is handed its web UI.
"""
import hmac
import ipaddress
import logging
import os
import secrets
import time

from flask import current_app, jsonify, redirect, request, session, url_for
from flask_login import current_user, login_user

LOOPBACK_NAMES = ("localhost",)
WRONG_PASSWORD_DELAY_S = 1.0  # each wrong password waits this long: guessing one over the room's network is slow
SUBMIT_PATH = "/login/password"
USER_ID = "lab"

logger = logging.getLogger(__name__)


def loopback(address):
    """Whether a LAB_BIND value admits only this machine: 127.0.0.0/8, ::1, localhost; empty is compose's
    default, 127.0.0.1. Anything else (0.0.0.0, a LAN address, a host name) reaches beyond."""
    address = address.strip().strip("[]")
    if not address or address.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def needed(env=os.environ):
    """Whether the web UI asks for a password: the lab listens beyond loopback, or it has a password."""
    return not loopback(env.get("LAB_BIND", "")) or bool(env.get("LAB_PASSWORD"))


def web_login_by_default(parser):
    """Locust's --web-login on by default where needed(): an init_command_line_parser listener's part
    (LOCUST_WEB_LOGIN or the flag itself still win, as for any Locust option)."""
    parser.set_defaults(web_login=needed())


def asks():
    """Whether this request's app asks for a session: Locust's --web-login gives it a login manager."""
    return getattr(current_app, "login_manager", None) is not None


def has_session():
    """Whether this request comes with a session (never without --web-login)."""
    return asks() and current_user.is_authenticated


def safe_next(path):
    """A path on this server to come back to after the login, or None (no other site, no login loop)."""
    if path and path.startswith("/") and not path.startswith(("//", "/\\", "/login")):
        return path
    return None


class LabUser:
    """The room's one user: whoever knows the password (flask-login's user protocol)."""

    is_authenticated = is_active = True
    is_anonymous = False

    def get_id(self):
        return USER_ID


def install(web_ui, env=os.environ):
    """The password check on Locust's web UI, if Locust was started with --web-login; returns the
    password (None without --web-login)."""
    if not web_ui.web_login:
        return None
    password = env.get("LAB_PASSWORD") or secrets.token_urlsafe(12)
    if env.get("LAB_PASSWORD"):
        logger.info("The web UI asks for LAB_PASSWORD (from .env)")
    else:
        logger.warning(f"The web UI asks for a password, generated at start: {password} "
                       f"(LAB_BIND={env.get('LAB_BIND', '')!r}; set LAB_PASSWORD in .env to choose it)")
    app = web_ui.app
    app.config.update(SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_SAMESITE="Lax")
    manager = web_ui.login_manager
    manager.user_loader(lambda user_id: LabUser() if user_id == USER_ID else None)
    web_ui.auth_args = {"custom_form": {
        "inputs": [{"label": "Lab password", "name": "password", "is_secret": True, "is_required": True}],
        "callback_url": SUBMIT_PATH, "submit_button_text": "Log in"}}
    hint = ("This lab asks for a password: LAB_PASSWORD in its .env, or, with that empty, the one its "
            "master's log printed at start")

    @manager.unauthorized_handler
    def refuse():
        if request.method == "GET" and request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html":
            session["lab_next"] = safe_next(request.full_path.rstrip("?"))
            session["auth_info"] = hint
            return redirect(url_for("locust.login"))
        return jsonify({"success": False, "message": f"log in first ({url_for('locust.login')})"}), 401

    @app.route(SUBMIT_PATH, methods=["POST"])
    def submit_password():
        given = request.form.get("password", "")
        if hmac.compare_digest(given.encode(), password.encode()):
            login_user(LabUser())
            return redirect(safe_next(session.pop("lab_next", None)) or url_for("locust.index"))
        time.sleep(WRONG_PASSWORD_DELAY_S)  # cooperative: Locust's process runs on gevent
        session["auth_error"] = "Wrong password"
        return redirect(url_for("locust.login"))

    return password
