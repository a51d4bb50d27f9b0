"""The correlator joins real log lines into messages and sessions, with bounded memory."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import pytest
from conftest import MAILLOGS

from postwatch.correlate import Correlator
from postwatch.detect.delivery import is_filter_hop
from postwatch.parse import Parser
from postwatch.parse.syslog import Framer
from postwatch.records import Accepted, Completed, Delivered, SessionEnded

CASES = sorted(path.stem for path in (MAILLOGS / "correlate").glob("*.log"))


def correlate(text: str, correlator: Correlator | None = None) -> list:
    framer, parser = Framer(tz=UTC, year=2026), Parser()
    correlator = correlator or Correlator()
    records = []
    for raw in text.splitlines():
        if raw and not raw.startswith("#"):
            records += correlator.feed(parser(framer(raw)))
    return records + correlator.close()


def message_summary(message) -> dict:
    return {
        "host": message.host,
        "queue_id": message.queue_id,
        "service": message.service,
        "client": f"{message.client_name}[{message.client_ip}]",
        "sasl_username": message.sasl_username,
        "pickup_uid": message.pickup_uid,
        "sender": message.sender,
        "nrcpt": message.nrcpt,
        "message_id": message.message_id,
        "outcomes": {o.recipient: o.status for o in message.outcomes},
        "orig_queue_id": message.orig_queue_id,
        "complete": message.complete,
    }


@pytest.mark.parametrize("case", CASES)
def test_golden_messages(case):
    """Every completed message of a real log matches its hand-checked golden record."""
    text = (MAILLOGS / "correlate" / f"{case}.log").read_text()
    golden = json.loads((MAILLOGS / "correlate" / f"{case}.golden.json").read_text())
    records = correlate(text)
    completed = [message_summary(r.message) for r in records if isinstance(r, Completed)]
    accepted = [r.message.queue_id for r in records if isinstance(r, Accepted)]
    assert completed == golden["completed"]
    assert accepted == golden["accepted"]


SUBMISSION = """\
Nov 23 10:00:00 mx postfix/submission/smtpd[100]: connect from unknown[203.0.113.9]
Nov 23 10:00:01 mx postfix/submission/smtpd[100]: warning: unknown[203.0.113.9]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
Nov 23 10:00:02 mx postfix/submission/smtpd[100]: 3F1A2B4C5D: client=unknown[203.0.113.9], sasl_method=LOGIN, sasl_username=victim@example.com
Nov 23 10:00:02 mx postfix/cleanup[101]: 3F1A2B4C5D: message-id=<spam1@example.com>
Nov 23 10:00:02 mx postfix/qmgr[102]: 3F1A2B4C5D: from=<victim@example.com>, size=900, nrcpt=2 (queue active)
Nov 23 10:00:03 mx postfix/submission/smtpd[100]: disconnect from unknown[203.0.113.9] ehlo=1 auth=1/2 mail=1 rcpt=2 data=1 quit=1 commands=7/8
Nov 23 10:00:04 mx postfix/smtp[103]: 3F1A2B4C5D: to=<a@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=2, delays=0.1/0/1/0.9, dsn=4.7.0, status=deferred (host mx.example.net[198.51.100.1] said: 421 4.7.0 Try again later (in reply to end of DATA command))
Nov 23 10:00:04 mx postfix/smtp[103]: 3F1A2B4C5D: to=<b@example.org>, relay=mx.example.org[198.51.100.2]:25, delay=2, delays=0.1/0/1/0.9, dsn=5.7.1, status=bounced (host mx.example.org[198.51.100.2] said: 550 5.7.1 Message rejected as spam (in reply to end of DATA command))
"""


def test_submission_session_and_message_are_joined():
    """A SASL submission gives one Accepted, a Delivered per recipient and one ended session."""
    records = correlate(SUBMISSION)
    accepted = [r for r in records if isinstance(r, Accepted)]
    delivered = [r for r in records if isinstance(r, Delivered)]
    sessions = [r.session for r in records if isinstance(r, SessionEnded)]
    assert len(accepted) == 1
    message = accepted[0].message
    assert (message.sasl_username, message.client_ip, message.nrcpt, message.service) == (
        "victim@example.com",
        "203.0.113.9",
        2,
        "postfix/submission",
    )
    assert [d.outcome.status for d in delivered] == ["deferred", "bounced"]
    assert all(d.message.sasl_username == "victim@example.com" for d in delivered)
    assert len(sessions) == 1
    session = sessions[0]
    assert (session.auth_failures, session.sasl_usernames, session.queue_ids) == (
        1,
        ("victim@example.com",),
        ("3F1A2B4C5D",),
    )
    assert ("auth", 1, 2) in session.counters


def test_reused_queue_id_starts_a_new_message():
    """A second client= for a queue ID never merges two messages into one."""
    text = SUBMISSION.splitlines()
    again = [line.replace("10:00:0", "11:00:0").replace("victim@", "other@") for line in text]
    records = correlate("\n".join(text + again))
    accepted = [r.message.sasl_username for r in records if isinstance(r, Accepted)]
    assert accepted == ["victim@example.com", "other@example.com"]


# Dovecot's submission service relays through Postfix's smtpd on 127.0.0.1 without naming the
# login (no XCLIENT); both log into one file, as the end-to-end harness has them write it.
DOVECOT_RELAY = """\
Nov 24 00:18:39 submission-login: Info: Login: user=<alice@example.com>, method=PLAIN, rip=203.0.113.7, lip=127.0.0.1, mpid=8901, session=<fKb8pvpgQJzBnpe4>
Nov 24 00:18:39 mail postfix/smtpd[8893]: connect from localhost[127.0.0.1]
Nov 24 00:18:39 mail postfix/smtpd[8893]: NOQUEUE: permit: RCPT from localhost[127.0.0.1]: action=permit_mynetworks for Client host=localhost[127.0.0.1] ; from=<alice@example.com> to=<anna@example.net> proto=ESMTP helo=<mail.example.com>
Nov 24 00:18:39 mail postfix/smtpd[8893]: E750A248C84: client=localhost[127.0.0.1]
Nov 24 00:18:39 mail postfix/cleanup[8902]: E750A248C84: message-id=<20261124001839.E750A248C84@mail.example.com>
Nov 24 00:18:39 mail postfix/qmgr[8887]: E750A248C84: from=<alice@example.com>, size=347, nrcpt=1 (queue active)
Nov 24 00:18:39 submission(alice@example.com)<8901><fKb8pvpgQJzBnpe4>: Info: Successfully relayed message: from=<alice@example.com>, size=139, id=ZFuqN9/XBGvFIgAAg+zDdQ, nrcpt=1, reply=`250 2.0.0 Ok: 347 bytes queued as E750A248C84'
Nov 24 00:18:39 mail postfix/smtpd[8893]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 commands=5
Nov 24 00:18:39 mail postfix/smtp[8903]: E750A248C84: to=<anna@example.net>, relay=127.0.0.1[127.0.0.1]:40111, delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)
Nov 24 00:18:39 mail postfix/qmgr[8887]: E750A248C84: removed
Nov 24 00:18:40 submission-login: Info: Login: user=<alice@example.com>, method=PLAIN, rip=198.51.100.23, lip=127.0.0.1, mpid=8912, session=<v+cMp/pgQJzBnpe4>
Nov 24 00:18:40 mail postfix/smtpd[8893]: connect from localhost[127.0.0.1]
Nov 24 00:18:40 mail postfix/smtpd[8893]: 00D99248C81: client=localhost[127.0.0.1]
Nov 24 00:18:40 mail postfix/qmgr[8887]: 00D99248C81: from=<alice@example.com>, size=347, nrcpt=1 (queue active)
Nov 24 00:18:41 submission(alice@example.com)<8912><v+cMp/pgQJzBnpe4>: Info: Successfully relayed message: from=<alice@example.com>, size=139, id=FHgCAOHXBGvQIgAAg+zDdQ, nrcpt=1, reply=`250 2.0.0 Ok: 347 bytes queued as 00D99248C81'
Nov 24 00:18:41 mail postfix/smtpd[8893]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 commands=5
Nov 24 00:18:41 mail postfix/smtpd[8893]: connect from localhost[127.0.0.1]
Nov 24 00:18:41 mail postfix/smtpd[8893]: 11E2A248C90: client=localhost[127.0.0.1], sasl_method=PLAIN, sasl_username=webmail-user@example.com
Nov 24 00:18:41 mail postfix/qmgr[8887]: 11E2A248C90: from=<webmail-user@example.com>, size=512, nrcpt=1 (queue active)
Nov 24 00:18:42 mail postfix/smtp[8903]: 11E2A248C90: to=<ben@example.org>, relay=127.0.0.1[127.0.0.1]:40111, delay=0.02, delays=0.01/0.01/0/0, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)
"""


def test_dovecot_submission_gives_the_message_its_login():
    """A message Dovecot's submission relayed is its login's, from the login's address, and
    without the relay's name and HELO.  Once the relay is known, a message from it waits for
    Dovecot's line before it is Accepted; one that never gets a line (a webmail on the same
    address) is Accepted at its first delivery attempt.  The first one, Accepted before the
    relay was known, is Accepted again with its login."""
    records = correlate(DOVECOT_RELAY)
    completed = [r.message for r in records if isinstance(r, Completed)]
    first = completed[0]
    assert (first.sasl_username, first.client_ip, first.client_name, first.helo) == (
        "alice@example.com",
        "203.0.113.7",
        "",
        "",
    )
    assert (first.service, first.sasl_method) == ("dovecot/submission", "PLAIN")
    accepted = [(r.ts.second, r.message) for r in records if isinstance(r, Accepted)]
    # the first relayed message was accepted before its relay was known, and again with
    # its login when Dovecot's line named it
    assert [(second, m.queue_id, m.sasl_username) for second, m in accepted] == [
        (39, "E750A248C84", ""),
        (39, "E750A248C84", "alice@example.com"),
        (41, "00D99248C81", "alice@example.com"),
        (42, "11E2A248C90", "webmail-user@example.com"),
    ]
    assert accepted[1][1].client_ip == "203.0.113.7"
    assert accepted[2][1].client_ip == "198.51.100.23"
    assert accepted[3][1].client_ip == "127.0.0.1"


def test_xclient_login_from_dovecot_keeps_postfixs_record():
    """With ``submission_relay_trusted`` Postfix already names the login (XCLIENT): nothing
    is replaced and the relay's address is not learned (messages are Accepted at once)."""
    trusted = DOVECOT_RELAY.replace(
        "client=localhost[127.0.0.1]\n",
        "client=unknown[203.0.113.7], sasl_method=XCLIENT, sasl_username=alice@example.com\n",
    )
    records = correlate(trusted)
    accepted = [r for r in records if isinstance(r, Accepted)]
    assert [r.ts.second for r in accepted] == [39, 40, 41]
    first = accepted[0].message
    assert (first.client_ip, first.service, first.sasl_method) == (
        "203.0.113.7",
        "postfix",
        "XCLIENT",
    )


