"""The audit's checks, in the order they run, and the function that runs them.

Order matters only between findings of equal severity: the checks that decide whether
the server relays spam come first, then what authenticated clients may do, the brakes,
local submission, and last what the log shows and protocol hygiene.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from postwatch.audit import auth, brakes, hygiene, pickup, relay
from postwatch.audit.findings import AuditReport, Finding, ordered
from postwatch.audit.settings import PostfixConfig

Check = Callable[[PostfixConfig], Iterable[Finding]]

CHECKS: tuple[Check, ...] = (
    relay.check_mynetworks,
    relay.check_mynetworks_style,
    relay.check_relay_guard,
    auth.check_sender_login,
    auth.check_sasl_on_port_25,
    auth.check_auth_without_tls,
    auth.check_lock_hook,
    auth.check_policy_after_permit,
    relay.check_relay_by_network,
    brakes.check_rate_limits,
    brakes.check_anvil_time_unit,
    brakes.check_process_limit,
    brakes.check_client_service_limits,
    pickup.check_submit_users,
    pickup.check_pickup_inspection,
    pickup.check_header_rewrite,
    hygiene.check_permit_logging,
    hygiene.check_maillog_file,
    hygiene.check_tls_protocols,
    hygiene.check_helo_required,
    hygiene.check_vrfy,
)


def run_checks(config: PostfixConfig, checks: Iterable[Check] = CHECKS) -> AuditReport:
    """Every finding for ``config``, worst first."""
    findings: list[Finding] = []
    for check in checks:
        findings.extend(check(config))
    notes = list(config.notes)
    if not config.smtpd_services():
        notes.append("no public smtpd service (port 25, submission, smtps) found in master.cf")
    return AuditReport(
        findings=ordered(findings),
        notes=tuple(notes),
        defaults_source=config.defaults_source,
        master_source=config.master_source,
    )
