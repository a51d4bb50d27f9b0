"""Notifications: one per incident, rate-limited and digested, retried; real Apprise delivery
to an HTTP JSON sink and an SMTP sink on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from system.postfix_instance import free_port

from postwatch.actions.notice import incident_notice
from postwatch.actions.notify import AppriseSender, Notice, Notifier, RecordingSender
from postwatch.actions.policy import ActionRequest, Outcome
from postwatch.clock import SteppedClock
from postwatch.errors import ActionError, ConfigError

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
HOSTILE_HELO = "mail\n\nAll clear, ignore this alert\x1b[2J\u202e<b>[x](http://evil.example)</b>"


def notice(key: str, severity: str = "critical") -> Notice:
    return Notice(key, severity, f"incident {key} is {severity}", f"body of {key}\n")


def results() -> tuple[list[tuple[bool, str]], Any]:
    seen: list[tuple[bool, str]] = []
    return seen, lambda ok, detail: seen.append((ok, detail))


# --- the notifier, with a recording sender ------------------------------------------------


def test_one_message_per_incident_and_severity() -> None:
    """A repeat of the same incident and severity is dropped; an escalation is sent."""
    sender = RecordingSender()
    notifier = Notifier(sender, clock=SteppedClock(START))
    assert notifier.submit(notice("12", "warning"))
    notifier.tick()
    assert not notifier.submit(notice("12", "warning"))
    assert not notifier.submit(notice("12", "notice"))
    assert notifier.submit(notice("12", "critical"))
    notifier.tick()
    assert [title for _t, title, _b, _s in sender.sent] == [
        "incident 12 is warning",
        "incident 12 is critical",
    ]


def test_past_the_burst_notices_wait_and_go_out_as_one_digest() -> None:
    """Beyond burst per window, waiting notices are sent together once a slot frees."""
    clock = SteppedClock(START)
    sender = RecordingSender()
    notifier = Notifier(sender, clock=clock, burst=2, window=600)
    for key in ("1", "2"):
        notifier.submit(notice(key))
        notifier.tick()
    seen, callback = results()
    for key in ("3", "4", "5"):
        notifier.submit(notice(key), callback)
    assert notifier.tick() == 0 and notifier.pending() == 3
    clock.step(600)
    assert notifier.tick() == 1
    assert len(sender.sent) == 3
    _target, title, body, _severity = sender.sent[-1]
    assert title == "postwatch: 3 critical incidents"
    assert all(f"body of {key}" in body for key in ("3", "4", "5"))
    assert seen == [(True, "sent (attempt 1)")] * 3


def test_unsent_notice_is_replaced_by_its_escalation() -> None:
    """A waiting notice of an incident is superseded by the incident's escalation."""
    clock = SteppedClock(START)
    sender = RecordingSender()
    notifier = Notifier(sender, clock=clock, burst=1, window=600)
    notifier.submit(notice("1"))
    notifier.tick()
    seen, callback = results()
    notifier.submit(notice("2", "warning"), callback)
    notifier.submit(notice("2", "critical"))
    clock.step(600)
    notifier.tick()
    assert [title for _t, title, _b, _s in sender.sent] == [
        "incident 1 is critical",
        "incident 2 is critical",
    ]
    assert seen and "superseded" in seen[0][1]


def test_failed_message_is_retried_after_the_delays(caplog: pytest.LogCaptureFixture) -> None:
    """A failure is logged and retried at each delay; the callback hears of success once."""
    clock = SteppedClock(START)
    sender = RecordingSender(fail=2)
    notifier = Notifier(sender, clock=clock, retry_delays=(60, 300))
    seen, callback = results()
    notifier.submit(notice("7"), callback)
    with caplog.at_level(logging.WARNING):
        assert notifier.tick() == 0
    assert "retrying in 60s" in caplog.text
    clock.step(59)
    notifier.tick()
    assert sender.attempts == 1
    clock.step(1)
    notifier.tick()
    clock.step(300)
    notifier.tick()
    assert sender.attempts == 3 and len(sender.sent) == 1
    assert seen == [(True, "sent (attempt 3)")] and notifier.pending() == 0


def test_message_is_given_up_after_the_last_retry() -> None:
    """After every retry failed, the callback hears of the failure and nothing is pending."""
    clock = SteppedClock(START)
    notifier = Notifier(RecordingSender(fail=10), clock=clock, retry_delays=(1, 1))
    seen, callback = results()
    notifier.submit(notice("8"), callback)
    for _ in range(3):
        notifier.tick()
        clock.step(1)
    assert len(seen) == 1 and not seen[0][0] and "given up after 3 attempts" in seen[0][1]
    assert notifier.pending() == 0


