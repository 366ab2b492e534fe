"""abuse: the abuse battery. Each case misuses one server the way a broken or greedy client would,
and meanwhile a fresh client asks fib(20): it must be answered in under a second, during the case
and after it, and the abusive client must get what the protocol says (an ERR, a close, or its
replies in order).

A case is a context manager: entering it puts the abuse in place (connections held open, a flood
running); the fresh client asks while it is in place; leaving it checks what the abusive client got
(raising Misbehaved if it got something else) and closes everything. Every case is bounded in count
and time. tests/test_abuse.py runs every case against every strategy; docs/servers.md's reliability
table is `python -m clients.abuse --markdown`.

  clients.abuse.sockets  the socket helpers: connections, resets, reading replies, the protocol's replies
  clients.abuse.cases    the cases (CASES, in order), the flood, and the docs' table (markdown)
  clients.abuse.run      running one case with its fresh client (run_case, OtherLoad, enough_files)
  clients.abuse.command  the command line: python -m clients.abuse (parse_args, main)
"""

from clients.abuse.cases import BEGIN, CASES, END, Case, Flood, markdown
from clients.abuse.command import main, parse_args
from clients.abuse.run import Outcome, OtherLoad, enough_files, run_case
from clients.abuse.sockets import Misbehaved, connect, reset

__all__ = ["BEGIN", "CASES", "END", "Case", "Flood", "markdown", "main", "parse_args", "Outcome", "OtherLoad",
           "enough_files", "run_case", "Misbehaved", "connect", "reset"]
