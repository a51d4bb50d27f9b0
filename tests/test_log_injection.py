"""Crafted client text never moves the user, IP or queue ID a record is attributed to.

Attackers choose HELO names, SASL user names, envelope addresses, header text and (as remote
servers) reply texts; Postfix and Dovecot log them verbatim.  Every line here is shaped like
a real record, with the attacker's text where Postfix or Dovecot would put it.  Addresses are
documentation ranges: 192.0.2.x is the real peer, 203.0.113.66 the one the attacker wants
blamed or hidden.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from postwatch.parse import Parser
from postwatch.parse.events import EVENT_TYPES
from postwatch.records import LogLine

PARSER = Parser()
TS = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
EVIL = "203.0.113.66"


def parse(program: str, message: str):
    return PARSER(LogLine(TS, "mx", program, 4242, message))


def smtpd(message: str):
    return parse("postfix/smtpd", message)


# --- HELO names ---------------------------------------------------------------------


def test_helo_naming_a_sasl_user_is_only_a_helo():
    """A HELO of 'x sasl_username=admin@victim.example' stays the HELO; no user is attributed."""
    event = smtpd(
        "NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 <r@example.org>: Relay "
        "access denied; from=<s@example.net> to=<r@example.org> proto=ESMTP "
        "helo=<x sasl_username=admin@victim.example>"
    )
    assert event.kind == "reject"
    assert event.helo == "x sasl_username=admin@victim.example"
    assert event.sasl_username == ""
    assert event.client_ip == "192.0.2.10"


def test_helo_with_brackets_cannot_pose_as_the_sasl_login():
    """A HELO ending in '> sasl_username=<x' stays HELO text: access checks never log logins."""
    event = smtpd(
        "NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 <r@example.org>: Relay "
        "access denied; from=<s@example.net> to=<r@example.org> proto=ESMTP "
        "helo=<x> sasl_username=<admin@victim.example>"
    )
    assert event.sasl_username == ""
    assert event.helo == "x> sasl_username=<admin@victim.example"
    assert (event.client_ip, event.sender) == ("192.0.2.10", "s@example.net")


def test_helo_imitating_a_second_tail_leaves_the_tail_unknown():
    """A HELO carrying its own '; from=<> to=<>' tail makes the tail unknown, never the fake one."""
    event = smtpd(
        "NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 <r@example.org>: Relay "
        "access denied; from=<s@example.net> to=<r@example.org> proto=ESMTP "
        "helo=<x>; from=<ceo@victim.example> to=<y@example.org> proto=ESMTP helo=<y>"
    )
    assert event.sender is None and event.recipient == "" and event.helo == ""
    assert event.client_ip == "192.0.2.10"


def test_helo_in_the_reply_text_does_not_move_the_client():
    """A HELO echoed in the reply text cannot replace the client name[addr] Postfix wrote."""
    event = smtpd(
        f"NOQUEUE: reject: EHLO from unknown[192.0.2.10]: 504 5.5.2 <x from evil[{EVIL}]: y>: "
        f"Helo command rejected: need fully-qualified hostname; proto=SMTP "
        f"helo=<x from evil[{EVIL}]: y>"
    )
    assert (event.kind, event.client_ip, event.stage) == ("reject", "192.0.2.10", "EHLO")


# --- envelope addresses ----------------------------------------------------------------


def test_recipient_containing_client_marker_stays_a_reject():
    """An address holding ']: client=' leaves a reject a reject with the real client."""
    event = smtpd(
        "NOQUEUE: reject: RCPT from mail.example.net[192.0.2.10]: 554 5.7.1 "
        f"<a]: client=evil[{EVIL}]@example.com>: Relay access denied; from=<s@example.net> "
        f"to=<a]: client=evil[{EVIL}]@example.com> proto=ESMTP helo=<mail.example.net>"
    )
    assert event.kind == "reject"
    assert event.client_ip == "192.0.2.10"


def test_sender_containing_client_marker_stays_a_queue_record():
    """A sender holding ']: client=name[addr]' on a qmgr line is only a sender."""
    event = parse(
        "postfix/qmgr",
        f"4B80DE08044: from=<a]: client=evil[{EVIL}]>, size=1, nrcpt=1 (queue active)",
    )
    assert event.kind == "queue_active"
    assert (event.queue_id, event.sender) == ("4B80DE08044", f"a]: client=evil[{EVIL}]")


def test_sender_imitating_fields_on_the_qmgr_line():
    """A sender '<a>, sasl_username=root' and fake counts cannot change size, nrcpt or the ID."""
    event = parse(
        "postfix/qmgr",
        "4B80DE08044: from=<<a>, sasl_username=root>, size=1, nrcpt=99 (queue active)>, "
        "size=2703, nrcpt=2 (queue active)",
    )
    assert (event.queue_id, event.size, event.nrcpt) == ("4B80DE08044", 2703, 2)
    assert event.sender == "<a>, sasl_username=root>, size=1, nrcpt=99 (queue active)"


def test_pickup_sender_cannot_add_fields():
    """A local sender (sendmail -f) of 'x> orig_id=ABCDEF123' is all sender."""
    event = parse("postfix/pickup", "69EADD0808B: uid=33 from=<x> orig_id=ABCDEF123>")
    assert (event.kind, event.uid, event.sender) == ("pickup", 33, "x> orig_id=ABCDEF123")


# --- the client= line, field by field (smtpd_sasl_proto.c order) -------------------------

CLIENT = "4B80DE08044: client=mail.example.net[192.0.2.10]:4711"


def test_client_line_sasl_method():
    """sasl_method is the mechanism name up to the next field."""
    event = smtpd(f"{CLIENT}, sasl_method=PLAIN, sasl_username=bob@example.com")
    assert (event.sasl_method, event.client_ip, event.client_port) == ("PLAIN", "192.0.2.10", 4711)


def test_client_line_sasl_username_with_method_text():
    """A login name holding ', sasl_method=X' stays whole; the method is the first one."""
    event = smtpd(f"{CLIENT}, sasl_method=PLAIN, sasl_username=bob, sasl_method=LOGIN")
    assert (event.sasl_method, event.sasl_username) == ("PLAIN", "bob, sasl_method=LOGIN")


def test_client_line_sasl_sender_cannot_replace_the_login():
    """A MAIL FROM AUTH= sender '<a>, sasl_username=root' never replaces the login name."""
    event = smtpd(
        f"{CLIENT}, sasl_method=PLAIN, sasl_username=bob, sasl_sender=<a>, sasl_username=root"
    )
    assert event.sasl_username == "bob"
    assert event.sasl_sender == "<a>, sasl_username=root"


def test_client_line_sasl_sender_cannot_fake_the_origin():
    """A sender posing as ', orig_queue_id=..., orig_client=...' stays sender text."""
    event = smtpd(
        f"{CLIENT}, sasl_method=PLAIN, sasl_username=bob, sasl_sender=x, "
        f"orig_queue_id=ABCDEF123, orig_client=evil[{EVIL}] y"
    )
    assert (event.sasl_username, event.orig_queue_id, event.orig_client) == ("bob", "", "")
    assert event.sasl_sender.startswith("x, orig_queue_id=ABCDEF123")


def test_client_line_orig_queue_id_and_orig_client():
    """After a content filter, orig_queue_id and orig_client follow the client, in that order."""
    event = smtpd(
        "1FEB7E00C4: client=localhost[127.0.0.1], orig_queue_id=4B80DE08044, "
        "orig_client=mail.example.net[192.0.2.10]"
    )
    assert (event.client_ip, event.orig_queue_id) == ("127.0.0.1", "4B80DE08044")
    assert event.orig_client == "mail.example.net[192.0.2.10]"


def test_client_line_sender_before_the_origin():
    """A real sasl_sender token is followed by the real orig_* fields."""
    event = smtpd(
        f"{CLIENT}, sasl_method=PLAIN, sasl_username=bob, sasl_sender=bob@example.com, "
        "orig_queue_id=ABCDEF123"
    )
    assert (event.sasl_sender, event.orig_queue_id) == ("bob@example.com", "ABCDEF123")


# --- SASL failures ----------------------------------------------------------------------


def test_failed_login_name_cannot_change_the_mechanism_or_client():
    """A tried user name 'a, sasl_method=PLAIN' stays the name; mechanism and IP stay Postfix's."""
    event = smtpd(
        "warning: unknown[192.0.2.10]: SASL LOGIN authentication failed: authentication "
        f"failure, sasl_username=a, sasl_method=PLAIN, client=evil[{EVIL}]"
    )
    assert (event.kind, event.mechanism, event.client_ip) == ("sasl_failure", "LOGIN", "192.0.2.10")
    assert event.sasl_username == f"a, sasl_method=PLAIN, client=evil[{EVIL}]"