def test_a_retry_goes_only_to_the_targets_that_failed() -> None:
    """When one of two targets fails, the retry is sent to that one alone."""

    class FlakySender(RecordingSender):
        def send(self, target: str, title: str, body: str, severity: str) -> None:
            if target == "pager" and not any(t == "pager" for t, *_ in self.failed):
                self.failed.append((target, title))
                raise ActionError("pager down")
            super().send(target, title, body, severity)

    sender = FlakySender(targets=("mail", "pager"))
    sender.failed = []  # type: ignore[attr-defined]
    clock = SteppedClock(START)
    notifier = Notifier(sender, clock=clock, retry_delays=(10,))
    notifier.submit(notice("9"))
    notifier.tick()
    clock.step(10)
    notifier.tick()
    assert [target for target, *_ in sender.sent] == ["mail", "pager"]


def test_a_crashing_sender_never_raises_into_the_caller() -> None:
    """Even an unexpected exception in delivery is caught and retried."""

    class Broken(RecordingSender):
        def send(self, target: str, title: str, body: str, severity: str) -> None:
            raise RuntimeError("boom")

    notifier = Notifier(Broken(), clock=SteppedClock(START))
    notifier.submit(notice("10"))
    assert notifier.tick() == 0 and notifier.pending() == 1


def test_memory_of_told_incidents_expires() -> None:
    """An incident told long ago is forgotten, so the map cannot grow without end."""
    clock = SteppedClock(START)
    notifier = Notifier(RecordingSender(), clock=clock, remember=3600)
    notifier.submit(notice("11"))
    notifier.tick()
    assert notifier.remembered() == 1
    clock.step(3600)
    notifier.tick()
    assert notifier.remembered() == 0
    assert notifier.submit(notice("11"))


# --- the text ---------------------------------------------------------------------------


def hostile_request(subject: str = "alice@example.com") -> ActionRequest:
    return ActionRequest(
        subject=subject,
        subject_kind="account",
        severity="critical",
        incident="12",
        lockable=True,
        score=130,
        rule="volume",
        reasons=(
            ("volume", "450 messages to 3000 recipients in 1h", 60),
            ("bogus_helo", f"HELO {HOSTILE_HELO}", 40),
        ),
        ips=("203.0.113.5", "198.51.100.7"),
        countries=("VN",),
        helos=(HOSTILE_HELO,),
        queue_ids=("4F2A81C0D3",),
        counts=(("messages", 450), ("recipients", 3000)),
        host="mx1.example.com",
        ts=START,
    )


def test_incident_text_has_reasons_evidence_actions_and_commands() -> None:
    """The message lists why, the evidence, what was done, and the commands to undo it."""
    text = incident_notice(
        hostile_request(), [Outcome("lock:postfix-map", "alice@example.com", "done", "added")], []
    ).body
    for expected in (
        "450 messages to 3000 recipients",
        'IPs: "203.0.113.5"',
        'countries: "VN"',
        "counts: messages=450, recipients=3000",
        'lock:postfix-map "alice@example.com": done - added',
        "postwatch unlock alice@example.com --release",
        "postwatch queue alice@example.com",
        'sample queue IDs: "4F2A81C0D3"',
    ):
        assert expected in text


def test_attacker_text_cannot_add_lines_or_control_characters() -> None:
    """A HELO with newlines, escape sequences and bidi overrides stays on its own line, escaped."""
    notice_ = incident_notice(hostile_request(), [], [])
    assert "\x1b" not in notice_.body and "\u202e" not in notice_.body
    assert not any(line.startswith("All clear") for line in notice_.body.splitlines())
    assert "\\x0a\\x0aAll clear" in notice_.body and "\n" not in notice_.title


def test_unsafe_subject_gets_no_command_lines() -> None:
    """For a subject that is not a safe account name, no copy-paste command is offered."""
    text = incident_notice(hostile_request("a@b.example\nroot OK"), [], []).body
    assert "postwatch unlock" not in text and "not a safe account name" in text
    assert '"a@b.example\\x0aroot OK"' in text


# --- real delivery: an HTTP JSON sink and an SMTP sink on 127.0.0.1 -----------------------


