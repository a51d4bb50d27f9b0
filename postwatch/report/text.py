"""The report for a terminal or a plain-text mail: aligned tables, a sparkline per login.

Every string that came from a log line (logins, usernames tried, HELO names, senders, reason
details that quote them) passes :func:`~postwatch.actions.subject.printable`: one line,
control and bidi characters escaped, cut to its column, so it cannot move the cursor, clear
the screen or pass as the report's own text.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from postwatch.actions.subject import printable, shown
from postwatch.report.model import AccountRow, Report, share

SPARK = " ▁▂▃▄▅▆▇█"
CHARTED = 5  # logins with a sparkline
LOGIN_WIDTH = 38


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:,.1f}"


def cell(text: str, width: int) -> str:
    """Attacker text in a column of ``width``: escaped, cut with ``~`` when too long."""
    shown_text = printable(text, width * 2)
    return shown_text if len(shown_text) <= width else shown_text[: width - 1] + "~"


def _when(ts: datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M}" if ts else "-"


def render_text(report: Report) -> str:
    out = _header(report)
    out += _accounts(report)
    out += _chart(report)
    out += _incidents(report)
    out += _locks(report)
    out += _attackers(report)
    out += _pickups(report)
    if report.notes:
        out += ["", "Notes:"] + [f"  - {note}" for note in report.notes]
    return "\n".join(out) + "\n"


def _header(report: Report) -> list[str]:
    source = (
        f"from log files: {report.lines:,} lines in the window"
        if report.source == "logs" and report.lines is not None
        else "from the state store"
    )
    hosts = ", ".join(printable(host, 60) for host in report.hosts[:10]) or "-"
    return [
        f"postwatch report: {report.period()}",
        f"{source}; {report.span_name} {_when(report.first_seen)} to {_when(report.last_seen)}; "
        f"hosts: {hosts}",
        f"generated {report.generated:%Y-%m-%d %H:%M} UTC",
    ]


def _accounts(report: Report) -> list[str]:
    shown_count = len(report.accounts)
    out = [
        "",
        f"SASL logins ({shown_count} of {report.accounts_total} {report.accounts_name} "
        "in the window; "
        "usual = messages a day before the window, else the learned busiest day; "
        "(x%) = share before the window)",
    ]
    if not report.accounts:
        return [*out, "  (none)"]
    out.append(
        f"  {'login':<{LOGIN_WIDTH}} {'msgs':>6} {'usual':>6} {'rcpts':>6} {'uniq':>6} "
        f"{'IPs':>4}  {'countries':<12} {'deferred':<11} {'bounced':<11} incident"
    )
    for row in report.accounts:
        out.append(
            f"  {cell(row.account, LOGIN_WIDTH):<{LOGIN_WIDTH}} {number(row.messages):>6} "
            f"{_usual(row):>6} {number(row.recipients):>6} {number(row.unique_recipients):>6} "
            f"{row.ip_count:>4}  {cell(' '.join(row.countries), 12):<12} "
            f"{_versus(row.deferred_share, row.baseline.deferred_share):<11} "
            f"{_versus(row.bounced_share, row.baseline.bounced_share):<11} "
            f"{row.severity or '-'}{' LOCKED' if row.locked else ''}"
        )
    return out


def _usual(row: AccountRow) -> str:
    baseline = row.baseline
    if baseline.messages_per_day is not None:
        return number(baseline.messages_per_day)
    if baseline.peak_messages_24h is not None:
        return "^" + number(baseline.peak_messages_24h)
    return "-"


def _versus(now: float | None, usual: float | None) -> str:
    if now is None:
        return "-"
    return f"{percent(now)} ({percent(usual)})"


def sparkline(values: Sequence[int]) -> str:
    top = max(values, default=0)
    if not top:
        return "." * len(values)
    return "".join(
        "." if not value else SPARK[max(1, round(value / top * (len(SPARK) - 1)))]
        for value in values
    )


def _chart(report: Report) -> list[str]:
    charted = [row for row in report.accounts if row.hourly and any(row.hourly)][:CHARTED]
    if not charted or report.bins_start is None:
        return []
    unit = "hour" if report.bin_hours == 1 else "day" if report.bin_hours == 24 else "week"
    out = ["", f"Messages per {unit} from {report.bins_start:%Y-%m-%d %H:%M} UTC ('.' = none)"]
    for row in charted:
        peak = max(row.hourly)
        at = report.bins_start + timedelta(hours=report.bin_hours * row.hourly.index(peak))
        out.append(
            f"  {cell(row.account, LOGIN_WIDTH):<{LOGIN_WIDTH}} {sparkline(row.hourly)}  "
            f"busiest {peak:,} at {at:%Y-%m-%d %H:%M}"
        )
    return out


def _incidents(report: Report) -> list[str]:
    opened = sum(1 for row in report.incidents if row.state == "open")
    out = ["", f"Incidents: {opened} open, {len(report.incidents) - opened} closed"]
    if not report.incidents:
        return [*out, "  (none)"]
    for row in report.incidents:
        scope = f" on {printable(row.scope, 60)}" if row.scope else ""
        closed = f", closed {_when(row.closed)}" if row.closed else ""
        out.append(
            f"  {row.state:<6} {row.severity:<8} {row.score:>4}  {row.subject_kind} "
            f"{shown(row.subject, 80)}{scope}: opened {_when(row.opened)}, "
            f"updated {_when(row.updated)}{closed}"
        )
        out += [
            f"         - {printable(signal, 40)}: {printable(detail, 200)} (+{points})"
            for signal, detail, points in row.reasons
        ]
        evidence = [
            ("IPs", row.ips),
            ("countries", row.countries),
            ("HELOs", tuple(shown(helo, 60) for helo in row.helos)),
            ("queue IDs", row.queue_ids),
        ]
        parts = [f"{name}: {printable(', '.join(items), 300)}" for name, items in evidence if items]
        if parts:
            out.append(f"         {'; '.join(parts)}")
    return out


def _locks(report: Report) -> list[str]:
    out = ["", f"Locked accounts: {len(report.locks)}"]
    for row in report.locks:
        incident = f", incident {printable(row.incident, 40)}" if row.incident else ""
        out.append(
            f"  {shown(row.account, 80)} since {_when(row.since)} in "
            f"{', '.join(row.backends)} by {printable(row.actor, 60)}{incident}: "
            f"{printable(row.reason, 120)}"
        )
    return out


def _attackers(report: Report) -> list[str]:
    out = ["", "Top attacking IPs (failed logins, relay refusals)"]
    if not report.attackers:
        return [*out, "  (none)"]
    out.append(
        f"  {'IP':<39} {'country':<7} {'failures':>8} {'users':>6} {'relay':>6}  "
        f"{'incident':<8}  usernames tried"
    )
    for row in report.attackers:
        tried = ", ".join(shown(name, 40) for name in row.sample_usernames)
        out.append(
            f"  {row.ip:<39} {row.country or '-':<7} {number(row.failures):>8} "
            f"{number(row.usernames):>6} {number(row.relay_denied):>6}  "
            f"{row.severity or '-':<8}  {printable(tried, 200) or '-'}"
        )
    return out


def _pickups(report: Report) -> list[str]:
    out = ["", "Local submissions (sendmail/pickup) by uid"]
    if not report.pickups:
        return [*out, "  (none)"]
    out.append(
        f"  {'host':<20} {'uid':>6} {'msgs':>6} {'rcpts':>6} {'senders':>7} {'deferred':>8} "
        f"{'bounced':>8}  {'incident':<8}  top senders"
    )
    for row in report.pickups:
        senders = ", ".join(shown(sender, 60) for sender in row.top_senders)
        out.append(
            f"  {cell(row.host, 20):<20} {row.uid:>6} {number(row.messages):>6} "
            f"{number(row.recipients):>6} {number(row.senders):>7} "
            f"{percent(share(row.deferred, row.outcomes)):>8} "
            f"{percent(share(row.bounced, row.outcomes)):>8}  {row.severity or '-':<8}  "
            f"{printable(senders, 200) or '-'}"
        )
    return out