CONTENT_FILTER = """\
Nov 23 10:00:00 mx postfix/submission/smtpd[100]: 1111111111: client=unknown[203.0.113.9], sasl_method=PLAIN, sasl_username=victim@example.com
Nov 23 10:00:00 mx postfix/qmgr[102]: 1111111111: from=<victim@example.com>, size=900, nrcpt=1 (queue active)
Nov 23 10:00:01 mx postfix/smtpd[200]: 2222222222: client=localhost[127.0.0.1]
Nov 23 10:00:01 mx postfix/qmgr[102]: 2222222222: from=<victim@example.com>, size=1200, nrcpt=1 (queue active)
Nov 23 10:00:01 mx postfix/smtp[103]: 1111111111: to=<a@example.net>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0.1/0/0/0.9, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 2222222222)
Nov 23 10:00:01 mx postfix/qmgr[102]: 1111111111: removed
Nov 23 10:00:02 mx postfix/smtp[104]: 2222222222: to=<a@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0.1/0/0/0.9, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 3333333333)
Nov 23 10:00:02 mx postfix/qmgr[102]: 2222222222: removed
"""


def test_content_filter_hop_inherits_the_sasl_user():
    """The re-injected hop of a local content filter carries the first hop's SASL user."""
    records = correlate(CONTENT_FILTER)
    second = [r for r in records if isinstance(r, Delivered) and r.message.queue_id == "2222222222"]
    assert second and second[0].message.sasl_username == "victim@example.com"
    assert second[0].message.orig_queue_id == "1111111111"


