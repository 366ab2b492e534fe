"""Run a test module's functions in a child Python that imports Locust, as a Locust process does.

Importing locust monkey-patches the whole process with gevent (threads become greenlets, blocking calls
cooperative), so pytest's own process never imports it: the tests of locustfiles/_tcp.py and
locustfiles/_latency.py have one child per test module, which imports that module (with the repository,
tests/ and locustfiles/ on its path), calls one of its module-level functions with JSON arguments and
answers with the function's result as JSON. The functions import Locust's side themselves.

    from locust_child import in_locust  # noqa: F401 (the fixture: one child per test module)

    in_locust(some_function, 1, "two")   # some_function(1, "two"), run in the child
"""
import inspect
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# A call is a few requests on loopback; the first one also imports Locust (about half a second).
CALL_TIMEOUT_S = 60
# The child's answers are the lines with this prefix: anything else a library prints is passed over.
ANSWER = b"locust-child-answer "

CHILD = f"""
import importlib.util, json, sys, traceback
modules = {{}}
for line in sys.stdin:
    call = json.loads(line)
    try:
        if call["file"] not in modules:
            spec = importlib.util.spec_from_file_location("in_locust_" + str(len(modules)), call["file"])
            modules[call["file"]] = module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        answer = {{"result": getattr(modules[call["file"]], call["name"])(*call["args"])}}
    except BaseException:
        answer = {{"error": traceback.format_exc()}}
    print({ANSWER.decode()!r} + json.dumps(answer), flush=True)
"""


class LocustChild:
    def __init__(self, stderr_path):
        self.stderr_path = stderr_path
        paths = [str(REPO), str(REPO / "tests"), str(REPO / "locustfiles"), os.environ.get("PYTHONPATH", "")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=stderr)
        self.unread = b""

    def call(self, function, *args):
        """function(*args) run in the child; its exception fails the test with the child's traceback."""
        assert function.__qualname__ == function.__name__, f"{function.__qualname__} is not a module's function"
        if self.proc.poll() is not None:
            pytest.fail(f"the Locust child is gone (exit status {self.proc.returncode}): see the first failure",
                        pytrace=False)
        request = {"file": inspect.getsourcefile(function), "name": function.__name__, "args": args}
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        answer = json.loads(self.answer_line(function.__name__))
        if "error" in answer:
            pytest.fail(f"{function.__name__} failed in the Locust child:\n{answer['error']}", pytrace=False)
        return answer["result"]

    def answer_line(self, name):
        """The child's next answer line, read from the pipe itself so that no line waits in a buffer."""
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            line, newline, rest = self.unread.partition(b"\n")
            if newline:
                self.unread = rest
                if line.startswith(ANSWER):
                    return line[len(ANSWER):]
                continue
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            data = os.read(self.proc.stdout.fileno(), 65536) if ready else b""
            if ready and not data:
                break  # the child is gone
            self.unread += data
        try:
            why = f"it exited with status {self.proc.wait(timeout=1)}"
        except subprocess.TimeoutExpired:
            why = f"none within {CALL_TIMEOUT_S} s"
            self.proc.kill()  # so that no later call takes this one's late answer for its own
            self.proc.wait()
        pytest.fail(f"no answer to {name} from the Locust child ({why}); its stderr:\n"
                    f"{self.stderr_path.read_text(errors='replace')}", pytrace=False)

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture(scope="module")
def in_locust(tmp_path_factory):
    """in_locust(function, *args): function(*args) run in this test module's Locust child."""
    child = LocustChild(tmp_path_factory.mktemp("locust") / "locust-child.err")
    try:
        yield child.call
    finally:
        child.stop()
