"""What the server computes. Module-level functions, so that a process pool can pickle them."""


def fib(n):
    # The article's naive recursive fib, slow on purpose: it is the CPU load.
    if n <= 2:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


def compute_fib_reply(n):
    # The reply to request n, computed the article's slow way: the server's work. fib(0) is 0
    # (server.protocol.fib_reply says what every reply must be); the article's fib would say 1, and its
    # hot loop stays untouched.
    return b"%d\n" % (fib(n) if n else 0)


def echo_reply(data):
    return data
