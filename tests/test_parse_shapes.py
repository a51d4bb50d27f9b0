"""The parser's C shapes (postwatch/parse/_shapes.c) give exactly the events the Python
patterns give, on every real line and on hostile variants of the common shapes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC

from conftest import MAILLOGS
from test_corpus import FILES, corpus_lines

from bench.generate import generate
from postwatch.parse import Parser, events, smtpd
from postwatch.parse.syslog import Framer
from postwatch.records import LogLine

FAST, SLOW = Parser(), Parser(native=False)
SHAPES = (
    events.Connect, events.Disconnect, events.TlsEstablished, events.ClientAccepted,
    events.Removed, events.QueueActive, events.MessageId, events.Delivery,
    events.PostscreenVerdict, events.DovecotSession, events.ContentAction, events.DovecotLogin,
)  # fmt: skip


def _shapes(line: LogLine):
    assert FAST._shapes is not None, "the C parsing speedup was not built (setup.py)"
    return FAST._shapes(line)


def compare(lines: Iterable[LogLine]) -> tuple[Counter[str], Counter[str]]:
    """(events per kind, events the C shapes gave per kind); every C event equals Python's."""
    seen: Counter[str] = Counter()
    claimed: Counter[str] = Counter()
    for line in lines:
        want = SLOW(line)  # fills the counter memo first, as a parse in Python would
        got = _shapes(line)
        seen[type(want).__name__] += 1
        if got is not None:
            assert type(got) is type(want), (line.message, got, want)
            assert got == want, line.message
            claimed[type(got).__name__] += 1
    return seen, claimed


def _framed(paths) -> list[LogLine]:
    framer = Framer(tz=UTC, year=2026)
    lines = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        lines += framer.frame_lines(text.splitlines(), str(path))
    return lines


def test_real_lines_and_fixtures_give_the_same_events(corpus):
    """Every real corpus line, annotated sample and fixture log line: the same event."""
    lines = [line for path in FILES for line in corpus_lines(path)]
    lines += _framed(sorted(MAILLOGS.rglob("*.log")))
    _, claimed = compare(lines)
    assert len(lines) > 30_000
    for shape in SHAPES:  # the C path is used on each shape, not only left to Python
        assert claimed[shape.__name__] > 50, shape.__name__
    # the batch call the pipeline makes gives the events of a call per line, either way
    python = [SLOW(line) for line in lines]
    assert Parser().parse_all(lines) == python
    assert Parser(native=False).parse_all(lines) == python


def test_generated_traffic_is_read_in_c(tmp_path):
    """On a busy server's traffic (short and long queue IDs, both stamp styles) the C shapes
    take nearly every line of their kinds, with the Python parser's events."""
    for long_ids, stamps in ((False, "traditional"), (True, "rfc3339")):
        path = tmp_path / f"{long_ids}.log"
        generate(path, 20_000, seed=5, accounts=40, long_ids=long_ids, stamps=stamps)
        seen, claimed = compare(_framed([path]))
        for shape in SHAPES:  # postscreen's rarer verdicts (DNSBL, PREGREET...) are Python's
            name = shape.__name__
            share = 0.8 if shape is events.PostscreenVerdict else 0.95
            assert claimed[name] >= share * seen[name] > 0, (long_ids, name)


