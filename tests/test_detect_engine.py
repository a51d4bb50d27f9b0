"""The detector on hand-built records: abuse raises alerts, look-alikes raise nothing.

Records are what the correlator emits (``Accepted``, ``Delivered``, ``SessionEnded``) and
the parse events the detector reads (SASL and Dovecot failures, logins, rejects).  Client
addresses are real public ranges that the bundled geoip2fast data places in the named
country, so geography is exercised for real.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings, Limits, Override, Thresholds
from postwatch.detect import Alert, Detector, Subject
from postwatch.detect.wire import pack, unpack
from postwatch.geo import Geo
from postwatch.parse.events import (
    DovecotAuthFailure,
    DovecotLogin,
    DovecotLoginFailed,
    Reject,
    SaslFailure,
)
from postwatch.records import Accepted, Delivered, LogLine, Message, Outcome

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday
HOME = ("p5b3a2c1d.dip0.t-ipconnect.de", "193.158.10.20")  # DE, Deutsche Telekom
BRAZIL = ("unknown", "201.91.101.26")  # BR, Telefonica Brasil
SPAIN_HOTEL = ("static.hotel.example.es", "80.58.61.250")  # ES, Telefonica de Espana
FREEMAIL = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "gmx.de")
GEO = Geo()
RELAY = "mx.remote.example[192.0.2.25]:25"
USER_UNKNOWN = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"


class Traffic:
    """Feeds records to a detector and keeps every alert."""

    def __init__(
        self, settings: DetectSettings | None = None, *, learn: bool = False, forked: bool = False
    ) -> None:
        # fed as the forked detector is: what is not relevant as its time, the rest packed
        self.forked = forked
        self.detector = Detector(
            settings or DetectSettings(hostnames=("mx.example.org",)),
            None,
            GEO,
            SteppedClock(T0),
            learn=learn,
        )
        self.alerts: list[Alert] = []
        self.serial = 0

    def feed(self, item: object) -> list[Alert]:
        if self.forked and not self.detector.relevant(item):
            self.detector.tick(item.ts.timestamp())  # type: ignore[attr-defined]
            return []
        raised = self.detector.feed(unpack(pack(item)) if self.forked else item)
        self.alerts += raised
        return raised

    def message(
        self,
        ts: datetime,
        user: str,
        client: tuple[str, str],
        recipients: list[str],
        *,
        helo: str = "",
        sender: str | None = None,
        status: str = "sent",
        reply: str = "250 2.0.0 Ok",
        uid: int | None = None,
        host: str = "mx",
        bounced: frozenset[str] = frozenset(),
        message_id: str = "",
    ) -> list[Alert]:
        """One accepted message and an outcome per recipient: ``status`` and ``reply``, or a
        "user unknown" bounce for the recipients in ``bounced``."""
        self.serial += 1
        message = Message(
            host=host,
            queue_id=f"{self.serial:05X}A{self.serial % 9}",
            service="postfix/submission" if uid is None else "postfix",
            first_seen=ts,
            last_seen=ts,
            client_name=client[0],
            client_ip=client[1],
            sasl_method="PLAIN" if user else "",
            sasl_username=user,
            pickup_uid=uid,
            sender=user if sender is None else sender,
            size=2100,
            nrcpt=len(recipients),
            message_id=message_id,
            helo=helo,
        )
        raised = self.feed(Accepted(ts, message))
        for recipient in recipients:
            if recipient in bounced:
                outcome = Outcome(
                    recipient, "bounced", RELAY, "5.1.1", ts, USER_UNKNOWN.format(recipient)
                )
            else:
                dsn = "2.0.0" if status == "sent" else "4.7.0"
                outcome = Outcome(recipient, status, RELAY, dsn, ts, reply)
            raised += self.feed(Delivered(ts + timedelta(seconds=2), message, outcome))
        return raised

    def sasl_failure(self, ts: datetime, ip: str, user: str) -> list[Alert]:
        line = LogLine(ts, "mx", "postfix/submission/smtpd", 4242, "warning: ...")
        return self.feed(SaslFailure(line, "unknown", ip, "LOGIN", "authentication failure", user))

    def imap_failure(self, ts: datetime, ip: str, user: str) -> list[Alert]:
        line = LogLine(ts, "mx", "dovecot", None, "imap-login: Disconnected ...")
        return self.feed(
            DovecotLoginFailed(line, "imap", user, "PLAIN", ip, "203.0.113.25", "auth failed", 1)
        )

    def imap_login(self, ts: datetime, ip: str, user: str) -> list[Alert]:
        line = LogLine(ts, "mx", "dovecot", None, "imap-login: Login: ...")
        return self.feed(DovecotLogin(line, "imap", user, "PLAIN", ip, "203.0.113.25"))

    def relay_denied(self, ts: datetime, ip: str) -> list[Alert]:
        line = LogLine(ts, "mx", "postfix/smtpd", 4243, "NOQUEUE: reject: ...")
        return self.feed(
            Reject(
                line,
                "",
                "reject",
                "RCPT",
                "unknown",
                ip,
                "454 4.7.1 <a@example.net>: Relay access denied",
            )
        )

    def usual_week(
        self,
        user: str,
        client: tuple[str, str],
        *,
        days: int = 7,
        per_day: int = 6,
        start: datetime = T0,
    ) -> datetime:
        """An ordinary week of one account: a few mails a day to a few friends."""
        for day in range(days):
            for index in range(per_day):
                when = start + timedelta(days=day, hours=1 + index * 1.5)
                self.message(
                    when,
                    user,
                    client,
                    [f"friend{index}@example.net"],
                    helo="alice-laptop.example.org",
                )
        return start + timedelta(days=days)

    def of(self, subject: str) -> list[Alert]:
        return [alert for alert in self.alerts if alert.subject == subject]


def learned(
    user: str = "alice@example.org",
    client: tuple[str, str] = HOME,
    settings: DetectSettings | None = None,
) -> tuple[Traffic, datetime]:
    """A detector that learned a week of ``user``'s ordinary mail."""
    traffic = Traffic(settings, learn=True)
    end = traffic.usual_week(user, client)
    traffic.detector.set_learning(False)
    return traffic, end