REMOTE_FILTER = CONTENT_FILTER.replace("127.0.0.1]:10024", "172.18.0.5]:10024").replace(
    "client=localhost[127.0.0.1]", "client=amavis.mail.internal[172.18.0.5]"
)


@pytest.mark.parametrize("order", ["reinjected first", "handed over first"])
def test_content_filter_elsewhere_links_when_its_address_queues_back(order: str) -> None:
    """A filter in a container or on the LAN (not loopback) hands the message back from its
    own address: the second hop carries the SASL user, and the hand-over is no outcome."""
    lines = REMOTE_FILTER.splitlines(keepends=True)
    if order == "handed over first":  # the filter's 250 is logged before its re-injection
        lines[2:5] = [lines[4], lines[2], lines[3]]
    records = correlate("".join(lines))
    second = [r for r in records if isinstance(r, Delivered) and r.message.queue_id == "2222222222"]
    assert second and second[0].message.sasl_username == "victim@example.com"
    assert second[0].message.orig_queue_id == "1111111111"
    first = [r for r in records if isinstance(r, Delivered) and r.message.queue_id == "1111111111"]
    if order == "reinjected first":
        assert is_filter_hop(first[0].message, first[0].outcome)


def test_a_queued_as_from_elsewhere_links_nothing_after_ten_minutes() -> None:
    """The next hop's client must be the relay's address, and soon: a queue ID that turns
    up from that address much later is another message."""
    late = REMOTE_FILTER.replace("10:00:01 mx postfix/smtpd[200]", "10:20:01 mx postfix/smtpd[200]")
    lines = late.splitlines(keepends=True)
    lines[2:5] = [
        lines[4],
        "Nov 23 10:15:00 mx postfix/smtpd[555]: connect from a.example[198.51.100.3]\n",
        lines[2],
        lines[3],
    ]
    records = correlate("".join(lines))
    second = [r for r in records if isinstance(r, Accepted) and r.message.queue_id == "2222222222"]
    assert second and second[0].message.sasl_username == ""


