"""The Lab view in Locust's web UI, through its extension points: the page (/lab, from web/) and its data
(/lab/data, refreshed every second), the last run's files (/lab/files/NAME, also in the Download Data
tab), the GIL's seconds that clients.gil_sampler posts (/lab/gil), and a "Lab" tab with the running
experiment, its verdict and its percentiles. A live controller (lab.live.controller) answers them all.
With Locust's --web-login (lab.live.login: the lab listens beyond loopback), each asks for a session as
Locust's own routes do; /lab/gil takes a session or the sampler's LAB_TOKEN (lab.live.controller.token_ok).
"""
import json
from pathlib import Path

from flask import Blueprint, jsonify, request, send_file
from locust.runners import STATE_STOPPED

from clients.gil_sampler import TOKEN_HEADER
from lab.live import login
from lab.live.controller import FILES, token_ok

WEB = Path(__file__).parent / "web"


def extended_rows(data):
    """The Lab tab in Locust's own UI: the running experiment and its verdict, in rows."""
    rows = []
    run, verdict = data["run"], data["verdict"]
    if run:
        rows += [{"what": "experiment", "value": run["experiment"]["title"]},
                 {"what": "claim", "value": run["experiment"]["claim"]},
                 {"what": "article", "value": run["experiment"]["article"]}]
    if verdict:
        rows += [{"what": "measured", "value": verdict["measured"]}, {"what": "verdict", "value": verdict["line"]}]
    for name, figures in data["latency"].items():
        if figures.get("count"):
            rows.append({"what": f"{name} latency (µs)", "value": ", ".join(
                f"{key} {figures[key]:,}" for key in ("p50", "p90", "p99", "p99_9", "max"))})
    rows += [{"what": "note", "value": note["line"]} for note in data["notes"][-3:]]
    rows.append({"what": "more", "value": "the full Lab view, with the per-second chart: /lab"})
    return rows


def install(environment, controller):
    """The Lab view's routes, hooks and tab in the web UI of Locust's `environment`, answered by `controller`."""
    web_ui = environment.web_ui
    login.install(web_ui)
    view = Blueprint("lab", __name__, static_folder=str(WEB), static_url_path="/lab/static")

    @view.route("/lab")
    @web_ui.auth_required_if_enabled
    def lab_page():
        return send_file(WEB / "lab.html")

    @view.route("/lab/data")
    @web_ui.auth_required_if_enabled
    def lab_data():
        return jsonify(controller.data())

    @view.route("/lab/files/<name>")
    @web_ui.auth_required_if_enabled
    def lab_file(name):
        path = controller.file(name)
        if path is None:
            return jsonify({"error": f"no file {name!r} from the last run"}), 404
        return send_file(path, as_attachment=True, download_name=f"{controller.saved_to.name}-{name}")

    @view.route("/lab/gil", methods=["POST"])
    def lab_gil():
        if not (login.has_session() or token_ok(request.headers.get(TOKEN_HEADER))):
            return jsonify({"error": f"neither a session nor this lab's LAB_TOKEN in {TOKEN_HEADER}"}), 401
        why_not = controller.take_gil_second(request.get_json(silent=True))
        return (jsonify({"error": why_not}), 400) if why_not else jsonify({"ok": True})

    web_ui.app.register_blueprint(view)

    @web_ui.app.before_request
    def note_second_start():
        if request.path.endswith("/swarm") and request.method == "POST" and (not login.asks() or login.has_session()):
            controller.on_swarm_request(locust_stopped=environment.runner.state == STATE_STOPPED)

    @web_ui.app.after_request
    def add_lab_tab(response):
        if request.path.endswith("/stats/requests") and response.status_code == 200 and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": "lab", "data": extended_rows(controller.data())}]
            response.set_data(json.dumps(body))
        return response

    web_ui.template_args.update(
        extended_tabs=[{"title": "Lab", "key": "lab"}],
        extended_tables=[{"key": "lab", "structure": [{"key": "what", "title": "What"},
                                                      {"key": "value", "title": "Lab view"}]}],
        extended_csv_files=[{"href": f"/lab/files/{name}", "title": f"Lab: last run's {name} ({about})"}
                            for name, about in FILES])
