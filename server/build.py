"""Which Python the server runs on: its version, whether the build is free-threaded, whether the GIL is on.

`python -m server.build --json` prints describe() as JSON: the runner asks each image this way.
Standard library only, Python 3.11 to 3.14t.
"""
import argparse
import json
import platform
import sys
import sysconfig


def describe():
    return {
        "version": platform.python_version(),
        "implementation": sys.implementation.name,
        "switch_interval_s": sys.getswitchinterval(),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        # A free-threaded build turns the GIL back on with PYTHON_GIL=1 or for an extension that needs it.
        "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
    }


def text(build=None):
    """'python 3.13.5 (GIL)', 'python 3.14.0 (free-threaded, GIL disabled)'."""
    build = build or describe()
    if not build["free_threaded"]:
        return f"python {build['version']} (GIL)"
    gil = "enabled" if build["gil_enabled"] else "disabled"
    return f"python {build['version']} (free-threaded, GIL {gil})"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m server.build", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the fields as one JSON object")
    args = parser.parse_args(argv)
    print(json.dumps(describe()) if args.json else text())


if __name__ == "__main__":
    main()
