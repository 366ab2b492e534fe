"""The article's measuring tools, as command-line clients with machine-readable output.

Network clients (they talk to a server from the `server` package):
  python -m clients.perf1    fib(30) in a loop on one connection, one latency per line (C4, C7)
  python -m clients.perf2    fib(1) as fast as possible, requests per interval (C6, C8, C9)
  python -m clients.request  one request and its elapsed time: the article's nc step (C3)
  python -m clients.hold_connections  hold N connections open, each served once (C1, C2, C13)

Experiments that need no server:
  python -m clients.gil_stall        a long C-level call stalls other threads and Ctrl-C (C5)
  python -m clients.thread_memory    virtual vs. resident memory of idle threads (C11)
  python -m clients.recursion_depth  how deep recursion gets per thread stack size (C12)
  python -m clients.loopback_floor   a bare socket ping-pong on one CPU and across two (the machine's
                                     wake-up cost), the ceiling of every perf2 rate, and the perf2
                                     client's own ceiling
  python -m clients.thread_cpus      where a server's threads ran and how busy each CPU was, sampled:
                                     the check that perf2's layout held
  python -m clients.cpu_parallelism  fib(n) in two processes at once over one alone: the parallelism
                                     the CPUs give right now, the yardstick of C4 and C7

Every tool takes --help and --json (the last stdout line is then one JSON object).
Standard library only: the clients run in a minimal image and on bare hosts.

Run by the lab in a side container, not by hand (it needs py-spy, which the lab image has):
  python -m clients.gil_sampler      which thread of a server holds the GIL, sampled with py-spy
"""
