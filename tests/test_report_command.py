"""``postwatch report`` end to end: from log files, from the state store, locks, sending."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message as EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from conftest import MAILLOGS
from sqlalchemy import text
from system.postfix_instance import free_port

from bench.scenarios import build_scenario
from postwatch.actions.journal import SqlJournal
from postwatch.actions.notify import RecordingSender
from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Detector
from postwatch.errors import ActionError, StoreError, UsageError
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.report.command import ReportContext, report_command
from postwatch.report.locks import current_locks
from postwatch.report.stored import STORE_NOTE_NO_VOLUMES
from postwatch.sources.files import read_lines
from postwatch.store import Store

DEMO = MAILLOGS / "demo" / "mail.log"
DEMO_GOLDEN = json.loads((MAILLOGS / "demo" / "mail.golden.json").read_text())
NOW = datetime(2025, 11, 26, 6, 0, tzinfo=UTC)
GEO = Geo()  # the bundled database, loaded once for the module


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch):
    for name in ("POSTWATCH_CONFIG", "POSTWATCH_DB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config whose state directory (store, action journal) is the test's own."""
    path = tmp_path / "postwatch.toml"
    path.write_text(f'[store]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return path


def run(args: list[str], *, sender=None, clock=None):
    context = ReportContext(clock=clock or SteppedClock(NOW), sender=sender, geo=GEO)
    return CliRunner().invoke(report_command, args, obj=context)


def report_json(args: list[str]) -> dict:
    result = run([*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo day (one stolen password, one password guesser), reported from the log."""
    folder = tmp_path_factory.mktemp("demo")
    config = folder / "postwatch.toml"
    config.write_text(f'[store]\nstate_dir = "{folder / "state"}"\n', encoding="utf-8")
    data = report_json(["--config", str(config), "--year", "2025", "--tz", "UTC", str(DEMO)])
    assert not (folder / "state").exists()  # a report writes no state
    return data


def test_the_stolen_account_tops_the_senders(demo):
    """The account whose password was stolen is the busiest login, with its spam counted."""
    victim = DEMO_GOLDEN["abusive"][0]
    top = demo["accounts"][0]
    assert top["account"] == victim["subject"]
    assert top["messages"] >= victim["abusive_messages"]
    assert top["severity"] in ("warning", "critical")
    assert len(top["countries"]) >= 2 and top["bounced_share"] > 0.1


def test_the_burst_hour_is_the_peak_of_the_chart(demo):
    """The victim's hourly chart peaks in the hour its spam run started."""
    victim = DEMO_GOLDEN["abusive"][0]
    start = datetime.fromisoformat(demo["bins_start"])
    hourly = demo["accounts"][0]["hourly"]
    peak = start + timedelta(hours=hourly.index(max(hourly)))
    assert peak == datetime.fromisoformat(victim["first_abuse_ts"]).replace(
        minute=0, second=0, microsecond=0
    )


def test_abusers_have_incidents_and_their_targets_none(demo):
    """Both abusers of the golden file have incidents; the accounts only guessed at have none."""
    subjects = {(row["subject_kind"], row["subject"]) for row in demo["incidents"]}
    for entry in DEMO_GOLDEN["abusive"]:
        assert (entry["subject_kind"], entry["subject"]) in subjects
    targets = set(DEMO_GOLDEN["lookalikes"]) - {e["subject"] for e in DEMO_GOLDEN["abusive"]}
    assert targets and not {subject for kind, subject in subjects if kind == "account"} & targets


def test_the_password_guesser_tops_the_attackers(demo):
    """The brute-forcing address is the first attacker, with its usernames tried."""
    guesser = DEMO_GOLDEN["abusive"][1]["subject"]
    first = demo["attackers"][0]
    assert first["ip"] == guesser
    assert first["usernames"] >= 50 and first["severity"] == "critical"
    assert first["sample_usernames"][0] in DEMO_GOLDEN["lookalikes"]


def test_a_window_cuts_the_counts(demo):
    """An hour's window counts only that hour's mail; the rest is history."""
    hour = report_json(
        [
            "--year",
            "2025",
            "--tz",
            "UTC",
            "--since",
            "2025-11-25 10:00",
            "--until",
            "2025-11-25 11:00",
            str(DEMO),
        ]
    )
    victim = DEMO_GOLDEN["abusive"][0]["subject"]
    row = next(row for row in hour["accounts"] if row["account"] == victim)
    start = datetime.fromisoformat(demo["bins_start"])
    assert row["messages"] == demo["accounts"][0]["hourly"][10]
    assert row["hourly"] == [row["messages"]]
    assert hour["window"]["start"] == (start + timedelta(hours=10)).isoformat()


@pytest.fixture(scope="module")
def pickup_case(tmp_path_factory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("php_pickup")
    log = build_scenario("php_pickup", 1, folder, accounts=20, history_days=2)
    golden = json.loads((folder / "php_pickup.golden.json").read_text())
    return log, golden


def test_script_spam_is_reported_by_uid_against_history(pickup_case, config):
    """A PHP script's spam shows under its uid; steady logins get a baseline from history."""
    log, golden = pickup_case
    end = datetime.fromisoformat(golden["end"])
    args = ["--config", str(config), "--since", (end - timedelta(days=1)).isoformat()]
    data = report_json([*args, "--until", end.isoformat(), str(log)])
    abuse = next(entry for entry in golden["abusive"] if entry["subject_kind"] == "uid")
    row = next(row for row in data["pickups"] if str(row["uid"]) == abuse["subject"])
    assert row["severity"] == "critical"
    assert row["messages"] >= abuse["abusive_messages"]
    assert row["senders"] >= abuse["abusive_messages"] // 2
    steady = [row for row in data["accounts"] if row["baseline"]["messages_per_day"]]
    assert steady and all(row["baseline"]["days"] == 2.0 for row in steady)


def test_report_from_the_state_store(tmp_path, config):
    """Without FILES the store is read: incidents and origins; without hourly volumes (a store
    written before they were kept) a note says the message counts are unknown."""
    database = tmp_path / "state" / "postwatch.db"
    store = Store(f"sqlite:///{database}")
    pipeline = Pipeline(detector=Detector(DetectSettings(), store, GEO, SteppedClock(NOW)))
    pipeline.run(read_lines([str(DEMO)], tz=UTC, year=2025))
    pipeline.close()
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM volumes"))
    store.close()
    result = run(["--config", str(config), "--since", "2025-11-25", "--until", "2025-11-26"])
    assert result.exit_code == 0, result.output
    data = report_json(["--config", str(config), "--since", "2025-11-25", "--until", "2025-11-26"])
    victim = DEMO_GOLDEN["abusive"][0]["subject"]
    assert victim in result.output and STORE_NOTE_NO_VOLUMES[:80] in result.output
    row = next(row for row in data["accounts"] if row["account"] == victim)
    assert row["messages"] is None and row["severity"] in ("warning", "critical")
    assert row["hourly"] == [] and data["bins_start"] is None
    assert row["ips"] and row["countries"]
    assert {incident["subject"] for incident in data["incidents"]} >= {
        entry["subject"] for entry in DEMO_GOLDEN["abusive"]
    }


def test_a_missing_store_is_a_usage_error(config):
    """Reporting from a store that was never written says so instead of creating one."""
    result = run(["--config", str(config)])
    assert isinstance(result.exception, UsageError)
    assert "no state database" in str(result.exception)
    assert not (config.parent / "state").exists()


def test_a_foreign_database_is_a_store_error(config):
    """A file at the store's place that holds no postwatch tables fails with one message."""
    import sqlite3

    (config.parent / "state").mkdir()
    sqlite3.connect(config.parent / "state" / "postwatch.db").close()
    result = run(["--config", str(config)])
    assert isinstance(result.exception, StoreError)
    assert "cannot read the state database" in str(result.exception)


def journal_with_locks(config: Path, url: str = "") -> None:
    """Lock and unlock accounts in the journal where `postwatch lock` writes: the store's
    database (the state directory's postwatch.db unless ``url`` names another)."""
    url = url or f"sqlite:///{config.parent / 'state' / 'postwatch.db'}"
    Store(url).close()  # the store's schema holds the journal's table
    clock = SteppedClock(NOW - timedelta(hours=3))
    journal = SqlJournal(url, clock)
    steps = [
        ("lock:postfix-map", "alice@example.org", "done"),
        ("lock:dovecot", "alice@example.org", "done"),
        ("lock:postfix-map", "bob@example.org", "done"),
        ("unlock:postfix-map", "bob@example.org", "done"),
        ("lock:postfix-map", "carol@example.org", "failed"),
    ]
    for action, subject, state in steps:
        clock.step(60)
        entry = journal.start(action=action, subject=subject, incident="abc", reason="burst")
        journal.finish(entry, state, "ok")
    journal.close()


def test_locked_accounts_come_from_the_action_journal(config):
    """An account is locked while its last lock is not undone; failed locks never count."""
    journal_with_locks(config)
    data = report_json(["--config", str(config), "--year", "2025", str(DEMO)])
    assert [(row["account"], row["backends"]) for row in data["locks"]] == [
        ("alice@example.org", ["dovecot", "postfix-map"])
    ]
    assert data["locks"][0]["reason"] == "burst"


def test_a_report_from_another_database_reads_its_locks(config, tmp_path):
    """With --db the locks come from that database, where watch --db journals them."""
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    journal_with_locks(config, url)
    data = report_json(["--config", str(config), "--db", url])
    assert [row["account"] for row in data["locks"]] == ["alice@example.org"]
    assert report_json(["--config", str(config), "--year", "2025", str(DEMO)])["locks"] == []


def test_current_locks_follow_the_last_entry_per_backend():
    """A lock, unlock and lock again in one backend leave the account locked there."""
    from postwatch.actions.journal import JournalEntry

    def entry(number: int, action: str) -> JournalEntry:
        when = NOW + timedelta(minutes=number)
        return JournalEntry(number, action, "dan@example.org", "done", "", "postwatch", "",
                            {}, "", when, when)  # fmt: skip

    rows = current_locks([entry(3, "lock:sql"), entry(1, "lock:sql"), entry(2, "unlock:sql")])
    assert [(row.account, row.backends, row.since) for row in rows] == [
        ("dan@example.org", ("sql",), NOW + timedelta(minutes=3))
    ]


def test_send_delivers_the_text_report(config):
    """--send gives the text report to every target, at the worst incident's severity."""
    sender = RecordingSender(targets=("ops", "chat"))
    result = run(["--config", str(config), "--year", "2025", "--send", str(DEMO)], sender=sender)
    assert result.exit_code == 0, result.output
    assert [target for target, *_ in sender.sent] == ["ops", "chat"]
    _target, title, body, severity = sender.sent[0]
    assert severity == "critical" and "incidents" in title
    assert body == result.stdout


def test_a_failed_delivery_is_a_runtime_error(config):
    """When a target refuses the report the command fails, after printing it."""
    sender = RecordingSender(fail=1)
    result = run(["--config", str(config), "--year", "2025", "--send", str(DEMO)], sender=sender)
    assert isinstance(result.exception, ActionError)
    assert "postwatch report" in result.stdout


def test_send_needs_notification_urls(config):
    """--send without [actions.notify] is a usage error, before any work."""
    result = run(["--config", str(config), "--send", str(DEMO)])
    assert isinstance(result.exception, UsageError)
    assert "[actions.notify]" in str(result.exception)


def test_html_goes_to_the_output_file(tmp_path, config):
    """--format html -o FILE writes one self-contained page and nothing to stdout."""
    target = tmp_path / "report.html"
    args = ["--config", str(config), "--year", "2025", "--format", "html", "-o", str(target)]
    result = run([*args, str(DEMO)])
    assert result.exit_code == 0 and result.stdout == ""
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 1
    assert DEMO_GOLDEN["abusive"][0]["subject"] in page


def test_attacker_text_from_a_log_is_escaped_in_html(tmp_path, config):
    """A login, a sender and a username tried that carry markup come out as text."""
    # Line shapes from zentyal's MailLogHelper.t (submission), anantg21's maillog (pickup)
    # and fail2ban's postfix log (SASL failure); the attacker's text where Postfix logs it.
    log = tmp_path / "mail.log"
    log.write_text(
        "Oct  1 11:47:51 u86 postfix/smtpd[10242]: connect from unknown[192.0.2.1]\n"
        "Oct  1 11:47:51 u86 postfix/smtpd[10242]: DBED828417: client=unknown[192.0.2.1], "
        "sasl_method=PLAIN, sasl_username=<script>alert(1)</script>@monos.org\n"
        "Oct  1 11:47:51 u86 postfix/qmgr[9572]: DBED828417: from=<macaco@monos.org>, "
        "size=890, nrcpt=1 (queue active)\n"
        "Oct  1 11:47:53 u86 postfix/smtp[10248]: DBED828417: to=<jamor@dplanet.com>, "
        "relay=mail.dplanet.com[67.23.8.134]:25, delay=1.6, delays=0.17/0.04/0.88/0.48, "
        "dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as C1EBF731439)\n"
        "Oct  1 11:47:53 u86 postfix/qmgr[9572]: DBED828417: removed\n"
        "Oct  1 12:31:10 u86 postfix/pickup[27143]: 0EA5228A: uid=33 "
        "from=<<svg/onload=alert(2)>@evil.example>\n"
        "Oct  1 12:31:10 u86 postfix/qmgr[1525]: 0EA5228A: from=<<svg/onload=alert(2)>@evil.example>, "
        "size=48977, nrcpt=1 (queue active)\n"
        "Oct  1 13:00:00 u86 postfix/smtpd[1234]: warning: unknown[192.0.2.66]: SASL LOGIN "
        "authentication failed: (reason unavailable), sasl_username=<iframe src=//evil.example>\n",
        encoding="utf-8",
    )
    result = run(["--config", str(config), "--year", "2025", "--format", "html", str(log)])
    assert result.exit_code == 0, result.output
    page = result.stdout
    assert "<script" not in page and "<svg/onload" not in page and "<iframe" not in page
    for shown in ("&lt;script&gt;alert(1)", "&lt;svg/onload=alert(2)&gt;", "&lt;iframe src="):
        assert shown in page


class MailSink:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def test_send_mails_the_report_through_apprise(tmp_path):
    """--send with a real Apprise mailto URL delivers the text report to an SMTP server."""
    handler, port = MailSink(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = tmp_path / "postwatch.toml"
        config.write_text(
            f'[store]\nstate_dir = "{tmp_path / "state"}"\n[actions.notify]\n'
            f'urls = ["mailto://127.0.0.1:{port}?from=postwatch@example.com'
            '&to=postmaster@example.com&mode=insecure"]\n',
            encoding="utf-8",
        )
        result = run(["--config", str(config), "--year", "2025", "--send", str(DEMO)])
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    [message] = handler.messages
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    assert "postwatch report" in str(message["Subject"])
    assert DEMO_GOLDEN["abusive"][0]["subject"] in text and "Top attacking IPs" in text
