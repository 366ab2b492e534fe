"""What a perf2 rate is: the rates in a clients.perf2 record's buckets, whether the perf2 client itself may
have set one (its ceiling), and how one is written.

The experiments that measure perf2 rates declare PERF2_RATES, and the one that measures the client's
ceiling declares PERF2_CEILING (lab.experiments); the report and compare find them there.
"""
import statistics


# A perf2 rate within 20% of what the perf2 client itself can do on the load CPUs (its loop against a
# trivially fast server, measured by the loopback floor cell) may be the client's limit, not the server's.
CLIENT_LIMITED = 0.8
CLIENT_LIMITED_RULE = (f"A perf2 rate at {CLIENT_LIMITED:.0%} or more of the perf2 client's ceiling (its own loop "
                       "against a trivially fast server on the load CPUs, measured in the same run) is marked "
                       "client-limited: the client may have set it, not the server.")


def client_limited(rate_per_s, ceiling_per_s):
    """Whether a perf2 rate is client-limited: CLIENT_LIMITED of its run's perf2 client ceiling or more.
    Never without a ceiling: a run that did not measure one marks nothing."""
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


def rates(perf2, long_start, long_end):
    """Mean rate in the whole buckets of a perf2 record before a long request (the first one is warm-up)
    and in those wholly inside it; drop = 1 - during / before; before_cv: how steady the rate was before
    it, the buckets' standard deviation over their mean (None: fewer than two buckets)."""
    width = perf2["interval_s"]
    buckets = perf2["buckets"][1:]
    before = [count for start, count in buckets if start + width <= long_start]
    during = [count for start, count in buckets if start >= long_start and start + width <= long_end]
    rate_before = statistics.fmean(before) / width if before else None
    rate_during = statistics.fmean(during) / width if during else None
    drop = 1 - rate_during / rate_before if rate_before and rate_during is not None else None
    before_cv = statistics.pstdev(before) / statistics.fmean(before) if len(before) > 1 and any(before) else None
    return {"rate_before_per_s": rate_before, "rate_during_per_s": rate_during, "drop": drop, "before_cv": before_cv,
            "bucket_s": width,
            "long_started_at": long_start, "long_ended_at": long_end, "buckets_during": len(during)}


def rates_per_bucket(perf2, start):
    """(edges, rates) of a perf2 record's buckets, time relative to start. The last bucket may be cut short
    by the end of the run, so its rate is over the part that ran."""
    width = perf2["interval_s"]
    ended = perf2.get("ended_at")
    edges, bucket_rates = [], []
    for bucket_start, count in perf2["buckets"]:
        ran = min(width, ended - bucket_start) if ended and ended > bucket_start else width
        edges.append(bucket_start - start)
        bucket_rates.append(count / ran)
    edges.append(edges[-1] + width)
    return edges, bucket_rates
