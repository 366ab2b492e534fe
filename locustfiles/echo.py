"""echo: the lab's echo server (--handler echo) asked the same line over and over (claim C2).

Each user is one client on one connection; every request is --echo-bytes bytes (newline included,
default 2) and the reply must be exactly those bytes. Closed loop by default; --rate R makes every
user send R requests per second (open loop). It is also how scripts/bench-loadgen measures Locust's
own speed.

    python -m server --strategy threaded --handler echo --port 25100 &
    locust -f locustfiles/echo.py --host tcp://127.0.0.1:25100 --headless -u 50 -t 30s --csv results/echo
"""
from _tcp import TcpUser, echo_request


class EchoUser(TcpUser):
    def request_for(self, options):
        return echo_request(options.echo_bytes)
