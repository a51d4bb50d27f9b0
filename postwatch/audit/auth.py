"""Checks on what an authenticated client may do: the stolen-password case.

A spammer with one account's password logs in like its owner.  What limits the damage
is whether the login must own the sender address (``smtpd_sender_login_maps`` with a
``*_sender_login_mismatch`` restriction), whether postwatch can lock the login
(``check_sasl_access`` on its map), which ports offer AUTH, and whether the password
crosses the network encrypted.
"""

from __future__ import annotations

from collections.abc import Iterator

from postwatch.audit.findings import Finding, Severity
from postwatch.audit.restrictions import (
    CHECK_LISTS,
    LOGIN_MISMATCH,
    items,
    move_before_permit,
    prepend,
    reach,
    render,
    shadowed,
)
from postwatch.audit.settings import PostfixConfig, SmtpdService, set_in_service

# The access map postwatch's lock action writes ("user@example.org REJECT ..."); smtpd
# re-reads a changed hash: table without a reload.
LOCK_MAP = "hash:/etc/postfix/postwatch_sasl_access"
LOCK_CHECK = frozenset({"check_sasl_access"})
POLICY_CHECK = frozenset({"check_policy_service"})
SENDER_LOGIN_MAP = "hash:/etc/postfix/sender_login"


def auth_services(config: PostfixConfig) -> list[SmtpdService]:
    """Public smtpd services that offer AUTH."""
    return [
        entry
        for entry in config.smtpd_services()
        if config.flag("smtpd_sasl_auth_enable", entry.service)
    ]


def check_sasl_on_port_25(config: PostfixConfig) -> Iterator[Finding]:
    """AUTH offered on port 25, where MX traffic and password guessing meet."""
    for entry in auth_services(config):
        if entry.role != "port25":
            continue
        fixes = [config.fix("smtpd_sasl_auth_enable", "no", entry.service)]
        fixes += [
            set_in_service(other.service, "smtpd_sasl_auth_enable", "yes")
            for other in config.smtpd_services("submission", "smtps")
            if other.service.override("smtpd_sasl_auth_enable") is None
        ]
        yield Finding(
            "sasl-on-port-25",
            Severity.MEDIUM,
            "smtpd_sasl_auth_enable",
            config.get("smtpd_sasl_auth_enable", entry.service),
            config.effective("smtpd_sasl_auth_enable", entry.service).service,
            "Port 25 offers AUTH: password-guessing bots and spammers with stolen passwords "
            "use port 25, and their mail mixes with inbound mail there. Offer AUTH only on "
            "submission and smtps.",
            "\n".join(fixes),
            (entry.service.label,),
        )


def check_sender_login(config: PostfixConfig) -> Iterator[Finding]:
    """Authenticated clients that may send as any address."""
    for entry in auth_services(config):
        service = entry.service
        maps = config.get("smtpd_sender_login_maps", service)
        found = reach(config, service, LOGIN_MISMATCH)
        if maps and found.state == "reachable":
            continue
        fixes = []
        if not maps:
            fixes.append(config.fix("smtpd_sender_login_maps", SENDER_LOGIN_MAP, service))
        if found.state == "shadowed" and found.list_name:
            grouped = items(config.restrictions(found.list_name, service))
            problem = f"The login check in {found.list_name} comes after permit_sasl_authenticated"
            fixes.append(
                config.fix(found.list_name, move_before_permit(grouped, LOGIN_MISMATCH), service)
            )
            setting = found.list_name
        elif found.state == "absent":
            grouped = items(config.restrictions("smtpd_sender_restrictions", service))
            problem = "No restriction rejects a sender address the login does not own"
            fixes.append(
                config.fix(
                    "smtpd_sender_restrictions",
                    prepend(grouped, ("reject_authenticated_sender_login_mismatch",)),
                    service,
                )
            )
            setting = "smtpd_sender_restrictions"
        else:
            problem = "smtpd_sender_login_maps is empty, so no login owns any address"
            setting = "smtpd_sender_login_maps"
        yield Finding(
            "sender-login-unchecked",
            Severity.HIGH,
            setting,
            maps
            if setting == "smtpd_sender_login_maps"
            else render(items(config.restrictions(setting, service))),
            config.effective(setting, service).service,
            f"{problem}: whoever holds one stolen password can send as any address, your own "
            "domains included.",
            "\n".join(fixes),
            (service.label,),
        )


