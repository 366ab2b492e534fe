"""Compose's health check of a server: fib(10) over one real connection must come back as 55.

    python -S -m server.healthcheck [PORT]

Exit status 0 when the reply is right; otherwise 1, with the reason in one line on stderr (which
`docker inspect` shows as the check's output).

Why not `python -m clients.request 10`: Docker runs this every few seconds in every server container,
while the runner measures on the same two CPUs. The full client imports argparse, json and statistics
and cost 67 ms of CPU a check; this one imports socket and the protocol only (and -S skips site), so an
idle lab keeps its CPUs free for the experiments (docs/docker.md, "Health checks").
"""
import socket
import sys

from server.protocol import PORT, fib_reply

N = 10
TIMEOUT_S = 3


def check(port=PORT, host="127.0.0.1"):
    """None if the server at host:port answers N right within TIMEOUT_S, else why not."""
    try:
        with socket.create_connection((host, port), TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.sendall(b"%d\n" % N)
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(100)
                if not chunk:
                    return f"{host}:{port} closed the connection after {reply!r}"
                reply += chunk
    except OSError as error:
        return f"{host}:{port} does not answer fib({N}): {error}"
    if reply != fib_reply(N):
        return f"{host}:{port} answered fib({N}) with {reply!r}, not {fib_reply(N)!r}"
    return None


if __name__ == "__main__":
    if len(sys.argv) > 2 or not all(arg.isdigit() for arg in sys.argv[1:]):
        sys.exit("usage: python -S -m server.healthcheck [PORT]")
    why = check(int(sys.argv[1]) if len(sys.argv) > 1 else PORT)
    if why:
        print(why, file=sys.stderr)
    sys.exit(1 if why else 0)
