"""Checks that decide who relays without a password: mynetworks and the relay lists.

smtpd evaluates ``smtpd_relay_restrictions`` and then ``smtpd_recipient_restrictions``;
a ``permit`` ends only the list it is in, so mail is relayed only when every list lets it
through.  A client relays when, in each list, a ``permit`` that applies to it comes before
the first restriction that blocks relaying (or the list has none).
"""

from __future__ import annotations

from collections.abc import Iterator

from postwatch.audit.findings import Finding, Severity
from postwatch.audit.networks import NetworkRisk, assess, parse_network
from postwatch.audit.restrictions import items, render
from postwatch.audit.settings import PostfixConfig, Service, SmtpdService, set_in_service

RELAY_LISTS = ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
# The restrictions smtpd requires in one of RELAY_LISTS (smtpd_check.c, rcpt_required).
RELAY_BLOCKERS = frozenset(
    {
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject",
        "defer",
        "defer_if_permit",
        "check_relay_domains",
    }
)
LOCAL_ONLY = "127.0.0.0/8 [::1]/128"


def relays(config: PostfixConfig, service: Service | None, permits: frozenset[str]) -> bool:
    """Whether a client to which the ``permits`` restrictions apply may relay."""
    for name in RELAY_LISTS:
        for token in config.restrictions(name, service):
            if token in permits:
                break
            if token in RELAY_BLOCKERS:
                return False
    return True


STRANGER = frozenset({"permit"})
TRUSTED_NETWORK = frozenset({"permit", "permit_mynetworks"})


def _list_value(config: PostfixConfig, name: str, service: Service | None) -> str:
    return ", ".join(config.restrictions(name, service))


def check_mynetworks(config: PostfixConfig) -> Iterator[Finding]:
    """mynetworks entries broader than this host: each host there relays without login."""
    contexts: list[Service | None] = [None]
    contexts += [
        entry.service
        for entry in config.smtpd_services()
        if entry.service.override("mynetworks") is not None
    ]
    for service in contexts:
        if not config.is_explicit("mynetworks", service):
            continue
        value = config.get("mynetworks", service)
        risks = assess(value)
        broad = [risk for risk in risks if risk.severity and risk.severity > Severity.INFO]
        unseen = [risk for risk in risks if risk.severity == Severity.INFO]
        label = service.label if service else None
        if broad:
            yield _broad_networks(config, service, label, value, risks, broad)
        if unseen:
            yield Finding(
                "mynetworks-unchecked",
                Severity.INFO,
                "mynetworks",
                value,
                label,
                "mynetworks includes "
                + ", ".join(f"{risk.entry} ({risk.reason})" for risk in unseen)
                + "; every client listed there relays without a password.",
                "review that list; keep only hosts that cannot log in (printers, scanners)",
            )


def _broad_networks(
    config: PostfixConfig,
    service: Service | None,
    label: str | None,
    value: str,
    risks: list[NetworkRisk],
    broad: list[NetworkRisk],
) -> Finding:
    broad.sort(key=lambda risk: -(risk.severity or 0))
    keep = [risk.entry for risk in risks if risk.severity is None]
    if not any(_is_loopback(entry) for entry in keep):
        keep = [*LOCAL_ONLY.split(), *keep]
    listed = "; ".join(f"{risk.entry} ({risk.reason})" for risk in broad)
    return Finding(
        "mynetworks-broad",
        max(risk.severity or Severity.INFO for risk in broad),
        "mynetworks",
        value,
        label,
        f"mynetworks trusts more than this host: {listed}. Every client there relays mail "
        "without a password and skips the anvil rate limits, and its spam is logged with no "
        "SASL user, so one infected machine or container turns the server into a relay.",
        config.fix("mynetworks", " ".join(keep), service),
    )


def _is_loopback(entry: str) -> bool:
    network = parse_network(entry)
    return network is not None and network.is_loopback


def check_mynetworks_style(config: PostfixConfig) -> Iterator[Finding]:
    """Without an explicit mynetworks, mynetworks_style subnet/class trusts whole LANs."""
    if config.is_explicit("mynetworks"):
        return
    style = config.get("mynetworks_style").lower()
    if style not in ("subnet", "class"):
        return
    reach = (
        "every host on the same IP subnets as this machine"
        if style == "subnet"
        else "every host in the same class A/B/C networks as this machine, possibly the "
        "whole provider network"
    )
    yield Finding(
        "mynetworks-style",
        Severity.HIGH if style == "subnet" else Severity.CRITICAL,
        "mynetworks_style",
        style,
        None,
        f"mynetworks is not set, so Postfix trusts {reach}: they relay without a password "
        "and their mail carries no SASL user.",
        config.fix("mynetworks", LOCAL_ONLY),
    )


