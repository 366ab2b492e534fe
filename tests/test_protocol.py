"""The wire protocol's framers (server/protocol.py), fed bytes directly: no server, no socket.

What the wire accepts (docs/servers.md, "The wire protocol"): the article's bare number (perf1 and perf2
send b'30', and whatever one recv() returned is one whole request until the connection first sends a
newline), and lines as nc sends them (b'30\\n', b'30\\r\\n', several in one send); an unterminated tail
of a line client waits for the rest of its line. A request longer than MAX_REQUEST bytes is refused and
the connection closed; other bad requests are refused with the connection left open.
"""
import pytest

from server.protocol import MAX_REQUEST, TOO_LONG, ChunkFramer, LineFramer, Refusal, fib_reply, refuse
from server.service import Service

pytestmark = pytest.mark.fast

MAX_N = 40
TOO_LONG_REPLY = b"ERR request longer than 64 bytes\n"


def feeds(*chunks, max_n=MAX_N):
    """What one connection's framer returns for each chunk, one list per recv()."""
    framer = LineFramer(max_n)
    return [framer.feed(chunk) for chunk in chunks]


def refused(reason):
    """The Refusal that leaves the connection open, as the client reads it."""
    return Refusal(b"ERR " + reason + b"\n", False)


# ---------------------------------------------------------------- what a request is


@pytest.mark.parametrize("chunk, n", [
    (b"30", 30),  # the article's perf1/perf2: sock.send(b'30')
    (b"0", 0),
    (b"40", 40),
    (b" 30 ", 30),
    (b"30\r", 30),
    (b"007", 7),
])
def test_a_bare_number_without_newline_is_one_whole_request(chunk, n):
    assert feeds(chunk) == [[n]]


@pytest.mark.parametrize("chunk, n", [
    (b"30\n", 30),  # nc
    (b"30\r\n", 30),  # telnet
    (b"  30\t\n", 30),
    (b"0\n", 0),
])
def test_a_line_is_one_request_whatever_whitespace_surrounds_it(chunk, n):
    assert feeds(chunk) == [[n]]


def test_each_recv_of_a_bare_client_is_a_request_of_its_own():
    # perf2 sends b'1' again and again: each recv() is one request, even if it brought only part of
    # what the client meant (documented: a bare client's number must arrive in one piece).
    assert feeds(b"1", b"1", b"3", b"0") == [[1], [1], [3], [0]]


def test_several_lines_in_one_feed_are_several_requests_in_order():
    assert feeds(b"1\n2\n30\r\n4\n") == [[1, 2, 30, 4]]


def test_a_line_split_across_feeds_waits_for_its_newline():
    # docs/servers.md: "so `2\n2` then `0\n` is fib(2) and then fib(20)".
    assert feeds(b"2\n2", b"0\n") == [[2], [20]]


def test_an_unterminated_tail_waits_over_many_feeds_until_its_newline():
    assert feeds(b"5\n", b" ", b"3", b"", b"2", b"\r", b"\n") == [[5], [], [], [], [], [], [32]]


def test_the_tail_after_the_last_newline_starts_the_next_request():
    framer = LineFramer(MAX_N)
    assert framer.feed(b"10\n11\n1") == [10, 11]
    assert framer.pending == b"1"
    assert framer.feed(b"2\n") == [12]
    assert framer.pending == b""


def test_a_bare_client_that_sends_a_newline_becomes_a_line_client_for_good():
    # The bare b"3" is answered at once; the later b"\n" is an empty line of its own; from then on a
    # chunk without a newline waits.
    assert feeds(b"3", b"\n", b"4", b"\n") == [[3], [refused(b"empty request")], [], [4]]


# ---------------------------------------------------------------- refusals that keep the connection


@pytest.mark.parametrize("chunk, reason", [
    (b"\n", b"empty request"),
    (b"\r\n", b"empty request"),
    (b"   \n", b"empty request"),
    (b"abc\n", b"not an integer"),
    (b"3 0\n", b"not an integer"),
    (b"4.5\n", b"not an integer"),
    (b"+5\n", b"not an integer"),
    (b"0x1f\n", b"not an integer"),
    (b"-\n", b"not an integer"),
    (b"\x00\n", b"not an integer"),
    (b"\xd9\xa3\n", b"not an integer"),  # an Arabic-Indic three: a digit to str.isdigit(), not on the wire
    (b"-5\n", b"n must not be negative"),
    (b" -12\r\n", b"n must not be negative"),
    (b"41\n", b"n=41 is above the limit 40"),
    (b"99999999999999999999\n", b"n=99999999999999999999 is above the limit 40"),
    (b"garbage", b"not an integer"),  # a bare request too
    (b"-3", b"n must not be negative"),
    (b"41", b"n=41 is above the limit 40"),
])
def test_a_bad_request_is_refused_with_its_reason_and_the_connection_stays_open(chunk, reason):
    assert feeds(chunk) == [[refused(reason)]]


