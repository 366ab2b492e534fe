"""What every strategy shares: the handler, the settings, and one client's session."""
import inspect
import logging
from dataclasses import dataclass

from server import handlers
from server.protocol import ChunkFramer, LineFramer, Refusal, refuse

log = logging.getLogger("server")
RECV_SIZE = 4096


@dataclass(frozen=True)
class Service:
    handler: str = "fib"
    workers: int = 1
    threshold: int = 15
    max_n: int = 40

    @property
    def reply(self):
        """The work for one request: a module-level function, so a process pool can run it."""
        return handlers.compute_fib_reply if self.handler == "fib" else handlers.echo_reply

    def is_long(self, request):
        """Worth sending to a pool (threshold strategies): a fib above the threshold."""
        return self.handler == "fib" and request > self.threshold

    def session(self, addr, compute=None):
        return Session(self, addr, compute or self.reply)

    def handle(self, client, addr, compute=None):
        """Serve one blocking socket until the client leaves: the article's handler loop."""
        with client, self.session(addr, compute) as session:
            while data := client.recv(RECV_SIZE):
                for reply, close in session.replies(data):
                    client.sendall(reply)
                    if close:
                        return


class Session:
    """One client's protocol state. Logs the connection and ends quietly when the client drops."""

    def __init__(self, service, addr, compute):
        self.peer = f"{addr[0]}:{addr[1]}" if addr else "a client that already left"
        self.framer = LineFramer(service.max_n) if service.handler == "fib" else ChunkFramer()
        self.compute = compute

    def replies(self, data):
        """Yield (reply bytes, close after sending) for each request in the data, in order."""
        for request in self.requests(data):
            yield request if isinstance(request, Refusal) else (self.answer(request), False)

    async def replies_async(self, data):
        """replies() for asyncio: a compute that returns an awaitable (a pool's future) is awaited."""
        for request in self.requests(data):
            yield request if isinstance(request, Refusal) else (await self.answer_async(request), False)

    def requests(self, data):
        """The numbers to compute and the Refusals, in order; nothing after a Refusal that closes."""
        for request in self.framer.feed(data):
            yield request
            if isinstance(request, Refusal) and request.close:
                return

    def answer(self, request):
        try:
            return self.compute(request)
        except Exception as e:
            return self.failed(e)

    async def answer_async(self, request):
        try:
            reply = self.compute(request)
            return await reply if inspect.isawaitable(reply) else reply
        except Exception as e:
            return self.failed(e)

    def failed(self, e):
        """E.g. a pool worker was killed: this request fails, the server goes on."""
        log.error("request from %s failed: %s: %s", self.peer, type(e).__name__, e)
        return refuse(f"server error ({type(e).__name__})").reply

    def __enter__(self):
        log.info("connection from %s", self.peer)
        return self

    def __exit__(self, kind, exc, tb):
        dropped = kind is not None and issubclass(kind, ConnectionError)
        log.info("connection closed %s%s", self.peer, " (dropped by the client)" if dropped else "")
        return dropped  # a reset or broken pipe is the client's choice, not a server error