def check_relay_guard(config: PostfixConfig) -> Iterator[Finding]:
    """Relay lists that let strangers relay, or lack reject_unauth_destination."""
    for entry in config.smtpd_services():
        service = entry.service
        origin = config.effective("smtpd_relay_restrictions", service).service
        relay_value = _list_value(config, "smtpd_relay_restrictions", service)
        present = [
            name
            for name in RELAY_LISTS
            if RELAY_BLOCKERS.intersection(config.restrictions(name, service))
        ]
        if not present:
            yield Finding(
                "relay-guard-missing",
                Severity.HIGH,
                "smtpd_relay_restrictions",
                relay_value,
                origin,
                "Neither smtpd_relay_restrictions nor smtpd_recipient_restrictions has "
                "reject_unauth_destination or another relay guard, so smtpd exits with a fatal "
                "error on every connection.",
                _guard_fix(config, entry),
                (service.label,),
            )
        elif relays(config, service, STRANGER):
            yield Finding(
                "open-relay",
                Severity.CRITICAL,
                "smtpd_relay_restrictions",
                relay_value,
                origin,
                f"An unconditional permit comes before every relay guard on {entry.title}: "
                "anyone on the Internet can relay spam through it without logging in.",
                _guard_fix(config, entry),
                (service.label,),
            )
        elif entry.role == "port25" and len(present) == 1:
            missing = next(name for name in RELAY_LISTS if name not in present)
            current = config.restrictions(missing, service)
            guarded = _with_guard(current, config.restrictions(present[0], service))
            yield Finding(
                "relay-single-guard",
                Severity.INFO,
                missing,
                ", ".join(current),
                config.effective(missing, service).service,
                f"Only {present[0]} stops relaying; a guard in {missing} too keeps the server "
                "closed when one list is later rewritten.",
                config.fix(missing, guarded, service),
                (service.label,),
            )


def _with_guard(current: list[str], guarded: list[str]) -> str:
    """``current`` plus the permits the guarded list grants before its guard, then the guard."""
    permits: list[str] = []
    for item in items(guarded):
        if item[0] in RELAY_BLOCKERS:
            break
        if item[0].startswith("permit_") and item[0] not in current:
            permits.append(" ".join(item))
    return render([*items(current), *((p,) for p in permits), ("reject_unauth_destination",)])


def _guard_fix(config: PostfixConfig, entry: SmtpdService) -> str:
    if entry.role == "port25":
        return config.fix(
            "smtpd_relay_restrictions",
            "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
            entry.service,
        )
    return set_in_service(
        entry.service, "smtpd_relay_restrictions", "permit_sasl_authenticated, reject"
    )


def check_relay_by_network(config: PostfixConfig) -> Iterator[Finding]:
    """permit_mynetworks letting clients relay without logging in, port by port."""
    for entry in config.smtpd_services():
        service = entry.service
        if not relays(config, service, TRUSTED_NETWORK) or relays(config, service, STRANGER):
            continue
        relay_value = _list_value(config, "smtpd_relay_restrictions", service)
        mynetworks = config.get("mynetworks", service) or (
            f"mynetworks_style = {config.get('mynetworks_style', service)}"
        )
        if entry.role == "port25":
            yield Finding(
                "relay-by-network",
                Severity.INFO,
                "smtpd_relay_restrictions",
                relay_value,
                config.effective("smtpd_relay_restrictions", service).service,
                f"Clients in mynetworks ({mynetworks}) relay through port 25 without logging "
                "in: a local script can send by SMTP to 127.0.0.1, past "
                "authorized_submit_users, and postwatch sees it only by client address.",
                config.fix(
                    "smtpd_relay_restrictions",
                    "permit_sasl_authenticated, reject_unauth_destination",
                    service,
                ),
                (service.label,),
            )
        else:
            yield Finding(
                "relay-by-network",
                Severity.LOW,
                "smtpd_relay_restrictions",
                relay_value,
                service.label,
                f"On {entry.title}, clients in mynetworks ({mynetworks}) send without "
                "logging in, so their mail carries no SASL user to hold to account.",
                set_in_service(
                    service, "smtpd_relay_restrictions", "permit_sasl_authenticated, reject"
                ),
                (service.label,),
            )
