"""perf2: fib(1) as fast as the server answers, the article's throughput test (claims C6, C8, C9).

Each user is one client on one connection. Closed loop by default; --rate R makes every user send
R requests per second on a fixed schedule instead (open loop). n: --perf2-n (default 1).

    locust -f locustfiles/perf2.py --host tcp://127.0.0.1:25000 --headless -u 1 -t 30s --csv results/perf2
"""
from _tcp import FibUser


class Perf2User(FibUser):
    fib_n_option = "perf2_n"
