"""The parser's and framer's memos (text seen before -> what it was split into) stay bounded
and never change what a line gives: a remembered answer equals a fresh one.

Lines are real ones (sources in fixtures/maillogs/samples) with the varying parts renumbered.
"""

from __future__ import annotations

from datetime import UTC, datetime

from postwatch.parse import Parser, dovecot, smtpd
from postwatch.parse.syslog import _CACHE_LIMIT, Framer
from postwatch.records import LogLine

TS = datetime(2026, 2, 18, 9, 48, 4, tzinfo=UTC)
# fail2ban/postfix.log (GPL-2.0)
DISCONNECT = "disconnect from unknown[192.0.2.23] ehlo=1 auth=0/1 rset=1 commands={n}/3"
# modoboa/mail.log.rendered (ISC): Dovecot through syslog, a delivery session and its pid
LMTP_USER = (
    "lmtp(user{n}@test.com): z5FOLrRhDVpddgAABvoInA: sieve: "
    "msgid=<cm.2100050552286.huticd.jyidyhxuy.y@cmail19.com>: stored mail into mailbox 'notifications'"
)
LMTP_PID = "lmtp({n}): Connect from local"
# aminer-aitlds/dovecot.log (GPL-3.0)
IMAP_LOGOUT = "imap({user}): Logged out in=79 out=875"
# postfix_exporter/digineo-testdata-mail.log (Apache-2.0)
SYSLOG = (
    "Sep 23 15:57:41 mail postfix/submission/smtpd[{pid}]: disconnect from unknown[fe80::1:2:3:4]"
)


def smtpd_line(message: str) -> LogLine:
    return LogLine(TS, "xxx", "postfix/smtpd", 50903, message)


def test_disconnect_counter_memo_stays_bounded():
    """Counter texts beyond the memo's limit clear it; each line still gets its own counters."""
    parser = Parser()
    for n in range(smtpd.COUNTERS_LIMIT + 50):
        event = parser(smtpd_line(DISCONNECT.format(n=n)))
        assert event.counters[-1] == ("commands", n, 3)
        assert len(smtpd.COUNTERS) <= smtpd.COUNTERS_LIMIT


def test_long_counter_text_is_not_remembered():
    """A counter text longer than the key limit is parsed every time and never stored."""
    smtpd.COUNTERS.clear()
    tail = " ehlo=1" * (smtpd.COUNTERS_KEY_LENGTH // 7 + 1)
    event = Parser()(smtpd_line(f"disconnect from unknown[192.0.2.23]{tail}"))
    assert event.counters == (("ehlo", 1, 1),) * (smtpd.COUNTERS_KEY_LENGTH // 7 + 1)
    assert smtpd.COUNTERS == {}


def test_remembered_counters_equal_fresh_ones():
    """The second line with the same counter text gives the counters the first one did."""
    parser = Parser()
    smtpd.COUNTERS.clear()
    first = parser(smtpd_line(DISCONNECT.format(n=2)))
    second = parser(smtpd_line(DISCONNECT.format(n=2)))
    assert first == second
    assert first.counters == (("ehlo", 1, 1), ("auth", 0, 1), ("rset", 1, 1), ("commands", 2, 3))


def test_malformed_counters_are_not_a_disconnect():
    """A disconnect tail that is not counters leaves the line to the other patterns."""
    event = Parser()(smtpd_line("disconnect from unknown[192.0.2.23] ehlo=1 x"))
    assert event.kind != "disconnect"


def test_dovecot_component_memo_stays_bounded():
    """Distinct process components beyond the limit clear the memo; users stay each line's own."""
    parser = Parser()
    for n in range(dovecot.COMPONENTS_LIMIT + 50):
        event = parser(LogLine(TS, "server", "dovecot", None, LMTP_USER.format(n=n)))
        assert (event.kind, event.user) == ("dovecot_session", f"user{n}@test.com")
        assert len(dovecot.COMPONENTS) <= dovecot.COMPONENTS_LIMIT


def test_dovecot_component_memo_keeps_pid_and_user_apart():
    """lmtp(PID) gives no user and lmtp(user) its user, whichever was seen first."""
    parser = Parser()
    dovecot.COMPONENTS.clear()
    for _ in range(2):
        by_pid = parser(LogLine(TS, "server", "dovecot", None, LMTP_PID.format(n=30301)))
        by_user = parser(LogLine(TS, "server", "dovecot", None, LMTP_USER.format(n=7)))
        assert (by_pid.kind, by_pid.user) == ("dovecot_session", "")
        assert (by_user.kind, by_user.user) == ("dovecot_session", "user7@test.com")


def test_long_dovecot_component_is_not_remembered():
    """A component longer than the key limit (a crafted user name) is never stored."""
    dovecot.COMPONENTS.clear()
    user = "u" * dovecot.MEMO_KEY_LENGTH
    event = Parser()(LogLine(TS, "server", "dovecot", None, IMAP_LOGOUT.format(user=user)))
    assert (event.kind, event.user) == ("dovecot_session", user)
    assert dovecot.COMPONENTS == {}


def test_framer_head_memo_stays_bounded():
    """Framing lines from more processes than the memo holds keeps it bounded and exact."""
    framer = Framer(tz=UTC, year=2026)
    texts = [SYSLOG.format(pid=pid) for pid in range(1, 5000)]
    for pid, line in enumerate(framer.frame_lines(texts), 1):
        assert (line.host, line.program, line.pid) == ("mail", "postfix/submission/smtpd", pid)
        assert len(framer._heads) <= _CACHE_LIMIT


def test_framer_head_memo_equals_framing_one_by_one():
    """A remembered head frames a line exactly as framing it alone does, odd heads included."""
    heads = [
        "mail postfix/smtpd[1]",
        "mail dovecot",
        "mail postfix/smtpd[x]",
        "mail a b[12]",
        "mail: postfix/smtpd[1]",
        " postfix/smtpd[3]",
        " a b[12]",
        " dovecot",
        "mail postfix/smtpd[1[2]",
    ]
    messages = (
        "disconnect from unknown[fe80::1:2:3:4]",
        # fail2ban/postfix.log (GPL-2.0): a message ending in ":" frames differently without host
        "improper command pipelining after DATA from unknown[181.21.131.88]:",
    )
    texts = [f"Sep 23 15:57:41 {head}: {message}" for head in heads for message in messages]
    texts += texts
    streamed = list(Framer(tz=UTC, year=2026).frame_lines(texts))
    one_by_one = Framer(tz=UTC, year=2026)
    assert streamed == [one_by_one(text, n) for n, text in enumerate(texts, 1)]