def spam_burst(
    traffic: Traffic,
    start: datetime,
    count: int,
    user: str = "alice@example.org",
    client: tuple[str, str] = BRAZIL,
    helo: str = "",
    hosts: tuple[str, ...] = ("mx",),
) -> int | None:
    """Send ``count`` spam messages (through ``hosts`` in turn); return how many went out up
    to the first alert."""
    first = None
    for index in range(count):
        recipient = f"victim{index}@{FREEMAIL[index % len(FREEMAIL)]}"
        raised = traffic.message(
            start + timedelta(seconds=8 * index),
            user,
            client,
            [recipient],
            helo=helo,
            host=hosts[index % len(hosts)],
        )
        if raised and first is None:
            first = index + 1
    return first


def test_alert_json_has_the_agreed_shape() -> None:
    """to_json gives exactly the documented keys, ISO time with offset, and JSON types."""
    traffic, start = learned()
    spam_burst(traffic, start, 30, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI")
    data = traffic.alerts[0].to_json()
    assert set(data) == {
        "type",
        "ts",
        "subject",
        "subject_kind",
        "severity",
        "score",
        "reasons",
        "evidence",
        "incident",
        "host",
    }
    assert data["type"] == "alert" and data["subject_kind"] == "account"
    assert data["ts"].endswith("+00:00")
    assert data["severity"] in ("notice", "warning", "critical")
    assert set(data["reasons"][0]) == {"signal", "detail", "points"}
    assert data["score"] == sum(reason["points"] for reason in data["reasons"])
    assert {"ips", "countries", "asns", "helos", "queue_ids", "counts"} <= set(data["evidence"])
    assert data["evidence"]["countries"] == ["BR"]
    assert data["host"] == "mx"
    json.dumps(data)


def test_stolen_password_burst_is_caught_within_ten_messages() -> None:
    """A learned account spamming from a new country is alerted early and escalates."""
    traffic, start = learned()
    leaked = spam_burst(traffic, start, 60)
    assert leaked is not None and leaked <= 10
    severities = [alert.severity for alert in traffic.of("alice@example.org")]
    assert severities[-1] == "critical"
    assert len(severities) == len(set(severities)), "alerts only when the severity rises"
    signals = {reason.signal for alert in traffic.alerts for reason in alert.reasons}
    assert {"volume", "new_country", "new_asn", "no_rdns"} <= signals


def test_random_helo_alone_with_a_new_place_alerts_at_once() -> None:
    """The seed case: a random HELO from a never-seen country is enough for a notice."""
    traffic, start = learned()
    assert spam_burst(traffic, start, 3, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI") == 1


def test_learning_raises_nothing_and_sets_the_baseline() -> None:
    """Learning mode never alerts; the busy history it learns keeps later days quiet."""
    traffic = Traffic(learn=True)
    shop = ("mail.shop.example.de", "193.158.44.9")
    for day in range(5):
        for index in range(400):
            when = T0 + timedelta(days=day, hours=6, seconds=20 * index)
            traffic.message(when, "shop@example.org", shop, [f"c{day}x{index}@example.com"])
    assert traffic.alerts == []
    traffic.detector.set_learning(False)
    for index in range(400):
        when = T0 + timedelta(days=5, hours=6, seconds=20 * index)
        traffic.message(when, "shop@example.org", shop, [f"c5x{index}@example.com"])
    assert traffic.alerts == []


def test_cold_start_warms_up_before_judging_volume() -> None:
    """Without history, busy senders are learned for a day instead of alerted."""
    traffic = Traffic()
    assert traffic.detector.warming
    server = ("mail.shop.example.de", "193.158.44.9")
    for day in range(3):
        for index in range(300):
            when = T0 + timedelta(days=day, hours=6, seconds=10 * index)
            traffic.message(when, "news@example.org", server, [f"r{index}@example.com"])
    assert not traffic.detector.warming
    assert traffic.alerts == []


def test_override_lets_the_newsletter_send() -> None:
    """A per-account floor lets 1,500 a day from one server pass without history."""
    override = Override("news@example.org", floor=Limits((2000,) * 3, (2000,) * 3))
    traffic, start = learned(settings=DetectSettings(overrides=(override,)))
    server = ("mail.shop.example.de", "193.158.44.9")
    for index in range(1500):
        traffic.message(
            start + timedelta(seconds=30 * index),
            "news@example.org",
            server,
            [f"reader{index}@{FREEMAIL[index % 6]}"],
        )
    assert traffic.of("news@example.org") == []


def test_traveller_sending_as_usual_is_quiet() -> None:
    """A new country (hotel WiFi, no reverse DNS) with the usual mail raises nothing."""
    traffic, start = learned()
    for index in range(6):
        when = start + timedelta(hours=10 + index)
        traffic.message(
            when,
            "alice@example.org",
            ("unknown", SPAIN_HOTEL[1]),
            [f"friend{index}@example.net"],
            helo="alice-laptop.example.org",
        )
    assert traffic.alerts == []


def test_mobile_user_hopping_over_one_carrier_is_quiet() -> None:
    """Every session from another address of one mobile carrier raises nothing."""
    traffic = Traffic(learn=True)
    addresses = [
        f"176.{block}.{third}.{fourth}"
        for block in range(4)
        for third, fourth in ((12, 40), (77, 3), (140, 201), (201, 9))
    ]
    for day in range(8):
        if day == 7:
            traffic.detector.set_learning(False)
        for index in range(8):
            ip = addresses[(day * 8 + index) % len(addresses)]
            traffic.message(
                T0 + timedelta(days=day, hours=8 + index),
                "field@example.org",
                ("unknown", ip),
                [f"customer{index}@example.com"],
            )
    assert traffic.alerts == []


def test_office_behind_one_nat_is_quiet() -> None:
    """A dozen accounts on one address, with a few mistyped passwords, raise nothing."""
    traffic = Traffic(learn=True)
    office = ("gw.office.example.de", "193.158.119.204")
    staff = [f"staff{index}@office.example" for index in range(12)]
    for day in range(4):
        if day == 3:
            traffic.detector.set_learning(False)
        start = T0 + timedelta(days=day)
        traffic.sasl_failure(start + timedelta(minutes=3), office[1], staff[day])
        traffic.sasl_failure(start + timedelta(minutes=4), office[1], staff[day])
        traffic.imap_login(start + timedelta(minutes=5), office[1], staff[day])
        for index in range(60):
            user = staff[index % 12]
            traffic.message(
                start + timedelta(minutes=10 + 7 * index),
                user,
                office,
                [f"client{index}@example.com"],
                helo="DESKTOP-7F3K2LP",
            )
    assert traffic.alerts == []


def test_webmail_on_loopback_is_quiet() -> None:
    """Webmail users on 127.0.0.1, including failed logins there, raise nothing."""
    traffic = Traffic()
    webmail = ("localhost", "127.0.0.1")
    for index in range(40):
        when = T0 + timedelta(minutes=index)
        traffic.imap_failure(when, "127.0.0.1", f"user{index % 8}@example.org")
        traffic.imap_login(when, "127.0.0.1", f"user{index % 8}@example.org")
        traffic.message(
            when, f"user{index % 8}@example.org", webmail, ["a@example.net"], helo="localhost"
        )
    assert traffic.alerts == []


def test_brute_force_flags_the_ip_and_never_the_accounts() -> None:
    """Guessing from one address alerts on that address; the targets stay unalerted."""
    traffic = Traffic()
    attacker = "45.148.10.81"
    for index in range(120):
        traffic.sasl_failure(
            T0 + timedelta(seconds=5 * index), attacker, f"user{index % 20}@example.org"
        )
    ip_alerts = traffic.of(attacker)
    assert [alert.severity for alert in ip_alerts] == ["notice", "warning", "critical"]
    assert all(alert.subject_kind == "ip" for alert in traffic.alerts)
    assert ip_alerts[0].evidence["counts"]["usernames_tried_1h"] >= 5


def test_failed_logins_alone_never_make_an_account_critical() -> None:
    """Failures from many addresses and a low threshold still leave the account short of
    critical: only its own successful activity can get it there."""
    settings = DetectSettings(thresholds=Thresholds(10, 20, 25))
    traffic = Traffic(settings)
    for index in range(60):
        traffic.imap_failure(
            T0 + timedelta(seconds=index), f"45.148.{index}.81", "alice@example.org"
        )
    account = traffic.of("alice@example.org")
    assert account, "failures are worth a notice or a warning"
    assert max(alert.severity for alert in account) in ("notice", "warning")
    assert all(alert.severity != "critical" for alert in account)


def test_credential_stuffing_success_alerts_the_account_and_the_ip() -> None:
    """A login from an address that just failed on other accounts alerts both subjects."""
    traffic, start = learned("gina@example.org")
    rented = "91.92.240.15"
    for index, user in enumerate(["anna", "ben", "chris", "dora", "emil", "frank"]):
        traffic.imap_failure(start + timedelta(seconds=3 * index), rented, f"{user}@example.org")
    traffic.imap_login(start + timedelta(minutes=1), rented, "gina@example.org")
    account = traffic.of("gina@example.org")
    assert account and "credential_stuffing" in {r.signal for r in account[0].reasons}
    ip_reasons = {r.signal for alert in traffic.of(rented) for r in alert.reasons}
    assert {"brute_force", "guessed_login"} <= ip_reasons
    for user in ["anna", "ben", "chris"]:
        assert traffic.of(f"{user}@example.org") == []


def test_a_deny_passdb_missing_a_known_account_is_no_failed_login() -> None:
    """Dovecot with postwatch's deny passdb first (and auth_verbose) logs "unknown user"
    from it before every good login; for an account that has logged in before, that is no
    failure.  Unknown names and password mismatches from the same place still count."""
    traffic, start = learned("gina@example.org")
    hotel = SPAIN_HOTEL[1]
    for index in range(8):
        when = start + timedelta(minutes=5 * index)
        traffic.feed(deny_miss(when, hotel, "gina@example.org"))
        traffic.imap_login(when + timedelta(seconds=1), hotel, "gina@example.org")
    assert traffic.alerts == []

    guesser = "91.92.240.15"
    when = start + timedelta(hours=1)
    for index in range(20):
        traffic.feed(deny_miss(when + timedelta(seconds=index), guesser, f"x{index}@example.org"))
    assert {r.signal for alert in traffic.of(guesser) for r in alert.reasons} == {"brute_force"}


def deny_miss(ts: datetime, ip: str, user: str) -> DovecotAuthFailure:
    """``auth: passwd-file(user,ip,<session>): unknown user`` (Dovecot 2.3, auth_verbose)."""
    line = LogLine(ts, "mx", "dovecot", None, f"auth: passwd-file({user},{ip},<x>): ...")
    return DovecotAuthFailure(line, "passwd-file", user, ip, "unknown user")


def test_relay_probing_flags_the_client() -> None:
    """Denied relay attempts alert on the client address, more of them more severely."""
    traffic = Traffic()
    for index in range(10):
        traffic.relay_denied(T0 + timedelta(seconds=20 * index), "185.220.101.7")
    assert [a.severity for a in traffic.of("185.220.101.7")] == ["notice", "warning", "critical"]


def test_local_addresses_are_never_banned() -> None:
    """Failures and relay attempts from loopback or trusted networks raise nothing."""
    traffic = Traffic(
        DetectSettings(trusted_networks=(__import__("ipaddress").ip_network("193.158.0.0/16"),))
    )
    for index in range(50):
        traffic.sasl_failure(T0 + timedelta(seconds=index), "127.0.0.1", f"u{index}@x.example")
        traffic.relay_denied(T0 + timedelta(seconds=index), "193.158.1.1")
    assert traffic.alerts == []


def test_php_pickup_burst_flags_the_uid_and_the_sender_domain() -> None:
    """A script spamming through sendmail alerts on its uid and its sender domain."""
    traffic = Traffic(learn=True)
    for day in range(3):
        for index in range(3):
            traffic.message(
                T0 + timedelta(days=day, hours=9 + index),
                "",
                ("", ""),
                [f"owner{index}@example.com"],
                uid=33,
                sender="www-data@shop.example",
            )
    traffic.detector.set_learning(False)
    start = T0 + timedelta(days=3, hours=15)
    for index in range(40):
        traffic.message(
            start + timedelta(seconds=5 * index),
            "",
            ("", ""),
            [f"x{index}@{FREEMAIL[index % 6]}"],
            uid=33,
            sender=f"noreply{index}@shop.example",
            status="bounced",
            reply="550 5.7.1 Message rejected as spam",
        )
    kinds = {(alert.subject_kind, alert.subject) for alert in traffic.alerts}
    assert ("uid", "33") in kinds and ("sender_domain", "shop.example") in kinds
    signals = {r.signal for alert in traffic.alerts for r in alert.reasons}
    assert {"volume", "many_senders", "spam_replies"} & signals


def _forwarding_mailbox(
    received_ids: list[str], forwarded_ids: list[str], *, forked: bool
) -> set[tuple[str, str]]:
    """A mailbox whose Sieve script redirects everything to its owner's Gmail, through
    sendmail as the mail uid (5000): spam arrives from 40 forged senders and a third of the
    copies come back "rejected as spam".  ``received_ids`` are the Message-IDs of the mail
    that came in, ``forwarded_ids`` those the copies carry.  The alerted subjects."""
    traffic = Traffic(forked=forked)
    traffic.detector.set_learning(True)
    for day in range(3):
        when = T0 + timedelta(days=day, hours=10)
        traffic.message(when, "", ("mail.example.net", "192.0.2.80"), ["bob@mx.example.org"], sender="friend@example.net", message_id=f"d{day}@example.net")  # fmt: skip
        traffic.message(when + timedelta(seconds=1), "", ("", ""), ["bob.home@gmail.com"], uid=5000, sender="friend@example.net", message_id=f"d{day}@example.net")  # fmt: skip
    traffic.detector.set_learning(False)
    start = T0 + timedelta(days=3, hours=2)
    for index, (received, forwarded) in enumerate(zip(received_ids, forwarded_ids, strict=True)):
        when = start + timedelta(seconds=20 * index)
        sender = f"promo{index}@deals{index}.example"
        if received:
            traffic.message(when, "", ("unknown", "201.91.101.26"), ["bob@mx.example.org"], sender=sender, message_id=received)  # fmt: skip
        traffic.message(
            when + timedelta(seconds=1), "", ("", ""), ["bob.home@gmail.com"], uid=5000,
            sender=sender, message_id=forwarded,
            status="bounced" if index % 3 == 0 else "sent",
            reply="550 5.7.1 [gmail] Our system has detected that this message is likely unsolicited mail" if index % 3 == 0 else "250 2.0.0 OK",
        )  # fmt: skip
    return {(alert.subject_kind, alert.subject) for alert in traffic.alerts}


@pytest.mark.parametrize("forked", [False, True], ids=["one process", "forked detector"])
def test_a_sieve_redirect_of_received_spam_is_not_the_mail_uids_doing(forked: bool) -> None:
    """Copies that re-send mail the host just received (same Message-ID) score nothing; the
    same copies with Message-IDs of their own are a script's spam; and one received
    Message-ID reused for every copy excuses only the first few.  The same when the engine
    is fed as in its own process, where the mail received (no login, no uid) still counts."""
    ids = [f"{index}.spam@deals.example" for index in range(40)]
    assert _forwarding_mailbox(ids, ids, forked=forked) == set()
    fresh = [f"{index}.own@mx.example.org" for index in range(40)]
    assert ("uid", "5000") in _forwarding_mailbox(ids, fresh, forked=forked)
    reused = [ids[0]] + [""] * 39
    assert ("uid", "5000") in _forwarding_mailbox(reused, [ids[0]] * 40, forked=forked)


def _written(traffic: Traffic, start: datetime, index: int, written: bool) -> tuple[datetime, str]:
    """The ``index``-th minute of a vacation from ``start`` + 9 h, and a stranger's address;
    with ``written``, the stranger's mail to alice comes in then, the sender's letters in
    capitals but every fourth time (``Writer1@Yahoo.Com``)."""
    when = start + timedelta(hours=9, seconds=60 * index)
    sender = f"writer{index}@{FREEMAIL[index % len(FREEMAIL)]}"
    if written:
        envelope = sender.title() if index % 4 else sender
        traffic.message(when, "", ("mail.example.net", "192.0.2.80"), ["alice@example.org"], sender=envelope, message_id=f"{index}@writer.example")  # fmt: skip
    return when, sender


def _vacation(answered: bool, sender: str, *, forked: bool) -> set[tuple[str, str]]:
    """A mailbox on vacation: its Sieve script answers 120 strangers in two hours through
    sendmail as the mail uid (5000), from ``sender``, a third of the notices bounced.  With
    ``answered``, each stranger's mail came in a second before its notice; else the notices
    go to addresses that never wrote here (a script posing as a vacation).  The alerted
    subjects."""
    traffic, start = learned()
    traffic.forked = forked
    for index in range(120):
        when, stranger = _written(traffic, start, index, answered)
        traffic.message(
            when + timedelta(seconds=1), "", ("", ""), [stranger],
            uid=5000, sender=sender, message_id=f"dovecot-{index}@mx.example.org",
            bounced=frozenset({stranger}) if index % 3 == 0 else frozenset(),
        )  # fmt: skip
    return {(alert.subject_kind, alert.subject) for alert in traffic.alerts}


@pytest.mark.parametrize("forked", [False, True], ids=["one process", "forked detector"])
@pytest.mark.parametrize("sender", ["", "alice@example.org"], ids=["from <>", "from the mailbox"])
def test_vacation_notices_answering_mail_received_are_not_the_mail_uids_doing(
    sender: str, forked: bool
) -> None:
    """A notice to the envelope sender of mail received lately (whatever the case of its
    letters), from <> as Sieve sends it or from the mailbox as autoreply scripts do, scores
    nothing; the same notices to strangers are a script's spam."""
    assert _vacation(True, sender, forked=forked) == set()
    assert ("uid", "5000") in _vacation(False, sender, forked=forked)


def test_a_notice_through_a_content_filter_is_judged_at_its_next_hop() -> None:
    """A local message from <> handed to a content filter is judged where its real outcome
    is, the filter's next hop (linked by orig_queue_id): answering mail received, it and
    its next hop score nothing; sent to strangers, it is scored as it leaves."""

    def notices(answered: bool) -> list[Alert]:
        traffic, start = learned()
        for index in range(120):
            when, sender = _written(traffic, start, index, answered)
            first = Message(host="mx", queue_id=f"F{index:04X}", service="postfix", first_seen=when, last_seen=when, pickup_uid=5000, nrcpt=1, next_queue_id=f"N{index:04X}", message_id=f"dovecot-{index}@mx")  # fmt: skip
            hop = Message(host="mx", queue_id=f"N{index:04X}", service="postfix", first_seen=when, last_seen=when, client_name="localhost", client_ip="127.0.0.1", pickup_uid=5000, nrcpt=1, orig_queue_id=first.queue_id, message_id=first.message_id)  # fmt: skip
            filtered = Outcome(sender, "sent", "127.0.0.1[127.0.0.1]:10024", "2.0.0", when, "250 2.0.0 Ok, queued as " + hop.queue_id)  # fmt: skip
            status, reply = ("bounced", USER_UNKNOWN.format(sender)) if index % 3 == 0 else ("sent", "250 2.0.0 Ok")  # fmt: skip
            final = Outcome(sender, status, RELAY, "5.1.1" if index % 3 == 0 else "2.0.0", when, reply)  # fmt: skip
            second = when + timedelta(seconds=1)
            traffic.feed(Accepted(second, first))
            traffic.feed(Delivered(second, first, filtered))
            traffic.feed(Accepted(second, hop))
            traffic.feed(Delivered(second + timedelta(seconds=1), hop, final))
        return traffic.alerts

    assert notices(True) == []
    assert ("uid", "5000") in {(alert.subject_kind, alert.subject) for alert in notices(False)}


def test_trusted_uid_is_ignored() -> None:
    """A trusted uid (cron as root) is never scored."""
    traffic = Traffic(DetectSettings(trusted_uids=frozenset({0})), learn=False)
    traffic.detector.set_learning(True)
    traffic.detector.set_learning(False)
    for index in range(100):
        traffic.message(
            T0 + timedelta(seconds=index),
            "",
            ("", ""),
            ["root@example.org"],
            uid=0,
            sender="root@mx.example.org",
        )
    assert traffic.alerts == []


def test_sender_mismatch_respects_aliases() -> None:
    """Sending as another domain scores unless an alias allows it."""
    settings = DetectSettings(
        aliases={"alice@example.org": frozenset({"@example.com"})},
        thresholds=Thresholds(10, 70, 100),
    )
    traffic, start = learned(settings=settings)
    traffic.message(start, "alice@example.org", HOME, ["a@example.net"], sender="alice@example.com")
    assert traffic.alerts == []
    traffic.message(
        start + timedelta(minutes=1),
        "alice@example.org",
        HOME,
        ["a@example.net"],
        sender="ceo@bank.example",
    )
    assert traffic.alerts and traffic.alerts[0].reasons[0].signal == "sender_mismatch"


def test_allowlisted_account_is_never_scored() -> None:
    """An allowlisted account sends anything without an alert."""
    traffic, start = learned(settings=DetectSettings(allow=("alice@example.org",)))
    assert spam_burst(traffic, start, 80, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI") is None


def test_spam_replies_and_failures_score() -> None:
    """Remote replies calling the mail spam, and many failures, are reasons."""
    traffic, start = learned(settings=DetectSettings(thresholds=Thresholds(30, 70, 100)))
    for index in range(12):
        traffic.message(
            start + timedelta(minutes=index),
            "alice@example.org",
            HOME,
            [f"x{index}@example.com"],
            status="bounced",
            reply="550 5.7.1 Our system has detected that this message is likely unsolicited mail",
        )
    board = traffic.detector.book.boards.get(Subject("account", "alice@example.org"))
    assert board is not None and board.incident is not None
    assert {"delivery_failures", "spam_replies"} <= set(board.findings)


def test_incident_closes_after_quiet_time_and_a_new_one_opens() -> None:
    """One incident per subject; after the quiet period a new burst opens a new one."""
    traffic, start = learned()
    spam_burst(traffic, start, 30, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI")
    first = {alert.incident for alert in traffic.alerts}
    assert len(first) == 1
    later = start + timedelta(days=2)
    spam_burst(traffic, later, 30, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI")
    incidents = [alert.incident for alert in traffic.alerts]
    assert len(set(incidents)) == 2
    closed = [i for i in traffic.detector.book.dirty.values() if i.state == "closed"]
    assert closed and closed[0].id in first


def _run_twice() -> list[list[dict[str, Any]]]:
    runs = []
    for _ in range(2):
        traffic, start = learned()
        spam_burst(traffic, start, 40, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI")
        for index in range(30):
            traffic.sasl_failure(
                start + timedelta(seconds=index), "45.148.10.81", f"u{index}@example.org"
            )
        runs.append([alert.to_json() for alert in traffic.alerts])
    return runs


def test_replay_is_deterministic() -> None:
    """The same input gives the same alerts, ids included."""
    first, second = _run_twice()
    assert first == second and first


def test_every_in_memory_map_expires() -> None:
    """After two quiet days every per-key map of the detector is empty."""
    traffic, start = learned()
    spam_burst(traffic, start, 30, helo="EHZDDZCUEY0FN7B75U0HKZOH1JP2P2UI")
    for account in ("bob@example.org", "carl@example.net"):
        traffic.usual_week(account, HOME, start=start - timedelta(days=7))
        traffic.imap_login(start, BRAZIL[1], account)
    for index in range(30):
        traffic.sasl_failure(start + timedelta(seconds=index), f"45.148.10.{index}", "x@y.z")
    received = traffic.message(start, "", ("mail.example.net", "192.0.2.80"), ["alice@example.org"], sender="w@example.net", message_id="1@example.net")  # fmt: skip
    for queue_id in ("NOTICE1", "NOTICE2"):  # a vacation notice answering it, one pending
        notice = Message(host="mx", queue_id=queue_id, service="postfix", first_seen=start, last_seen=start, pickup_uid=5000, nrcpt=1)  # fmt: skip
        traffic.feed(Accepted(start, notice))
    traffic.feed(Delivered(start, notice, Outcome("w@example.net", "sent", RELAY, "2.0.0", start, "250 2.0.0 Ok")))  # fmt: skip
    detector = traffic.detector
    assert received == [] and len(detector._senders) and len(detector._automatic)
    assert len(detector._excused)
    assert len(detector.states) and len(detector.credentials.clients)
    assert len(detector.shared.addresses) == 1
    quiet = start + timedelta(days=2)
    traffic.sasl_failure(quiet, "127.0.0.1", "")  # any record moves log time on
    traffic.sasl_failure(quiet + timedelta(minutes=2), "127.0.0.1", "")
    assert len(detector.states) == 0
    assert len(detector.credentials.clients) == 1  # only the loopback record just fed
    assert len(detector.credentials.networks) == 1
    assert len(detector.credentials.accounts) == 0
    assert len(detector.shared.addresses) == 0
    assert len(detector._counted) == 0
    assert len(detector._senders) == len(detector._automatic) == len(detector._excused) == 0
    assert len(detector.book.boards) == 0


@pytest.mark.parametrize("user", ["", "x" * 5000])
def test_hostile_usernames_are_bounded(user: str) -> None:
    """Empty or huge usernames are handled and truncated."""
    traffic = Traffic()
    traffic.imap_failure(T0, "45.148.10.81", user)
    traffic.imap_login(T0, "45.148.10.81", user)
    for subject, _ in traffic.detector.states.items():
        assert len(subject.name) <= 320


def learned_customers(accounts: list[str], client: tuple[str, str] = HOME) -> Traffic:
    """A detector that learned a week of ordinary mail of several accounts."""
    traffic = Traffic(learn=True)
    for account in accounts:
        traffic.usual_week(account, client)
    traffic.detector.set_learning(False)
    return traffic


CUSTOMERS = [
    "anna@bakery.example",
    "ben@garage.example",
    "cleo@dentist.example",
    "dan@kita.example",
]


def test_one_address_logging_in_as_several_accounts_flags_it_and_them() -> None:
    """A botnet machine working through stolen passwords: each account checks its mailbox
    and sends two messages, too few to stand out alone; the address that logged in as all
    of them does, and so do the accounts."""
    traffic = learned_customers(CUSTOMERS)
    start = T0 + timedelta(days=7, hours=10)
    for index, account in enumerate(CUSTOMERS):
        when = start + timedelta(minutes=20 * index)
        traffic.imap_login(when, BRAZIL[1], account)
        for number in range(2):
            traffic.message(
                when + timedelta(minutes=5 + number),
                account,
                BRAZIL,
                [f"lead{index}{number}@{FREEMAIL[number]}"],
            )
    address = traffic.of(BRAZIL[1])
    assert address and address[0].subject_kind == "ip"
    assert [reason.signal for reason in address[0].reasons] == ["login_hopping"]
    assert "3 accounts" in address[0].reasons[0].detail
    for account in CUSTOMERS:
        signals = {reason.signal for alert in traffic.of(account) for reason in alert.reasons}
        assert "shared_login" in signals, account


def test_an_address_the_accounts_know_is_no_hopping() -> None:
    """Customers whose phones share one carrier's address, and one company's staff moving to
    a new office address, log in as many accounts from one address: no hopping."""
    carrier_address = "193.158.10.77"  # the customers' own carrier (Deutsche Telekom)
    customers = learned_customers(CUSTOMERS)
    start = T0 + timedelta(days=7, hours=10)
    for index, account in enumerate(CUSTOMERS):
        customers.imap_login(start + timedelta(minutes=index), carrier_address, account)
    assert customers.alerts == []
    assert len(customers.detector.shared.addresses) == 0  # a network they all know
    staff = [f"staff{index}@office.example" for index in range(5)]
    office = learned_customers(staff)
    for index, account in enumerate(staff):
        office.imap_login(start + timedelta(minutes=index), SPAIN_HOTEL[1], account)
    assert office.alerts == []
    assert len(office.detector.shared.addresses) == 1  # new to them, but one company


def test_local_mailbox_delivery_counts_a_filter_hop_does_not() -> None:
    """Recipients delivered over LMTP to the server's own mailboxes are the account's
    recipients (internal phishing); a hand-over to a content filter is not an outcome."""
    traffic, start = learned()
    message = Message(
        host="mx",
        queue_id="4F2A61C0B3",
        service="postfix/submission",
        first_seen=start,
        last_seen=start,
        client_name=HOME[0],
        client_ip=HOME[1],
        sasl_method="PLAIN",
        sasl_username="alice@example.org",
        sender="alice@example.org",
        nrcpt=2,
    )
    traffic.feed(Accepted(start, message))
    filter_hop = Outcome(
        "boss@example.org",
        "sent",
        "127.0.0.1[127.0.0.1]:10024",
        "2.0.0",
        start,
        "250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as 7C1D21C0B4",
    )
    lmtp = Outcome(
        "boss@example.org",
        "sent",
        "mail.example.org[private/dovecot-lmtp]",
        "2.0.0",
        start,
        "250 2.0.0 <boss@example.org> kBz0HpzUZ2ZhLgAAZU03Dg Saved",
    )
    traffic.feed(Delivered(start, message, filter_hop))
    counts = traffic.detector.evidence(Subject("account", "alice@example.org"), start.timestamp())
    assert counts["counts"].get("delivered_1h", 0) == 0
    traffic.feed(Delivered(start, message, lmtp))
    counts = traffic.detector.evidence(Subject("account", "alice@example.org"), start.timestamp())
    assert counts["counts"]["delivered_1h"] == 1


def test_a_few_messages_to_thousands_are_no_handful() -> None:
    """Ten messages of 400 freemail recipients each, from a new country, reach critical:
    a handful of messages caps nothing when it carries thousands of recipients."""
    traffic, start = learned()
    for index in range(10):
        recipients = [f"r{index}x{n}@{FREEMAIL[n % len(FREEMAIL)]}" for n in range(400)]
        traffic.message(
            start + timedelta(minutes=6 * index), "alice@example.org", BRAZIL, recipients
        )
    assert traffic.alerts and traffic.alerts[-1].severity == "critical"


def test_one_campaign_drawing_a_few_spam_replies_is_quiet() -> None:
    """One message to 200 customers from home: a few providers defer part of it with their
    "unsolicited mail" wording.  A handful of messages is no spam run."""
    traffic, start = learned()
    customers = [f"customer{n}@{FREEMAIL[n % len(FREEMAIL)]}" for n in range(200)]
    pushback = (
        "421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating "
        "from your IP address. To protect our users from spam, mail sent from your IP "
        "address has been temporarily rate limited."
    )
    traffic.message(
        start, "alice@example.org", HOME, customers[:190], helo="alice-laptop.example.org"
    )
    for index in range(6):
        traffic.message(
            start + timedelta(minutes=1 + index),
            "alice@example.org",
            HOME,
            customers[190 + index : 191 + index],
            status="deferred",
            reply=pushback,
            helo="alice-laptop.example.org",
        )
    assert traffic.alerts == []


def test_evidence_names_the_alerting_hosts_queue_ids_apart_from_the_others() -> None:
    """One account abused through two hosts (one log, or one shared database): a queue ID
    means another message on each host, so the alert's own host's IDs are the ones a hold
    may name, and the other host's are listed under that host."""
    traffic, start = learned()
    spam_burst(traffic, start, 40, hosts=("mx2", "mx1"))
    alert = traffic.alerts[-1]
    others = "mx1" if alert.host == "mx2" else "mx2"
    own_ids = set(alert.evidence["queue_ids"])
    other_ids = set(alert.evidence["queue_ids_by_host"][others])
    assert own_ids and other_ids and not own_ids & other_ids
    assert set(alert.evidence["queue_ids_by_host"]) == {others}


def test_a_stale_password_at_home_bans_nothing_but_guessing_from_there_does() -> None:
    """The owner's phone retries an old password every minute for two hours from home while
    the desktop there sends as usual: nothing is raised.  A machine at that address guessing
    other people's passwords is still a brute forcer."""
    traffic, start = learned()
    for minute in range(120):
        when = start + timedelta(minutes=minute)
        traffic.imap_failure(when, HOME[1], "alice@example.org")
        if minute % 20 == 0:
            traffic.imap_login(when, HOME[1], "alice@example.org")
            traffic.message(when, "alice@example.org", HOME, [f"friend{minute}@example.net"])
    assert traffic.alerts == []
    later = start + timedelta(hours=3)
    for index in range(30):
        traffic.sasl_failure(
            later + timedelta(seconds=10 * index), HOME[1], f"user{index}@example.org"
        )
    assert {alert.subject for alert in traffic.alerts} == {HOME[1]}
    assert traffic.alerts[0].reasons[0].signal == "brute_force"
