"""python -m lab COMMAND [ARGS...]: the lab's tools, one entry point."""
import sys
from importlib import import_module

# command: (module, what it does); 'python -m lab COMMAND --help' explains each one.
COMMANDS = {
    "run": ("lab.runner.run", "run the experiments on real containers -> results/<UTC-time>-<id>/ (--resume finishes one)"),
    "report": ("lab.records.report", "write RUN_DIR/report.md and a self-contained RUN_DIR/report.html"),
    "compare": ("lab.records.compare", "two runs side by side, with ratios and changed verdicts"),
    "pin": ("lab.cpu.pin", "show or change the CPUs of the lab's containers"),
    "experiments": ("lab.records.listing", "list the experiments, the claims each backs and the cells it measures"),
}


def usage():
    width = max(map(len, COMMANDS))
    return ("usage: scripts/lab COMMAND [ARGS...]   (or python -m lab COMMAND, in .venv)\n\n"
            + "\n".join(f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items())
            + "\n\n'scripts/lab COMMAND --help' explains each one.\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(usage(), end="", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(usage(), end="")
        return 0
    command, *rest = argv
    if command not in COMMANDS:
        print(usage(), end="", file=sys.stderr)
        print(f"lab: unknown command {command!r}", file=sys.stderr)
        return 2
    try:
        return import_module(COMMANDS[command][0]).main(rest)
    except BrokenPipeError:  # stdout closed by its reader (| head): nothing left to say
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