# --- delivery lines and remote replies --------------------------------------------------


def test_remote_reply_claiming_status_sent_does_not_change_the_status():
    """A bounce whose remote reply says 'status=sent' stays bounced."""
    event = parse(
        "postfix/smtp",
        "4B80DE08044: to=<r@example.org>, relay=mx.example.org[192.0.2.20]:25, delay=1.2, "
        "delays=0.1/0/0.5/0.6, dsn=5.0.0, status=bounced (host mx.example.org[192.0.2.20] "
        "said: 550 x, relay=local, delay=1, delays=1/1/1/1, dsn=2.0.0, status=sent (ok))",
    )
    assert (event.status, event.dsn, event.relay) == (
        "bounced", "5.0.0", "mx.example.org[192.0.2.20]:25",
    )  # fmt: skip


def test_quoted_recipient_imitating_a_delivery_does_not_change_the_status():
    """A quoted local part holding ', status=sent (' stays in the recipient (Postfix 3.5+)."""
    recipient = '"a>, relay=local, delay=1, delays=1/1/1/1, dsn=2.0.0, status=sent (x"@example.org'
    event = parse(
        "postfix/smtp",
        f"4B80DE08044: to=<{recipient}>, relay=mx.example.org[192.0.2.20]:25, delay=1.2, "
        "delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host said no)",
    )
    assert (event.recipient, event.status, event.dsn) == (recipient, "bounced", "5.1.1")


