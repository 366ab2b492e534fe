"""scripts/bench-fidelity: do the lab's perf1 and perf2 measure the server, or themselves? A benchmark
that prints figures; not a test.

Against one server (threaded, on this host), it runs in alternating rounds (lab then bare, bare then
lab, ...) the lab's client (python -m clients.perfN --json) and the article's bare loop written out
here (sock.send(b'1'); sock.recv(100), nothing else), each for --duration seconds, and prints each
round's ratio lab / bare of requests per second, then the median of the rounds. A ratio near 1 means
the lab's client costs no more than the article's loop; perf2, whose requests are the cheapest, shows
the client's own cost most. With 2 or more CPUs the server runs on the first CPU and the clients on
the second, as in the lab's compose defaults.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

from server.protocol import PORT
from server.strategies import threaded

# The article's loops, as a hand-run script would have them; they print requests per second.
BARE = {
    "perf2": "import socket, sys, time\n"
             "sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
             "n, end = 0, time.perf_counter() + float(sys.argv[3])\n"
             "while time.perf_counter() < end:\n"
             "    sock.send(b'1'); sock.recv(100); n += 1\n"
             "print(n / float(sys.argv[3]))\n",
    "perf1": "import socket, sys, time\n"
             "sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
             "n, end = 0, time.perf_counter() + float(sys.argv[3])\n"
             "while time.perf_counter() < end:\n"
             "    sock.send(b'%d' % int(sys.argv[4])); sock.recv(100); n += 1\n"
             "print(n / float(sys.argv[3]))\n",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/bench-fidelity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per client (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each run (default: %(default)s)")
    parser.add_argument("--perf1-n", type=int, default=25, help="perf1's fib(n) (default: %(default)s)")
    parser.add_argument("--port", type=int, default=PORT + 150, help="the server's port on 127.0.0.1 (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 0 < args.duration <= 60:
        parser.error("--rounds must be >= 1 and --duration in (0, 60]")
    return args


def cpus():
    """(server's CPUs, clients' CPUs): the first CPU and the others, or all for both on one CPU."""
    mine = sorted(os.sched_getaffinity(0))
    return ({mine[0]}, set(mine[1:])) if len(mine) > 1 else (set(mine), set(mine))


def pinned(cpu_set):
    return lambda: os.sched_setaffinity(0, cpu_set)


def run(cmd, cpu_set, timeout):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pinned(cpu_set))
    if proc.returncode != 0:
        raise SystemExit(f"bench-fidelity: {' '.join(map(str, cmd[:3]))} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


def lab_rate(tool, args, clients):
    extra = ["--n", args.perf1_n] if tool == "perf1" else []
    record = json.loads(run([sys.executable, "-m", f"clients.{tool}", "--port", args.port, "--duration",
                             args.duration, "--json", *extra], clients, args.duration + 60))
    return record["rate_per_s"] if tool == "perf2" else record["count"] / (record["ended_at"] - record["started_at"])


def bare_rate(tool, args, clients):
    extra = [args.perf1_n] if tool == "perf1" else []
    return float(run([sys.executable, "-c", BARE[tool], "127.0.0.1", args.port, args.duration, *extra],
                     clients, args.duration + 60))


def wait_for(port, deadline_s=15.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench-fidelity: the server did not listen on 127.0.0.1:{port} within {deadline_s:g} s")


def main(argv=None):
    args = parse_args(argv)
    server_cpus, client_cpus = cpus()
    server = subprocess.Popen([sys.executable, "-m", "server", "--strategy", threaded.NAME, "--host", "127.0.0.1",
                               "--port", str(args.port), "--quiet"], preexec_fn=pinned(server_cpus))
    try:
        wait_for(args.port)
        print(f"server: {threaded.NAME} on CPUs {sorted(server_cpus)}; clients on CPUs {sorted(client_cpus)}; "
              f"{args.rounds} rounds of {args.duration:g} s each, alternating")
        for tool in ("perf2", "perf1"):
            ratios = []
            for i in range(args.rounds):
                order = (lab_rate, bare_rate) if i % 2 == 0 else (bare_rate, lab_rate)
                rates = {measure.__name__: measure(tool, args, client_cpus) for measure in order}
                ratios.append(rates["lab_rate"] / rates["bare_rate"])
                print(f"{tool} round {i + 1}: lab {rates['lab_rate']:,.0f} req/s, bare {rates['bare_rate']:,.0f} "
                      f"req/s, lab/bare {ratios[-1]:.2f}", flush=True)
            print(f"{tool}: lab/bare median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f})", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
