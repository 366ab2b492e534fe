"""scripts/bench-fidelity: do the lab's perf1 and perf2 measure the server, or themselves? A benchmark
that prints figures; not a test.

Against one server (threaded, on this host), it runs in alternating rounds (lab then bare, bare then
lab, ...) the lab's client (python -m clients.perfN --json) and the article's bare loop
(clients.perf2.bare_loop: sock.send(b'1'); sock.recv(100), nothing else), each for --duration
seconds, and prints each round's ratio lab / bare of requests per second, then the median of the
rounds. A ratio near 1 means the lab's client costs no more than the article's loop; perf2, whose
requests are the cheapest, shows the client's own cost most. With 2 or more CPUs the server runs on
the first CPU and the clients on the second, in the runner's perf2 layout (across CPUs;
lab.cpu.layout), which the output names.
"""
import argparse
import json
import statistics
import subprocess
import sys

from clients.common import pinned_to
from lab.bench.common import BenchError, cpu_plan, exit_status, start_server, stop

# The article's loop in a process of its own, as a hand-run script would be: perf2 asks fib(1), perf1
# fib(n). It prints requests per second.
BARE_LOOP = ("import socket, sys\n"
             "from clients.perf2 import bare_loop\n"
             "sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
             "n, _ = bare_loop(sock, sys.argv[4].encode(), float(sys.argv[3]))\n"
             "print(n / float(sys.argv[3]))\n")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/bench-fidelity", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per client (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of each run (default: %(default)s)")
    parser.add_argument("--perf1-n", type=int, default=25, help="perf1's fib(n) (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or not 0 < args.duration <= 60:
        parser.error("--rounds must be >= 1 and --duration in (0, 60]")
    return args


def run(cmd, cpus, timeout):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=pinned_to(cpus))
    if proc.returncode != 0:
        raise BenchError(f"{' '.join(map(str, cmd[:3]))} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout.strip().splitlines()[-1]


def fib_n(tool, args):
    return args.perf1_n if tool == "perf1" else 1


def lab_rate(tool, port, args, cpus):
    record = json.loads(run([sys.executable, "-m", f"clients.{tool}", "--port", port, "--duration", args.duration,
                             "--n", fib_n(tool, args), "--json"], cpus, args.duration + 60))
    return record["count"] / (record["ended_at"] - record["started_at"]) if tool == "perf1" else record["rate_per_s"]


def bare_rate(tool, port, args, cpus):
    return float(run([sys.executable, "-c", BARE_LOOP, "127.0.0.1", port, args.duration, fib_n(tool, args)],
                     cpus, args.duration + 60))


def main(argv=None):
    args = parse_args(argv)
    return exit_status("bench-fidelity", lambda: benchmark(args))


def benchmark(args):
    server_cpus, client_cpus, pinning = cpu_plan(load="the client asks", one_client_cpu=True)
    server, port = start_server(server_cpus)
    try:
        print(f"{pinning}; {args.rounds} rounds of {args.duration:g} s each, alternating", flush=True)
        for tool in ("perf2", "perf1"):
            ratios = []
            for i in range(args.rounds):
                order = (lab_rate, bare_rate) if i % 2 == 0 else (bare_rate, lab_rate)
                rates = {measure.__name__: measure(tool, port, args, client_cpus) for measure in order}
                ratios.append(rates["lab_rate"] / rates["bare_rate"])
                print(f"{tool} round {i + 1}: lab {rates['lab_rate']:,.0f} req/s, bare {rates['bare_rate']:,.0f} "
                      f"req/s, lab/bare {ratios[-1]:.2f}", flush=True)
            print(f"{tool}: lab/bare median {statistics.median(ratios):.2f} "
                  f"(range {min(ratios):.2f}-{max(ratios):.2f})", flush=True)
    finally:
        stop(server)


if __name__ == "__main__":
    sys.exit(main())
