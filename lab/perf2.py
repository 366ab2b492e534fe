"""What a perf2 rate means: whether the perf2 client itself may have set it, and how it is written."""


# A perf2 rate within 20% of what the perf2 client itself can do on the load CPUs (its loop against a
# trivially fast server, measured by the loopback floor cell) may be the client's limit, not the server's.
CLIENT_LIMITED = 0.8
CLIENT_LIMITED_RULE = (f"A perf2 rate at {CLIENT_LIMITED:.0%} or more of the perf2 client's ceiling (its own loop "
                       "against a trivially fast server on the load CPUs, measured in the same run) is marked "
                       "client-limited: the client may have set it, not the server.")


def client_limited(rate_per_s, ceiling_per_s):
    """Whether a perf2 rate is client-limited: CLIENT_LIMITED of its run's perf2 client ceiling or more.
    Never without a ceiling: a run that did not measure one (older runs) marks nothing."""
    return bool(rate_per_s and ceiling_per_s) and rate_per_s >= CLIENT_LIMITED * ceiling_per_s


def client_limit_note(rate_per_s, ceiling_per_s):
    """' (client-limited: 93% of the perf2 client's ceiling)' after a client-limited perf2 rate, else ''."""
    if not client_limited(rate_per_s, ceiling_per_s):
        return ""
    return f" (client-limited: {rate_per_s / ceiling_per_s:.0%} of the perf2 client's ceiling)"


def rate(x, ceiling=None):
    """A request rate in words: '2,035 req/s', 'n/a'. A perf2 rate given its run's perf2 client ceiling
    says so if it is client-limited."""
    return "n/a" if x is None else f"{x:,.0f} req/s" + client_limit_note(x, ceiling)
