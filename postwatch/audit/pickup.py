"""Checks on local submission: sendmail(1) -> postdrop -> pickup(8) -> cleanup(8).

An exploited PHP script calls ``mail()``, which runs sendmail as the web server's user.
No smtpd restriction applies on this path: only ``authorized_submit_users`` decides who
may submit, and only ``non_smtpd_milters`` and ``header_checks`` (in the cleanup service
that pickup feeds) can inspect, log or stop what is submitted.  The log shows
``uid=`` and ``from=`` and nothing else.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from postwatch.audit.expansion import split_list
from postwatch.audit.findings import Finding, Severity
from postwatch.audit.settings import PostfixConfig, Service, set_in_main, set_in_service

ANYONE = frozenset({"static:anyone", "static:all"})


def check_submit_users(config: PostfixConfig) -> Iterator[Finding]:
    """authorized_submit_users letting every local account run sendmail."""
    entries = config.items("authorized_submit_users")
    for entry in entries:
        if entry.startswith("!"):
            return  # someone is excluded on purpose
        if entry in ANYONE:
            break
    else:
        return
    yield Finding(
        "submit-users-anyone",
        Severity.MEDIUM,
        "authorized_submit_users",
        ", ".join(entries),
        None,
        "Every local account, including the web server's user running an exploited PHP "
        "script, can hand mail to sendmail with any sender; the log shows only its uid. "
        "List the accounts that must send mail.",
        set_in_main("authorized_submit_users", "root"),
    )


def _pickup_cleanup(config: PostfixConfig, pickup: Service) -> Service | None:
    name = config.get("cleanup_service_name", pickup) or "cleanup"
    return config.service(name, "unix")


def check_pickup_inspection(config: PostfixConfig) -> Iterator[Finding]:
    """Mail from sendmail/pickup that no milter and no header_checks sees."""
    for pickup in config.by_command("pickup"):
        overrides = split_list(config.get("receive_override_options", pickup))
        cleanup = _pickup_cleanup(config, pickup)
        milters_off = "no_milters" in overrides
        headers_off = "no_header_body_checks" in overrides
        milters = "" if milters_off else config.get("non_smtpd_milters", cleanup)
        header_checks = config.get("header_checks", cleanup)
        remaining = [option for option in overrides if option != "no_header_body_checks"]
        if headers_off:
            restore = (
                set_in_service(pickup, "receive_override_options", ", ".join(remaining))
                if remaining
                else f"postconf -PX {shlex.quote(f'{pickup.label}/receive_override_options')}"
            )
        else:
            restore = ""
        if not milters and not (header_checks and not headers_off):
            fixes = [set_in_main("header_checks", "regexp:/etc/postfix/header_checks")]
            if headers_off:
                fixes.append(restore)
            yield Finding(
                "pickup-uninspected",
                Severity.MEDIUM,
                "receive_override_options" if headers_off else "non_smtpd_milters",
                ", ".join(overrides) if headers_off else milters,
                pickup.label if headers_off else None,
                "Mail from sendmail (a PHP mail() call, a cron job) passes no milter and no "
                "header_checks: nothing logs its From: or Subject: or stops a forged sender, "
                "and the log shows only the submitting uid.",
                "\n".join(fixes),
            )
        elif headers_off and header_checks:
            yield Finding(
                "pickup-header-checks-off",
                Severity.LOW,
                "receive_override_options",
                ", ".join(overrides),
                pickup.label,
                f"pickup turns off header_checks ({header_checks}), so rules that log or "
                "reject forged senders never see mail from sendmail; only the milter does.",
                restore,
            )


def check_header_rewrite(config: PostfixConfig) -> Iterator[Finding]:
    """Header address rewriting for every client hands remote senders your domain."""
    clients = config.items("local_header_rewrite_clients")
    if not ANYONE.intersection(clients):
        return
    yield Finding(
        "header-rewrite-all",
        Severity.LOW,
        "local_header_rewrite_clients",
        ", ".join(clients),
        None,
        "Postfix completes incomplete header addresses from any client with $myorigin, so "
        "a spammer's bare 'From: ceo' leaves as your own domain.",
        set_in_main("local_header_rewrite_clients", "permit_inet_interfaces"),
    )
