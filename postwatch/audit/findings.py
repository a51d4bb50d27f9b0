"""What an audit reports: a severity, one finding per problem, and the report around them.

A :class:`Finding` names the setting, its effective value, the master.cf service it comes
from (``None`` for main.cf), why it matters and the exact change that fixes it.  Findings
are ordered worst first; within a severity they keep the order the checks ran in, so the
checks that decide whether the server relays spam come before hygiene.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple


class Severity(IntEnum):
    """How much a finding matters, from ``info`` to ``critical``."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """The severity named ``text`` (case-insensitive); ValueError when there is none."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(level.label for level in cls)
            raise ValueError(f"unknown severity {text!r} (one of: {names})") from None


class Finding(NamedTuple):
    """One configuration problem and its fix."""

    id: str  # stable check name, e.g. "mynetworks-broad"
    severity: Severity
    setting: str  # the Postfix parameter (or master.cf field) at fault
    value: str  # its effective value, as Postfix would see it
    service: str | None  # master.cf service(s) whose -o sets it ("submission/inet"); None = main.cf
    why: str  # one or two sentences
    fix: str  # the exact postconf command(s), one per line
    affects: tuple[str, ...] = ()  # the smtpd services that see this value

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "severity": self.severity.label,
            "setting": self.setting,
            "value": self.value,
            "service": self.service,
            "why": self.why,
            "fix": self.fix.splitlines(),
            "affects": list(self.affects),
        }


class AuditReport(NamedTuple):
    """All findings of one audit, worst first, with notes on where the values came from."""

    findings: tuple[Finding, ...]
    notes: tuple[str, ...]  # how values were obtained, inputs that limited the audit
    defaults_source: str  # "postconf -d (Postfix 3.7.11)" or the built-in table
    master_source: str  # where the service list came from

    def worst(self) -> Severity | None:
        return max((finding.severity for finding in self.findings), default=None)

    def at_or_above(self, threshold: Severity) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.findings if finding.severity >= threshold)

    def to_json(self) -> dict[str, Any]:
        counts = {level.label: 0 for level in Severity}
        for finding in self.findings:
            counts[finding.severity.label] += 1
        return {
            "findings": [finding.to_json() for finding in self.findings],
            "counts": counts,
            "defaults": self.defaults_source,
            "master": self.master_source,
            "notes": list(self.notes),
        }


def ordered(findings: list[Finding]) -> tuple[Finding, ...]:
    """Worst first; equal severities keep the order the checks produced them in.

    Services that inherit the same main.cf value yield the same finding; it is kept once,
    at the highest severity any of them gave it, listing every service it affects.
    """
    unique: dict[tuple[str, str | None, str, str], Finding] = {}
    for finding in findings:
        key = (finding.id, finding.service, finding.setting, finding.value)
        kept = unique.get(key)
        if kept is None:
            unique[key] = finding
            continue
        affects = tuple(dict.fromkeys(kept.affects + finding.affects))
        worse = finding if finding.severity > kept.severity else kept
        unique[key] = worse._replace(affects=affects)
    return tuple(sorted(unique.values(), key=lambda finding: -finding.severity))
