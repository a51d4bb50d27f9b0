"""Checks on the brakes: how fast one client (or one stolen login) can push mail out.

anvil(8) counts per client address and per ``anvil_rate_time_unit``; with every limit at
its default of 0 a spam run through one account leaves at full speed.  Limits set with
``-o`` on an smtp(8) *client* service do nothing: they are smtpd(8) parameters.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator

from postwatch.audit.auth import auth_services
from postwatch.audit.findings import Finding, Severity
from postwatch.audit.settings import PostfixConfig, set_in_main

# (parameter, suggested value, what it counts)
RATE_LIMITS = (
    ("smtpd_client_message_rate_limit", "100", "messages"),
    ("smtpd_client_recipient_rate_limit", "300", "recipients"),
)
AUTH_RATE_LIMIT = ("smtpd_client_auth_rate_limit", "30", "AUTH commands")
PROCESS_LIMIT_HIGH = 1000
PROCESS_LIMIT_RAISED = 200
_TIME = re.compile(r"(\d+)\s*([smhdw]?)\Z")
_TIME_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# smtpd(8)-only parameters that admins set on smtp(8)/lmtp(8) client services by mistake.
SMTPD_ONLY = re.compile(
    r"smtpd_client_\w+_(rate_)?limit|smtpd_\w+_restrictions|anvil_rate_time_unit\Z"
)


def seconds(text: str) -> int | None:
    """A Postfix time value (``60s``, ``1m``, ``60``) in seconds; None when unparsable."""
    match = _TIME.match(text.strip().lower())
    if match is None:
        return None
    return int(match.group(1)) * _TIME_UNITS[match.group(2)]


def check_rate_limits(config: PostfixConfig) -> Iterator[Finding]:
    """No per-client message, recipient or AUTH rate limit where clients submit mail."""
    with_auth = {entry.service for entry in auth_services(config)}
    unit = config.get("anvil_rate_time_unit") or "60s"
    for entry in config.smtpd_services():
        service = entry.service
        limits = list(RATE_LIMITS)
        if service in with_auth:
            limits.append(AUTH_RATE_LIMIT)
        for name, suggested, counted in limits:
            if config.number(name, service) > 0:
                continue
            stolen_login = service in with_auth and name != AUTH_RATE_LIMIT[0]
            yield Finding(
                "no-rate-limit",
                Severity.MEDIUM if stolen_login else Severity.LOW,
                name,
                config.get(name, service) or "0",
                config.effective(name, service).service,
                f"No limit on {counted} per client per {unit}: "
                + (
                    "a stolen login sends as fast as Postfix accepts mail."
                    if stolen_login
                    else "one client can go as fast as Postfix accepts commands."
                ),
                config.fix(name, suggested, service),
                (service.label,),
            )


def check_anvil_time_unit(config: PostfixConfig) -> Iterator[Finding]:
    """A short anvil_rate_time_unit makes every rate limit far looser than it reads."""
    unit = config.get("anvil_rate_time_unit")
    length = seconds(unit)
    if length is None or length >= 60:
        return
    limited = [
        name
        for name, _suggested, _counted in (*RATE_LIMITS, AUTH_RATE_LIMIT)
        if config.number(name) > 0
    ]
    if not limited:
        return
    yield Finding(
        "anvil-time-unit-short",
        Severity.LOW,
        "anvil_rate_time_unit",
        unit,
        None,
        f"Rate limits ({', '.join(limited)}) count per {unit}, so each allows "
        f"{60 // max(length, 1)} times its number per minute.",
        set_in_main("anvil_rate_time_unit", "60s"),
    )


def check_process_limit(config: PostfixConfig) -> Iterator[Finding]:
    """A huge default_process_limit lets a spam run leave through thousands of processes."""
    limit = config.number("default_process_limit")
    if limit <= PROCESS_LIMIT_RAISED:
        return
    yield Finding(
        "process-limit-high",
        Severity.MEDIUM if limit > PROCESS_LIMIT_HIGH else Severity.LOW,
        "default_process_limit",
        str(limit),
        None,
        f"Up to {limit} smtp delivery and smtpd processes run at once: a stolen account's "
        "spam leaves at full speed, and the outbound address is blocklisted before anyone "
        "can react.",
        set_in_main("default_process_limit", "100"),
    )


def check_client_service_limits(config: PostfixConfig) -> Iterator[Finding]:
    """smtpd limits set with -o on smtp/lmtp client services, where they do nothing."""
    misplaced: dict[str, list[tuple[str, str]]] = {}
    for service in config.services:
        if service.command not in ("smtp", "lmtp"):
            continue
        for name, value in service.overrides:
            if SMTPD_ONLY.match(name):
                misplaced.setdefault(name, []).append((service.label, value))
    for name, where in misplaced.items():
        labels = [label for label, _value in where]
        values = sorted({value for _label, value in where})
        yield Finding(
            "client-service-smtpd-limit",
            Severity.LOW,
            name,
            " / ".join(values),
            ", ".join(labels),
            f"{name} is a setting of the SMTP server side (smtpd(8), anvil(8)); set with -o "
            f"on the smtp(8) delivery service{'s' if len(labels) > 1 else ''} it limits "
            "nothing. Use smtp_destination_rate_delay there instead.",
            "\n".join(f"postconf -PX {shlex.quote(f'{label}/{name}')}" for label in labels),
        )
