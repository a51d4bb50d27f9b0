"""Terminal renderings of what replay found: the summary table and the alerts.

Attacker-chosen text (HELO names, usernames, addresses) is shown with control characters
escaped, so a crafted name cannot move the cursor or recolour the admin's terminal.
"""

from __future__ import annotations

from typing import Any

from postwatch.tally import Tally


def printable(text: object) -> str:
    """``text`` with control and other non-printable characters as ``\\xNN`` escapes."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in value)


def render_summary(tally: Tally) -> str:
    out = [f"lines read: {tally.lines:,}", "", "events by kind:"]
    for kind, count in sorted(tally.events.items(), key=lambda item: -item[1]):
        out.append(f"  {kind:<22} {count:>10,}")
    if tally.unparsed:
        out += ["", "unparsed lines by program (share of that program's lines):"]
        for program, count in tally.unparsed.most_common():
            total = tally.lines_by_program.get(program, 0)
            share = f" ({count / total:.1%})" if total else ""
            out.append(f"  {printable(program):<30.30} {count:>10,}{share}")
    accounts = tally.account_records()
    out += ["", "SASL users:"]
    if not accounts:
        out.append("  (none)")
    else:
        out.append(
            f"  {'user':<40} {'messages':>9} {'rcpts':>7} {'IPs':>5} {'deferred':>9} {'bounced':>8}"
        )
        for acc in accounts:
            out.append(
                f"  {printable(acc['subject']):<40.40} {acc['messages']:>9,} "
                f"{acc['recipients']:>7,} {acc['distinct_ips']:>5} {acc['deferred']:>9,} "
                f"{acc['bounced']:>8,}"
            )
    return "\n".join(out)


def render_alerts(alerts: list[Any]) -> str:
    """One block per alert: when, who, how bad, why (points per reason) and the evidence."""
    if not alerts:
        return "\nalerts: none"
    out = ["", f"alerts: {len(alerts)}"]
    for alert in alerts:
        out.append("")
        out.append(
            f"  {alert.ts:%Y-%m-%d %H:%M:%S} {alert.severity.upper():<8} score {alert.score:<4} "
            f"{alert.subject_kind} {printable(alert.subject)}"
            + (f"  (host {printable(alert.host)})" if alert.host else "")
        )
        for reason in alert.reasons:
            out.append(f"      +{reason.points:<3} {reason.signal:<18} {printable(reason.detail)}")
        for key, value in alert.evidence.items():
            if not value and value != 0:
                continue
            if isinstance(value, dict):
                shown = ", ".join(f"{printable(k)}={printable(v)}" for k, v in value.items() if v)
                out.append(f"      {key}: {shown}")
            elif isinstance(value, (list, tuple)):
                shown = ", ".join(printable(item) for item in value[:8])
                more = f" (+{len(value) - 8} more)" if len(value) > 8 else ""
                out.append(f"      {key}: {shown}{more}")
            else:
                out.append(f"      {key}: {printable(value)}")
    return "\n".join(out)
