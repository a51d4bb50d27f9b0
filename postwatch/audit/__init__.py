"""``postwatch audit``: find the Postfix settings that let spam out.

Reads the configuration (postconf, its saved output, or a config directory), applies
master.cf ``-o`` overrides per service, and reports findings worst first::

    config = load_live()                      # or load_saved(n_file, m_file)
    report = audit(config)
    for finding in report.findings: ...

Modules: ``postconf`` reads, ``settings`` resolves effective values, ``expansion`` does
``$name`` expansion, ``relay``/``auth``/``brakes``/``pickup``/``hygiene`` hold the checks,
``checks`` runs them, ``render`` prints them, ``command`` is the click command.
"""

from __future__ import annotations

from postwatch.audit.checks import CHECKS, run_checks
from postwatch.audit.findings import AuditReport, Finding, Severity
from postwatch.audit.postconf import load_live, load_saved, parse_main, parse_master
from postwatch.audit.settings import PostfixConfig, Service

audit = run_checks

__all__ = [
    "CHECKS",
    "AuditReport",
    "Finding",
    "PostfixConfig",
    "Service",
    "Severity",
    "audit",
    "load_live",
    "load_saved",
    "parse_main",
    "parse_master",
    "run_checks",
]
