"""perf1: fib(30) in a loop, the article's latency test (claims C4, C7).

Each user is one client on one connection, so -u is the number of clients: compare the latency of
-u 1 with -u 2 against the threaded server (C4: it doubles) and against a process pool (C7: it does
not). Closed loop by default; --rate R makes every user send R requests per second on a fixed
schedule (open loop), latency counted from each request's intended start. n: --perf1-n (default 30).

    locust -f locustfiles/perf1.py --host tcp://127.0.0.1:25000 --headless -u 2 -t 30s --csv results/perf1
"""
from _tcp import FibUser


class Perf1User(FibUser):
    fib_n_option = "perf1_n"
