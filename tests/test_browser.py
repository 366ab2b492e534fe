"""The browser path: headless Chromium (tests/browser.py) loads a page from loopback, runs its
JavaScript and takes a screenshot. With CI=true this runs and never skips."""
import functools
import http.server
import threading

import pytest

# chromium_driver is a fixture: imported, pytest finds it here.
from browser import chromium_driver, screenshot, wait_for_text  # noqa: F401

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>browser check</title></head>
<body style="font: 32px sans-serif; margin: 40px">
<h1>Python concurrency lab</h1>
<p id="status">waiting</p>
<script>
setTimeout(() => { document.getElementById("status").textContent = "changed by JavaScript"; }, 500);
</script>
</body></html>
"""


@pytest.fixture
def page_url(tmp_path):
    """PAGE served by http.server on 127.0.0.1, on a port the system picks, for the test's duration."""
    (tmp_path / "index.html").write_bytes(PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
        server.shutdown()
        thread.join(timeout=5)


def test_chromium_runs_the_pages_javascript_and_takes_a_screenshot(chromium_driver, page_url):
    chromium_driver.get(page_url)
    assert chromium_driver.title == "browser check"
    wait_for_text(chromium_driver, "#status", lambda text: text == "changed by JavaScript",
                  what="'changed by JavaScript'")
    path = screenshot(chromium_driver, "browser-check")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert len(data) > 1024, f"{path} has only {len(data)} bytes"
