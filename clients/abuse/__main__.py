"""python -m clients.abuse: the abuse battery against one server (clients.abuse.command; --help explains)."""

from clients import common
from clients.abuse.command import main

if __name__ == "__main__":
    common.run_tool("abuse", main)
