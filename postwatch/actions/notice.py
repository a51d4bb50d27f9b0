"""The text of notifications: reasons, evidence, what was done, and the commands to undo it.

Every string that came from a log line (subjects, HELO names, reason details that quote
them, IPs, sender addresses) goes through :func:`~postwatch.actions.subject.shown` or
:func:`~postwatch.actions.subject.printable`: one line each, control and bidi characters
escaped, capped in length.  Commands are only printed for subjects that passed
:func:`~postwatch.actions.subject.account`, so a copied command never carries attacker text.
"""

from __future__ import annotations

from collections.abc import Sequence

from postwatch.actions import subject as subjects
from postwatch.actions.notify import Notice
from postwatch.actions.policy import ActionRequest, Outcome
from postwatch.errors import UnsafeSubjectError

EVIDENCE_ITEMS = 10  # items shown per evidence list


def incident_notice(
    request: ActionRequest,
    outcomes: Sequence[Outcome],
    refused: Sequence[tuple[str, str]],
    *,
    dry_run: bool = False,
) -> Notice:
    """The notification for an incident that opened or escalated."""
    who = f"{request.subject_kind} {subjects.shown(request.subject, 80)}"
    incident = f" (incident {subjects.printable(request.incident, 40)})" if request.incident else ""
    title = f"postwatch: {request.severity} - {who}{incident}"
    lines = [
        f"Subject: {who}{incident}",
        f"Severity: {request.severity} (score {request.score})"
        + (f", at {request.ts:%Y-%m-%d %H:%M:%S %Z}" if request.ts else "")
        + (f" on {subjects.shown(request.host, 60)}" if request.host else ""),
        "",
        "Why:",
    ]
    lines += [
        f"  - {subjects.printable(signal, 40)}: {subjects.printable(detail, 300)}"
        + (f" (+{points})" if points else "")
        for signal, detail, points in request.reasons
    ]
    if not request.reasons:
        lines.append("  (no reason given)")
    lines += ["", "Evidence:"]
    lines += _evidence(request)
    lines += ["", "Actions:" + (" (dry run: nothing was changed)" if dry_run else "")]
    lines += _actions(outcomes, refused)
    lines += ["", "Commands:"]
    lines += _commands(request)
    return Notice(
        key=request.incident or f"{request.subject_kind}:{request.subject}",
        severity=request.severity,
        title=title,
        body="\n".join(lines) + "\n",
    )


def _evidence(request: ActionRequest) -> list[str]:
    out = []
    for label, items in (
        ("IPs", request.ips),
        ("countries", request.countries),
        ("HELO names", request.helos),
        ("senders", request.senders),
        ("sample queue IDs", request.queue_ids),
    ):
        if items:
            shown = ", ".join(subjects.shown(item, 80) for item in items[:EVIDENCE_ITEMS])
            more = f" and {len(items) - EVIDENCE_ITEMS} more" if len(items) > EVIDENCE_ITEMS else ""
            out.append(f"  {label}: {shown}{more}")
    if request.counts:
        out.append(
            "  counts: "
            + ", ".join(f"{subjects.printable(name, 40)}={value}" for name, value in request.counts)
        )
    return out or ["  (none recorded)"]


def _actions(outcomes: Sequence[Outcome], refused: Sequence[tuple[str, str]]) -> list[str]:
    out = [
        f"  {o.action} {subjects.shown(o.subject, 80)}: {o.state} - "
        f"{subjects.printable(o.result, 300)}"
        for o in outcomes
    ]
    out += [f"  {action}: not done - {subjects.printable(why, 300)}" for action, why in refused]
    return out or ["  none (notification only)"]


def _commands(request: ActionRequest) -> list[str]:
    try:
        account = subjects.account(request.subject) if request.subject_kind == "account" else ""
    except UnsafeSubjectError:
        return ["  (none: the subject is not a safe account name)"]
    out = []
    if account:
        out += [
            f"  postwatch queue {account}",
            f"  postwatch unlock {account} --release",
            f"  postwatch lock {account}",
        ]
        subject_for_journal = account
    else:
        try:
            subject_for_journal = (
                subjects.ip(request.subject) if request.subject_kind == "ip" else ""
            )
        except UnsafeSubjectError:
            subject_for_journal = ""
    if subject_for_journal:
        out.append(f"  postwatch actions --subject {subject_for_journal}")
    else:
        out.append("  postwatch actions")
    return out


def text_notice(key: str, severity: str, title: str, lines: Sequence[str]) -> Notice:
    """A notification for a manual action or a fail2ban event (``lines`` already safe)."""
    return Notice(key=key, severity=severity, title=title, body="\n".join(lines) + "\n")