def check_lock_hook(config: PostfixConfig) -> Iterator[Finding]:
    """No check_sasl_access reachable before permit_sasl_authenticated: no way to lock."""
    for entry in auth_services(config):
        service = entry.service
        found = reach(config, service, LOCK_CHECK)
        if found.state == "reachable":
            continue
        list_name = found.list_name or "smtpd_sender_restrictions"
        grouped = items(config.restrictions(list_name, service))
        if found.state == "shadowed":
            problem = f"check_sasl_access in {list_name} comes after permit_sasl_authenticated"
            what = "it never runs for logged-in clients"
            fix = config.fix(list_name, move_before_permit(grouped, LOCK_CHECK), service)
        else:
            problem = "No restriction list has check_sasl_access"
            what = "there is no hook to lock a login"
            fix = config.fix(list_name, prepend(grouped, ("check_sasl_access", LOCK_MAP)), service)
        yield Finding(
            "sasl-lock-hook-missing",
            Severity.MEDIUM,
            list_name,
            render(grouped),
            config.effective(list_name, service).service,
            f"{problem}: {what}, so a compromised login cannot be stopped in Postfix "
            f"without changing its password (postwatch's lock writes {LOCK_MAP}).",
            fix,
            (service.label,),
        )


def check_policy_after_permit(config: PostfixConfig) -> Iterator[Finding]:
    """Policy services placed where authenticated clients never reach them."""
    for entry in auth_services(config):
        service = entry.service
        for list_name in CHECK_LISTS:
            hidden = [
                item
                for item in shadowed(config, service, list_name, POLICY_CHECK)
                if not _is_spf(item)
            ]
            if not hidden:
                continue
            grouped = items(config.restrictions(list_name, service))
            names = " and ".join(" ".join(item) for item in hidden)
            verb = "comes" if len(hidden) == 1 else "come"
            moving = frozenset(" ".join(item) for item in hidden)
            yield Finding(
                "policy-after-auth-permit",
                Severity.LOW,
                list_name,
                render(grouped),
                config.effective(list_name, service).service,
                f"{names} {verb} after permit_sasl_authenticated, so logged-in clients never "
                "reach it: if it limits senders (quotas, rates), a stolen login is never "
                "counted.",
                config.fix(list_name, move_before_permit(grouped, moving), service),
                (service.label,),
            )


def check_auth_without_tls(config: PostfixConfig) -> Iterator[Finding]:
    """AUTH offered over unencrypted connections."""
    for entry in auth_services(config):
        service = entry.service
        mode = config.tls_mode(service)
        if mode in ("wrapper", "encrypt"):
            continue
        if mode == "may":
            if config.flag("smtpd_tls_auth_only", service):
                continue
            yield Finding(
                "auth-without-tls",
                Severity.MEDIUM,
                "smtpd_tls_auth_only",
                config.get("smtpd_tls_auth_only", service),
                config.effective("smtpd_tls_auth_only", service).service,
                "AUTH is offered before STARTTLS, so clients may send passwords in clear text "
                "that anyone on the path can read.",
                config.fix("smtpd_tls_auth_only", "yes", service),
                (service.label,),
            )
            continue
        yield Finding(
            "auth-without-tls",
            Severity.HIGH,
            "smtpd_tls_security_level",
            config.get("smtpd_tls_security_level", service),
            config.effective("smtpd_tls_security_level", service).service,
            "AUTH is offered with no TLS at all: every password crosses the network in clear text.",
            "\n".join(
                [
                    config.fix("smtpd_tls_security_level", "may", service),
                    config.fix("smtpd_tls_auth_only", "yes", service),
                ]
            ),
            (service.label,),
        )


def _is_spf(item: tuple[str, ...]) -> bool:
    """SPF policy services belong after permit_sasl_authenticated: they check inbound mail."""
    return any("spf" in part.lower() for part in item[1:])