def test_a_refused_line_does_not_disturb_the_requests_around_it():
    assert feeds(b"1\nx\n-2\n\n3\n") == [
        [1, refused(b"not an integer"), refused(b"n must not be negative"), refused(b"empty request"), 3]]


@pytest.mark.parametrize("max_n, accepted, refused_n", [(40, 40, 41), (0, 0, 1), (35, 35, 36), (1000, 1000, 1001)])
def test_max_n_is_the_largest_n_accepted(max_n, accepted, refused_n):
    request = b"%d\n%d\n" % (accepted, refused_n)
    assert feeds(request, max_n=max_n) == [[accepted, refused(b"n=%d is above the limit %d" % (refused_n, max_n))]]


# ---------------------------------------------------------------- the limit on a request's length


def test_too_long_is_the_refusal_that_closes_the_connection():
    assert MAX_REQUEST == 64
    assert TOO_LONG == Refusal(TOO_LONG_REPLY, True)
    assert refuse("x") == Refusal(b"ERR x\n", False)
    assert refuse("x", close=True) == Refusal(b"ERR x\n", True)


@pytest.mark.parametrize("newline", [b"", b"\n"], ids=["bare", "line"])
def test_a_request_of_max_request_bytes_is_accepted(newline):
    request = b"0" * (MAX_REQUEST - 2) + b"17"
    assert len(request) == MAX_REQUEST
    assert feeds(request + newline) == [[17]]


@pytest.mark.parametrize("newline", [b"", b"\n"], ids=["bare", "line"])
def test_a_request_one_byte_over_max_request_is_refused_and_closes(newline):
    assert feeds(b"0" * MAX_REQUEST + b"1" + newline) == [[TOO_LONG]]


def test_a_space_padded_request_counts_its_padding_toward_the_limit():
    assert feeds(b" " * (MAX_REQUEST - 1) + b"7\n", b" " * MAX_REQUEST + b"7\n") == [[7], [TOO_LONG]]


def test_a_bare_request_of_ten_thousand_digits_is_refused_at_once():
    assert feeds(b"9" * 10_000) == [[TOO_LONG]]


def test_an_unterminated_tail_over_the_limit_is_refused_without_waiting_for_its_newline():
    assert feeds(b"1\n" + b"9" * (MAX_REQUEST + 1)) == [[1, TOO_LONG]]


def test_an_unterminated_tail_of_exactly_the_limit_still_waits():
    assert feeds(b"1\n" + b"0" * MAX_REQUEST, b"\n") == [[1], [0]]


def test_a_tail_that_grows_over_the_limit_across_feeds_is_refused_when_it_crosses_it():
    half = MAX_REQUEST // 2
    assert feeds(b"1\n" + b"0" * half, b"0" * half, b"0") == [[1], [], [TOO_LONG]]


def test_a_too_long_line_among_good_ones_is_refused_in_its_place():
    assert feeds(b"1\n" + b"8" * 100 + b"\n2\n") == [[1, TOO_LONG, 2]]


def test_a_session_answers_in_order_and_stops_at_the_refusal_that_closes():
    """The framer yields what follows a too-long line; the session (server/service.py) sends nothing
    after it, since the connection closes there."""
    session = Service(max_n=MAX_N).session(None, compute=fib_reply)
    data = b"10\nx\n41\n" + b"9" * 70 + b"\n5\n"
    assert list(session.replies(data)) == [
        (b"55\n", False), refused(b"not an integer"), refused(b"n=41 is above the limit 40"), (TOO_LONG_REPLY, True)]


# ---------------------------------------------------------------- the echo handler's framer


@pytest.mark.parametrize("chunk", [b"x\n", b"30", b"1\n2\n3\n", b"", b"\x00" * 5000, b"9" * 10_000])
def test_the_chunk_framer_returns_every_chunk_unchanged_as_one_request(chunk):
    assert ChunkFramer().feed(chunk) == [chunk]


def test_the_chunk_framer_keeps_nothing_between_chunks():
    framer = ChunkFramer()
    assert [framer.feed(chunk) for chunk in (b"ab", b"c\n", b"d")] == [[b"ab"], [b"c\n"], [b"d"]]


# ---------------------------------------------------------------- the reply a client checks against


@pytest.mark.parametrize("n, reply", [(0, b"0\n"), (1, b"1\n"), (2, b"1\n"), (10, b"55\n"), (30, b"832040\n"),
                                      (40, b"102334155\n")])
def test_fib_reply_is_fib_n_in_decimal_and_a_newline(n, reply):
    assert fib_reply(n) == reply