def test_remote_reply_cannot_name_the_next_hop_queue_id_twice():
    """Only the last 'queued as' of a reply counts, and only when it is shaped like a queue ID."""
    event = parse(
        "postfix/smtp",
        "4B80DE08044: to=<r@example.org>, relay=mx.example.org[192.0.2.20]:25, delay=1, "
        "delays=0.1/0/0.5/0.4, dsn=2.0.0, status=sent (250 queued as 1FEB7E00C4 "
        "then queued as not-an-id)",
    )
    assert event.queued_as == ""


# --- header and body checks -------------------------------------------------------------


def test_header_text_imitating_the_origin_leaves_the_origin_unknown():
    """A Subject carrying ' from evil[ip]; from=<> ...' never becomes the client; the ID stays."""
    event = parse(
        "postfix/cleanup",
        f"4B80DE08044: warning: header Subject: hi from evil.example[{EVIL}]; from=<a@x.example> "
        "to=<b@y.example> proto=ESMTP helo=<z> from mail.example.net[192.0.2.10]; "
        "from=<s@example.net> to=<r@example.org> proto=ESMTP helo=<mail.example.net>",
    )
    assert event.kind == "content_action"
    assert event.queue_id == "4B80DE08044"
    assert event.client_ip != EVIL


def test_plain_header_text_keeps_the_real_origin():
    """A Subject with ordinary text leaves the origin Postfix wrote."""
    event = parse(
        "postfix/cleanup",
        "4B80DE08044: warning: header Subject: from the [bank] of you; from mail.example.net"
        "[192.0.2.10]; from=<s@example.net> to=<r@example.org> proto=ESMTP helo=<h>",
    )
    assert (event.client_ip, event.text) == ("192.0.2.10", "Subject: from the [bank] of you;")


# --- postscreen ---------------------------------------------------------------------------