def test_remote_queued_as_links_nothing():
    """A remote MX's 'queued as ID' never links one of our messages to another."""
    records = correlate(
        SUBMISSION.replace(
            "status=bounced (host", "status=sent (250 2.0.0 Ok: queued as 4A4A4A4A4A) (host"
        )
        + "Nov 23 10:01:00 mx postfix/smtpd[300]: 4A4A4A4A4A: client=other.example[198.51.100.77]\n"
        "Nov 23 10:01:00 mx postfix/qmgr[102]: 4A4A4A4A4A: from=<x@other.example>, size=1, nrcpt=1 (queue active)\n"
    )
    later = [
        r.message for r in records if isinstance(r, Accepted) and r.message.queue_id == "4A4A4A4A4A"
    ]
    assert later and later[0].sasl_username == "" and later[0].orig_queue_id == ""


def test_stale_messages_and_sessions_expire():
    """A message without 'removed' and a session without 'disconnect' leave memory after the TTL."""
    correlator = Correlator(message_ttl=timedelta(hours=1), session_ttl=timedelta(minutes=10))
    head = "\n".join(SUBMISSION.splitlines()[:5])  # no disconnect, no removed
    correlate_records = []
    framer, parser = Framer(tz=UTC, year=2026), Parser()
    for raw in head.splitlines():
        correlate_records += correlator.feed(parser(framer(raw)))
    assert correlator.messages and correlator.sessions
    later = framer("Nov 23 12:00:00 mx postfix/smtpd[999]: connect from a.example[198.51.100.3]")
    flushed = correlator.feed(parser(later))
    assert not correlator.messages.get(("mx", "3F1A2B4C5D"))
    assert ("mx", 100) not in correlator.sessions
    incomplete = [r.message for r in flushed if isinstance(r, Completed)]
    assert [m.queue_id for m in incomplete] == ["3F1A2B4C5D"] and not incomplete[0].complete
