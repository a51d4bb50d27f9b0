"""Rendering reports: attacker text stays inert on a terminal and in HTML; charts are inline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

from postwatch.report.html import chart, render_html
from postwatch.report.model import (
    AccountRow,
    AttackerRow,
    Baseline,
    IncidentRow,
    LockRow,
    PickupRow,
    Report,
)
from postwatch.report.text import render_text, sparkline
from postwatch.report.window import Window

T0 = datetime(2025, 11, 25, tzinfo=UTC)
# What attackers put where Postfix logs their text: markup, attribute breakers, terminal
# escapes, a bidi override, line breaks.
HOSTILE = (
    '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    "\x1b[2J\x1b]8;;http://evil.example/\x07\u202egpj.exe\r\nFAKE LINE"
)
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "thead",
    "tbody", "tr", "th", "td", "ul", "li", "svg", "line", "rect", "text",
}  # fmt: skip


def report(text: str = HOSTILE) -> Report:
    """A report with ``text`` in every field an attacker can reach."""
    account = AccountRow(
        account=text,
        messages=180,
        recipients=340,
        unique_recipients=300,
        ips=("192.0.2.7",),
        ip_count=1,
        countries=("VN",),
        outcomes=340,
        deferred=40,
        bounced=80,
        baseline=Baseline(days=3.0, messages_per_day=4.0, deferred_share=0.0, bounced_share=0.01),
        hourly=(0, 2, 0, 178),
        severity="critical",
        locked=True,
    )
    incident = IncidentRow(
        id="0123456789abcdef",
        subject_kind="account",
        subject=text,
        scope="",
        host=text,
        state="open",
        severity="critical",
        score=120,
        opened=T0,
        updated=T0 + timedelta(hours=1),
        closed=None,
        reasons=(("bogus_helo", f"HELO {text!r} looks randomly generated", 30),),
        ips=("192.0.2.7",),
        countries=("VN",),
        helos=(text,),
        queue_ids=("94E6813B005",),
    )
    return Report(
        generated=T0 + timedelta(days=1),
        source="logs",
        window=Window(T0, T0 + timedelta(days=1)),
        first_seen=T0,
        last_seen=T0 + timedelta(hours=23),
        hosts=(text,),
        lines=5051,
        accounts=(account,),
        accounts_total=1,
        incidents=(incident,),
        locks=(LockRow(text, ("postfix-map",), T0, text, text, text),),
        attackers=(AttackerRow("192.0.2.66", "RU", text, 67, 50, (text, text), 0, "critical"),),
        pickups=(PickupRow(text, 33, 600, 2000, 600, (text,), 2000, 300, 450, "critical"),),
        bins_start=T0 + timedelta(hours=9),
        bin_hours=1,
    )


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def test_html_keeps_attacker_text_as_text():
    """Markup in logins, HELOs, hosts and senders shows as text; it adds no tag or attribute."""
    page = render_html(report())
    parser = TagCollector()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert tags <= ALLOWED_TAGS
    attributes = {name for _, attrs in parser.tags for name, _ in attrs}
    assert not {name for name in attributes if name.startswith("on")}
    assert not attributes & {"src", "href", "srcset", "action", "formaction"}
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_html_escapes_control_and_bidi_characters():
    """Terminal escapes, bidi overrides and line breaks from a log are shown escaped."""
    page = render_html(report())
    assert "\x1b" not in page and "\u202e" not in page and "\r" not in page
    assert "\\x1b[2J" in page and "\\u202e" in page


def test_html_is_self_contained():
    """The page loads nothing: inline style and SVG only, and a policy that forbids loading."""
    page = render_html(report("alice@example.org"))
    assert "default-src 'none'" in page
    parser = TagCollector()
    parser.feed(page)
    urls = [value for _, attrs in parser.tags for name, value in attrs if value and "://" in value]
    assert urls == ["http://www.w3.org/2000/svg"]  # the SVG namespace, never fetched


def test_text_cannot_drive_the_terminal_or_add_lines():
    """Attacker text on the terminal is escaped: no escape sequence, no extra line."""
    hostile, benign = render_text(report()), render_text(report("alice@example.org"))
    assert "\x1b" not in hostile and "\u202e" not in hostile and "\r" not in hostile
    assert len(hostile.splitlines()) == len(benign.splitlines())
    assert "FAKE LINE" not in [line.strip() for line in hostile.splitlines()]


def test_text_shows_counts_shares_and_baseline():
    """A login's row shows its messages, usual volume and shares against the baseline."""
    text = render_text(report("alice@example.org"))
    row = next(line for line in text.splitlines() if line.startswith("  alice@example.org"))
    assert row.split()[1:7] == ["180", "4", "340", "300", "1", "VN"]
    assert "12% (0%)" in row and "24% (1%)" in row and "critical LOCKED" in row


def test_sparkline_scales_to_the_busiest_bin():
    """The busiest bin is a full block, an empty one a dot, a small one the lowest bar."""
    assert sparkline([0, 1, 8]) == ".▁█"
    assert sparkline([0, 0]) == ".."


def test_chart_has_one_bar_per_busy_bin_with_its_time():
    """The SVG chart draws a bar for each non-empty bin, titled with its hour and count."""
    svg = chart([0, 3, 0, 178], T0, 1, "messages")
    assert svg.count("<rect") == 2
    assert "<title>2025-11-25 03:00: 178</title>" in svg
    assert "<title>2025-11-25 01:00: 3</title>" in svg


def test_json_round_trips_every_section():
    """The JSON form is plain JSON with every section and the attacker text as data."""
    data = json.loads(json.dumps(report().to_json()))
    assert data["accounts"][0]["account"] == HOSTILE
    assert data["accounts"][0]["deferred_share"] == 40 / 340
    assert data["incidents"][0]["reasons"][0]["signal"] == "bogus_helo"
    assert {"locks", "attackers", "pickups", "notes", "window"} <= set(data)