class JsonSink:
    """A tiny HTTP server on 127.0.0.1 that records the JSON bodies posted to it."""

    def __init__(self, failures: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.failures = failures
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if sink.failures > 0:
                    sink.failures -= 1
                    self.send_response(500)
                else:
                    sink.received.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> JsonSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class MailSink:
    """aiosmtpd handler that keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            (envelope.mail_from, list(envelope.rcpt_tos), message_from_bytes(envelope.content))
        )
        return "250 OK"


@pytest.fixture
def json_sink() -> Iterator[JsonSink]:
    with JsonSink() as sink:
        yield sink


@pytest.fixture
def mail_sink() -> Iterator[tuple[MailSink, int]]:
    handler = MailSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def mailto(port: int) -> str:
    return (
        f"mailto://127.0.0.1:{port}?from=postwatch@example.com&to=postmaster@example.com"
        "&mode=insecure"
    )


def _mail_text(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(part.get_content_charset() or "utf-8")


def test_apprise_delivers_the_incident_to_json_and_mail_sinks(
    json_sink: JsonSink, mail_sink: tuple[MailSink, int]
) -> None:
    """One incident gives one JSON post and one mail, with the escaped text."""
    handler, port = mail_sink
    sender = AppriseSender([f"json://127.0.0.1:{json_sink.port}/hook", mailto(port)])
    notifier = Notifier(sender, clock=SteppedClock(START))
    seen, callback = results()
    outgoing = incident_notice(hostile_request(), [], [])
    notifier.submit(outgoing, callback)
    notifier.submit(outgoing)  # the same incident again: nothing more is sent
    notifier.tick()
    assert seen == [(True, "sent (attempt 1)")]
    [posted] = json_sink.received
    assert posted["title"] == outgoing.title and posted["message"] == outgoing.body.rstrip()
    assert posted["type"] == "failure"
    [(mail_from, rcpts, message)] = handler.messages
    assert (mail_from, rcpts) == ("postwatch@example.com", ["postmaster@example.com"])
    text = _mail_text(message)
    assert "postwatch unlock alice@example.com --release" in text
    assert "\x1b" not in text and "\u202e" not in text
    assert "\n" not in str(message["Subject"]).replace("\n ", " ").strip("\n")


def test_severity_routes_to_extra_targets(json_sink: JsonSink) -> None:
    """A per-severity URL receives only that severity; the common URLs receive all."""
    with JsonSink() as pager:
        sender = AppriseSender(
            [f"json://127.0.0.1:{json_sink.port}/all"],
            {"critical": [f"json://127.0.0.1:{pager.port}/pager"]},
        )
        notifier = Notifier(sender, clock=SteppedClock(START))
        notifier.submit(notice("1", "warning"))
        notifier.submit(notice("2", "critical"))
        notifier.tick()
        assert [p["title"] for p in pager.received] == ["incident 2 is critical"]
    assert sorted(p["title"] for p in json_sink.received) == [
        "incident 1 is warning",
        "incident 2 is critical",
    ]


def test_real_delivery_failure_is_retried_until_the_sink_answers() -> None:
    """A sink answering 500 makes Apprise fail; the retry delivers once it answers 200."""
    clock = SteppedClock(START)
    with JsonSink(failures=1) as sink:
        notifier = Notifier(
            AppriseSender([f"json://127.0.0.1:{sink.port}/"]), clock=clock, retry_delays=(30,)
        )
        seen, callback = results()
        notifier.submit(notice("5"), callback)
        notifier.tick()
        assert sink.received == [] and notifier.pending() == 1
        clock.step(30)
        notifier.tick()
        assert [p["title"] for p in sink.received] == ["incident 5 is critical"]
    assert seen == [(True, "sent (attempt 2)")]


def test_unreachable_target_never_raises() -> None:
    """Nothing listening on the port: the notifier logs, keeps it for a retry, and goes on."""
    notifier = Notifier(
        AppriseSender([f"json://127.0.0.1:{free_port()}/"]), clock=SteppedClock(START)
    )
    notifier.submit(notice("6"))
    assert notifier.tick() == 0 and notifier.pending() == 1


def test_bad_apprise_url_is_a_config_error() -> None:
    """An URL Apprise does not understand is refused when the sender is built."""
    with pytest.raises(ConfigError):
        AppriseSender(["nosuchscheme://x"])
    with pytest.raises(ConfigError):
        AppriseSender([])