TS = Framer(tz=UTC, year=2026)("Nov 23 10:00:00 mx postfix/qmgr[1]: x").ts
# One real-shaped line of each kind, with every optional field present somewhere.
SEEDS = [
    ("postfix/smtpd", "connect from mail.example.net[192.0.2.10]:52103"),
    ("postfix/submission/smtpd", "disconnect from unknown[198.51.100.7] ehlo=1 auth=0/1 commands=1/2"),
    ("postfix/smtpd", "disconnect from unknown[198.51.100.7]:61000 ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4"),
    ("postfix/smtpd", "Anonymous TLS connection established from a.example[192.0.2.1]:4000: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
    ("postfix/smtp", "Verified TLS connection established to mx.example.org[203.0.113.5]:25: TLSv1.2 with cipher ECDHE-RSA-AES256-GCM-SHA384 (256/256 bits)"),
    ("postfix/submission/smtpd", "3B7C61E0041: client=unknown[198.51.100.7]:61000, sasl_method=LOGIN, sasl_username=alice@example.com"),
    ("postfix/smtpd", "4Xk9Lm2Pq5zB7c: client=mail.example.net[192.0.2.10]"),
    ("postfix/qmgr", "3B7C61E0041: from=<alice@example.com>, size=1520, nrcpt=2 (queue active)"),
    ("postfix/qmgr", "3B7C61E0041: removed"),
    ("postfix/qmgr", "3B7C61E0041: from=<>, size=3012, nrcpt=1 (queue active)"),
    ("postfix/cleanup", "3B7C61E0041: message-id=<20261123.abc@example.com>"),
    ("postfix/smtp", "3B7C61E0041: to=<bob@example.org>, orig_to=<b@example.org>, relay=mx.example.org[203.0.113.5]:25, conn_use=2, delay=1.2, delays=0.1/0/0.5/0.6, tls=TLSv1.3, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9F1E2D3C4B)"),
    ("postfix/local", "3B7C61E0041: to=<carol@example.com>, relay=local, delay=0.05, delays=0.01/0/0/0.04, dsn=5.1.1, tls=none, status=bounced (unknown user: \"carol\")"),
    ("postfix/postscreen", "CONNECT from [192.0.2.1]:45334 to [203.0.113.25]:25"),
    ("postfix/postscreen", "PASS NEW [2001:db8::7]:5000"),
    ("dovecot", "lmtp(887185): Connect from local"),
    ("dovecot", "imap(alice@example.com)<4312><kPqVw3M>: Logged out in=12 out=345"),
    ("dovecot", "lda(bob): Info: msgid=<x@example.com>: saved mail to INBOX"),
    ("dovecot", "lmtp(bob@example.com): Warn: quota exceeded"),
    ("postfix/sender-cleanup/cleanup", "03E7A13B001: replace: header MIME-Version: 1.0 from unknown[176.129.171.144]:4711; from=<laura@example.net> to=<noah@example.ru> proto=ESMTP helo=<smtpclient.apple>: Mime-Version: 1.0"),
    ("postfix/cleanup", "3B7C61E0041: warning: body spam text from a.example[192.0.2.1]; from=<> proto=SMTP"),
    ("postfix/cleanup", "3B7C61E0041: reject: header Subject: hi from local; from=<www-data@example.com> to=<x@example.org>: 5.7.1 no"),
    ("dovecot", "imap-login: Login: user=<s.mueller@example.net>, method=PLAIN, rip=128.78.225.6, lip=203.0.113.25, mpid=887231, TLS, session=<oMWsnWTtH5Ih6N+a>"),
    ("dovecot", "pop3-login: Info: Logged in: user=<dino>, PID=12140, method=PLAIN, rip=2001:db8::1, lip=192.168.190.13, secured"),
    ("postfix/lmtp", "4Xk9Lm2Pq5zB7c: to=<dave@example.com>, relay=mail.example.com[private/dovecot-lmtp], delay=0.49, dsn=2.0.0, status=sent (250 2.0.0 <dave@example.com> Saved; forwarded as 4Xk9Lm2Pq6zB7d)"),
]  # fmt: skip
# What attackers put in addresses, login names and replies, and what breaks a field.
TRICKS = [
    "<", ">", '"', "[", "]", ":", ",", " ", "(", ")", "=", "/", ".", "-", "z", "w", "0", "9", "A",
    "000", "12345678901",
    "\n", "\t", "\xa0", "\u2028", "\u0665", "\u00b2", "\U0001f600",
    ", sasl_username=", ", sasl_sender=<x>", ", orig_client=a[1.2.3.4]", ", status=sent",
    ", dsn=2.0.0", ", tls=x", ", delay=", ", conn_use=1", " (queue active)", ", size=1",
    "queued as 0123456789AB", "forwarded as 4Xk9Lm2Pq5zB7c", "1234567890123456", ": ",
    " with cipher ", "]: ", "to=<", ", orig_to=<",
    "; from=<", "; to=<", " proto=", " helo=<", " from ", "header ", "milter-", ": 5.7.1 x",
    "user=<", ", method=", ", PID=7", "rip=", " rip=10.0.0.1", ",lip=", "session=<", "TLS",
]  # fmt: skip


def variants() -> list[tuple[str, str]]:
    """Each seed line with a character taken out, or a trick put in or in its place, at
    every position."""
    out: list[tuple[str, str]] = []
    for program, message in SEEDS:
        for at in range(len(message) + 1):
            out.append((program, message[:at] + message[at + 1 :]))
            for trick in TRICKS:
                out.append((program, message[:at] + trick + message[at:]))
                out.append((program, message[:at] + trick + message[at + 1 :]))
    return out


def test_hostile_variants_give_the_same_events():
    """Tens of thousands of damaged and attacker-shaped variants of the common shapes: the C
    path gives Python's event or leaves the line to Python, never another reading."""
    smtpd.COUNTERS.clear()
    lines = [
        LogLine(TS, "mx", program, 1, message, "x", n)
        for n, (program, message) in enumerate(variants())
    ]
    lines += [  # the same lines under daemons that never write them
        line._replace(program=program)
        for program in ("postfix/qmgr", "postfix/local", "postfix/pickup")
        for line in lines[::10]
    ]
    seen, claimed = compare(lines)
    for shape in SHAPES:  # variants that still read as the shape were read in C
        assert claimed[shape.__name__] >= 100, shape.__name__
    assert sum(seen.values()) - sum(claimed.values()) > 50_000  # the rest left to Python


def test_a_new_disconnect_tail_is_read_in_python_first():
    """The C path reads only counter texts the Python parser has read (and memoised):
    a new one is Python's, the next line with it is C's, with the same counters."""
    smtpd.COUNTERS.clear()
    line = LogLine(
        TS, "mx", "postfix/smtpd", 1, "disconnect from a[192.0.2.1] ehlo=1 quit=1", "x", 1
    )
    assert _shapes(line) is None
    event = FAST(line)
    assert event.counters == (("ehlo", 1, 1), ("quit", 1, 1))
    assert _shapes(line) == event
