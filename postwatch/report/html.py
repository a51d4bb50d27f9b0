"""The report as one self-contained HTML page: tables, and an inline SVG chart per login.

No external asset, no script: the page carries its own style and a Content-Security-Policy
that forbids loading anything, so it can be mailed, archived or opened offline.  Every
string that came from a log line is made :func:`~postwatch.actions.subject.printable` (control
and bidi characters escaped) and then HTML-escaped, in text and in attributes alike: a HELO
name or a login like ``<script>`` shows as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from postwatch.actions.subject import printable
from postwatch.report.model import AccountRow, Report, share
from postwatch.report.text import number, percent

CHARTED = 10
CHART_WIDTH = 480  # bars share this many pixels, 2 to 20 each
CHART_HEIGHT = 60
LABEL_HEIGHT = 14
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}
th,td{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.critical{color:#fff;background:#b00020}.warning{background:#ffb300}.notice{background:#ffe082}
.muted{color:#777}ul{margin:.2em 0}svg{display:block}.bar{fill:#3f6fb5}.axis{stroke:#999}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'"


def esc(text: object, limit: int = 200) -> str:
    """Attacker (or any) text, safe in an HTML text node or a quoted attribute."""
    return html.escape(printable(text if isinstance(text, str) else str(text), limit), quote=True)


def render_html(report: Report) -> str:
    title = f"postwatch report: {report.period()}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _summary(report),
        _accounts(report),
        _charts(report),
        _incidents(report),
        _locks(report),
        _attackers(report),
        _pickups(report),
    ]
    if report.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts += [f"<li>{esc(note, 2000)}</li>" for note in report.notes]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(part for part in parts if part) + "\n"


def _when(ts: datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M}" if ts else "-"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; ``headers`` are ours, cells are already escaped HTML."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in headers)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(text: object, limit: int = 200) -> str:
    return f"<td>{esc(text, limit)}</td>"


def _num(value: float | None) -> str:
    return f'<td class="n">{number(value)}</td>'


def _severity(severity: str) -> str:
    if not severity:
        return '<td class="muted">-</td>'
    return f'<td class="{esc(severity, 20)}">{esc(severity, 20)}</td>'


def _summary(report: Report) -> str:
    source = (
        f"log files, {report.lines:,} lines in the window"
        if report.source == "logs" and report.lines is not None
        else "the state store"
    )
    hosts = ", ".join(printable(host, 60) for host in report.hosts[:10]) or "-"
    return (
        f"<p>From {esc(source)}; {report.span_name} {_when(report.first_seen)} to "
        f"{_when(report.last_seen)} UTC; hosts: {esc(hosts, 700)}. Generated "
        f"{report.generated:%Y-%m-%d %H:%M} UTC.</p>"
    )


def _accounts(report: Report) -> str:
    heading = (
        f"<h2>SASL logins ({len(report.accounts)} of {report.accounts_total} "
        f"{report.accounts_name} in the window)</h2><p class=muted>usual: messages a day "
        "before the window (^: the learned busiest day); in brackets: the share before the "
        "window.</p>"
    )
    if not report.accounts:
        return heading + "<p>None.</p>"
    rows = []
    for row in report.accounts:
        rows.append(
            [
                _td(row.account, 320),
                _num(row.messages),
                f'<td class="n">{esc(_usual(row))}</td>',
                _num(row.recipients),
                _num(row.unique_recipients),
                _num(row.ip_count),
                _td(" ".join(row.countries[:12])),
                _td(f"{percent(row.deferred_share)} ({percent(row.baseline.deferred_share)})"),
                _td(f"{percent(row.bounced_share)} ({percent(row.baseline.bounced_share)})"),
                _severity(row.severity),
                _td("locked" if row.locked else ""),
                _td(", ".join(row.ips[:5]) + (" ..." if len(row.ips) > 5 else ""), 400),
            ]
        )
    headers = (
        "login",
        "messages",
        "usual",
        "recipients",
        "unique",
        "IPs",
        "countries",
        "deferred",
        "bounced",
        "incident",
        "",
        "busiest IPs",
    )
    return heading + _table(headers, rows)


def _usual(row: AccountRow) -> str:
    if row.baseline.messages_per_day is not None:
        return number(row.baseline.messages_per_day)
    if row.baseline.peak_messages_24h is not None:
        return "^" + number(row.baseline.peak_messages_24h)
    return "-"


def chart(values: Sequence[int], start: datetime, bin_hours: int, label: str) -> str:
    """An inline SVG bar chart of ``values``, one bar per bin, each with its tooltip."""
    top = max(values, default=0) or 1
    bar = max(2, min(20, CHART_WIDTH // max(1, len(values))))
    width = len(values) * bar
    height = CHART_HEIGHT + LABEL_HEIGHT
    bars = []
    for index, value in enumerate(values):
        if not value:
            continue
        tall = max(1, round(value / top * (CHART_HEIGHT - 2)))
        at = start + timedelta(hours=bin_hours * index)
        bars.append(
            f'<rect class="bar" x="{index * bar}" y="{CHART_HEIGHT - tall}" '
            f'width="{max(1, bar - 1)}" height="{tall}"><title>{at:%Y-%m-%d %H:%M}: '
            f"{value:,}</title></rect>"
        )
    end = start + timedelta(hours=bin_hours * len(values))
    labels = (
        f'<text x="0" y="{height - 2}" font-size="11">{start:%m-%d %H:%M}</text>'
        f'<text x="{width}" y="{height - 2}" font-size="11" text-anchor="end">'
        f"{end:%m-%d %H:%M}</text>"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{max(width, 160)}" height="{height}" '
        f'viewBox="0 0 {max(width, 160)} {height}" role="img" aria-label="{esc(label, 400)}">'
        f'<line class="axis" x1="0" y1="{CHART_HEIGHT}" x2="{width}" y2="{CHART_HEIGHT}"/>'
        + "".join(bars)
        + labels
        + "</svg>"
    )


def _charts(report: Report) -> str:
    charted = [row for row in report.accounts if row.hourly and any(row.hourly)][:CHARTED]
    if not charted or report.bins_start is None:
        return ""
    unit = "hour" if report.bin_hours == 1 else "day" if report.bin_hours == 24 else "week"
    parts = [
        f"<h2>Messages per {unit}</h2><p class=muted>From {_when(report.bins_start)} UTC, "
        f"one bar per {unit}; each chart has its own scale.</p><table><tbody>"
    ]
    for row in charted:
        label = f"messages per {unit} of {printable(row.account, 320)}"
        parts.append(
            f"<tr>{_td(row.account, 320)}<td>"
            f"{chart(row.hourly, report.bins_start, report.bin_hours, label)}</td>"
            f'<td class="n">busiest {max(row.hourly):,}</td></tr>'
        )
    parts.append("</tbody></table>")
    return "".join(parts)


def _incidents(report: Report) -> str:
    opened = sum(1 for row in report.incidents if row.state == "open")
    heading = f"<h2>Incidents: {opened} open, {len(report.incidents) - opened} closed</h2>"
    if not report.incidents:
        return heading + "<p>None.</p>"
    rows = []
    for row in report.incidents:
        reasons = "".join(
            f"<li>{esc(signal, 40)}: {esc(detail, 300)} (+{points})</li>"
            for signal, detail, points in row.reasons
        )
        evidence = [
            ("IPs", row.ips),
            ("countries", row.countries),
            ("HELOs", row.helos),
            ("queue IDs", row.queue_ids),
        ]
        shown = "".join(
            f"<li>{name}: {esc(', '.join(items), 600)}</li>" for name, items in evidence if items
        )
        subject = f"{row.subject_kind} {row.subject}" + (f" on {row.scope}" if row.scope else "")
        rows.append(
            [
                _td(row.state),
                _severity(row.severity),
                _num(row.score),
                _td(subject, 400),
                _td(_when(row.opened)),
                _td(_when(row.updated)),
                _td(_when(row.closed)),
                f"<td><ul>{reasons}</ul><ul>{shown}</ul></td>",
            ]
        )
    headers = ("state", "severity", "score", "subject", "opened", "updated", "closed", "why")
    return heading + _table(headers, rows)


def _locks(report: Report) -> str:
    heading = f"<h2>Locked accounts: {len(report.locks)}</h2>"
    if not report.locks:
        return heading
    rows = [
        [
            _td(row.account, 320),
            _td(_when(row.since)),
            _td(", ".join(row.backends)),
            _td(row.actor, 80),
            _td(row.reason, 200),
            _td(row.incident, 40),
        ]
        for row in report.locks
    ]
    return heading + _table(("account", "since", "backends", "by", "reason", "incident"), rows)


def _attackers(report: Report) -> str:
    heading = "<h2>Top attacking IPs</h2>"
    if not report.attackers:
        return heading + "<p>None.</p>"
    rows = [
        [
            _td(row.ip, 64),
            _td(row.country or "-"),
            _td(row.asn or "-", 80),
            _num(row.failures),
            _num(row.usernames),
            _num(row.relay_denied),
            _severity(row.severity),
            _td(", ".join(row.sample_usernames), 400),
        ]
        for row in report.attackers
    ]
    headers = (
        "IP",
        "country",
        "network",
        "failed logins",
        "usernames",
        "relay refused",
        "incident",
        "usernames tried",
    )
    return heading + _table(headers, rows)


def _pickups(report: Report) -> str:
    heading = "<h2>Local submissions (sendmail/pickup) by uid</h2>"
    if not report.pickups:
        return heading + "<p>None.</p>"
    rows = [
        [
            _td(row.host, 80),
            _num(row.uid),
            _num(row.messages),
            _num(row.recipients),
            _num(row.senders),
            _td(percent(share(row.deferred, row.outcomes))),
            _td(percent(share(row.bounced, row.outcomes))),
            _severity(row.severity),
            _td(", ".join(row.top_senders), 400),
        ]
        for row in report.pickups
    ]
    headers = (
        "host",
        "uid",
        "messages",
        "recipients",
        "senders",
        "deferred",
        "bounced",
        "incident",
        "top senders",
    )
    return heading + _table(headers, rows)