def test_pregreet_text_cannot_move_the_client():
    """Text a client sends before the greeting cannot replace the [addr]:port postscreen wrote."""
    event = parse(
        "postfix/postscreen",
        f"PREGREET 11 after 0.1 from [192.0.2.10]:5555: EHLO [{EVIL}]:25\\r\\n",
    )
    assert (event.verdict, event.client_ip, event.client_port) == ("PREGREET", "192.0.2.10", 5555)


# --- Dovecot ------------------------------------------------------------------------------


def test_dovecot_user_name_imitating_rip_does_not_move_the_address():
    """A tried user 'x>, method=PLAIN, rip=EVIL, lip=...' leaves Dovecot's own rip last."""
    event = parse(
        "dovecot",
        f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<x>, method=PLAIN, "
        f"rip={EVIL}, lip=192.0.2.1>, method=PLAIN, rip=192.0.2.10, lip=192.0.2.1, TLS, "
        "session=<abc>",
    )
    assert event.kind == "dovecot_login_failed"
    assert (event.remote_ip, event.method) == ("192.0.2.10", "PLAIN")
    assert event.user == f"x>, method=PLAIN, rip={EVIL}, lip=192.0.2.1"


def test_dovecot_passdb_user_with_commas_keeps_the_last_address():
    """A passdb user holding ',EVIL' cannot replace the remote IP Dovecot appends after it."""
    event = parse("dovecot", f"auth: passwd-file(x,{EVIL},192.0.2.10,<sess>): unknown user")
    assert (event.kind, event.remote_ip, event.user) == (
        "dovecot_auth_failure", "192.0.2.10", f"x,{EVIL}",
    )  # fmt: skip


def test_pam_ruser_imitating_rhost_does_not_move_the_address():
    """A PAM ruser of 'rhost=EVIL' leaves the rhost PAM wrote."""
    event = parse(
        "dovecot",
        "dovecot-auth: pam_unix(dovecot:auth): authentication failure; logname= uid=0 euid=0 "
        f"tty=dovecot ruser=rhost={EVIL} rhost=192.0.2.10",
    )
    assert (event.remote_ip, event.user) == ("192.0.2.10", f"rhost={EVIL}")


# --- anything at all ----------------------------------------------------------------------

HOSTILE_PIECES = (
    "; from=<", "> to=<", " proto=ESMTP", " helo=<", ", sasl_username=", ", sasl_sender=",
    ": client=", "[203.0.113.66]", "]:25", ", orig_client=", "status=sent (", ", relay=",
    ", rip=", "user=<", "(auth failed, 9 attempts", "\x00", "\\r\\n", '"', "<", ">", "(", ")",
    "4B80DE08044: ", "NOQUEUE: ", "warning: ", "9" * 5000, " " * 300, ";" * 200,
    "dovecot: " * 1200, "message repeated 2 times: [ ",
)  # fmt: skip
PROGRAMS = (
    "postfix/smtpd", "postfix/submission/smtpd", "postfix/cleanup", "postfix/qmgr",
    "postfix/smtp", "postfix/local", "postfix/pickup", "postfix/postscreen", "postfix/anvil",
    "postfix/bounce", "postfix/postsuper", "postfix/master", "postfix", "dovecot", "auth",
)  # fmt: skip


def test_parser_never_raises_on_crafted_text():
    """Lines stitched from Postfix and Dovecot field markers parse to some event, never an error."""
    rng = random.Random(20261123)
    seeds = (
        "4B80DE08044: client=mail.example.net[192.0.2.10]",
        "NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 x",
        "4B80DE08044: to=<r@example.org>, relay=none, delay=1, delays=1/0/0/0, dsn=4.0.0",
        "imap-login: Disconnected (auth failed, 1 attempts): user=<a>, rip=192.0.2.10",
        "uid=",
        "",
    )
    for _ in range(3000):
        message = rng.choice(seeds) + "".join(
            rng.choice(HOSTILE_PIECES) for _ in range(rng.randrange(8))
        )
        event = parse(rng.choice(PROGRAMS), message)
        assert isinstance(event, EVENT_TYPES) and len(event) == len(type(event)._fields)
