"""Audit reports for people (a table, worst first) and for machines (one JSON object)."""

from __future__ import annotations

import json
import textwrap

from postwatch.audit.findings import AuditReport, Finding, Severity

WIDTH = 100
_INDENT = " " * 10
_VALUE_ROOM = 60


def printable(text: str) -> str:
    """``text`` with control characters escaped, so a value cannot drive the terminal."""
    return "".join(
        char if char.isprintable() else f"\\x{ord(char):02x}" if ord(char) < 256 else "?"
        for char in text
    )


def _shorten(text: str, room: int) -> str:
    return text if len(text) <= room else text[: room - 3] + "..."


def _summary(report: AuditReport) -> str:
    if not report.findings:
        return "postwatch audit: no findings"
    counts = [
        f"{sum(1 for f in report.findings if f.severity == level)} {level.label}"
        for level in sorted(Severity, reverse=True)
        if any(f.severity == level for f in report.findings)
    ]
    noun = "finding" if len(report.findings) == 1 else "findings"
    return f"postwatch audit: {len(report.findings)} {noun} ({', '.join(counts)})"


def _finding_block(finding: Finding) -> list[str]:
    where = finding.service or "main.cf"
    value = _shorten(printable(finding.value) or '""', _VALUE_ROOM)
    head = f"{finding.severity.label:<9} {finding.id:<27} {printable(where)}: "
    lines = [f"{head}{finding.setting} = {value}"]
    lines += textwrap.wrap(
        printable(finding.why), WIDTH, initial_indent=_INDENT, subsequent_indent=_INDENT
    )
    if finding.affects and finding.affects != (finding.service,):
        lines.append(f"{_INDENT}affects: {printable(', '.join(finding.affects))}")
    for number, fix in enumerate(finding.fix.splitlines()):
        label = "fix: " if number == 0 else "     "
        lines.append(f"{_INDENT}{label}{printable(fix)}")
    return lines


def render_text(report: AuditReport) -> str:
    """The report as a readable table: one block per finding, worst first."""
    out = [
        _summary(report),
        f"defaults:  {printable(report.defaults_source)}",
        f"master.cf: {printable(report.master_source)}",
    ]
    if report.findings:
        out += ["", f"{'SEVERITY':<9} {'CHECK':<27} WHERE: SETTING = VALUE"]
    for finding in report.findings:
        out += ["", *_finding_block(finding)]
    if report.notes:
        out += ["", "notes:"]
        out += [f"  - {printable(note)}" for note in report.notes]
    return "\n".join(out)


def render_json(report: AuditReport) -> str:
    """The report as one JSON object with a list of findings."""
    return json.dumps(report.to_json(), indent=2, ensure_ascii=True)
