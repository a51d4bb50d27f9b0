"""Logging gaps that blind postwatch, and protocol hygiene.

smtpd logs ``helo=<...>`` only on lines about a restriction's action: reject, warn,
and permit when ``smtpd_log_access_permit_actions`` names it (smtpd_check.c,
``log_whatsup``).  Without that, the HELO name of accepted mail, a strong spam-bot
fingerprint, never reaches the log.
"""

from __future__ import annotations

from collections.abc import Iterator

from postwatch.audit.findings import Finding, Severity
from postwatch.audit.settings import PostfixConfig, Service, SmtpdService

PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_HEX_PROTOCOLS = {
    0x300: "SSLv3",
    0x301: "TLSv1",
    0x302: "TLSv1.1",
    0x303: "TLSv1.2",
    0x304: "TLSv1.3",
}
BROKEN = ("SSLv2", "SSLv3")
OLD = ("TLSv1", "TLSv1.1")
MODERN_ONLY = ">=TLSv1.2"


def check_permit_logging(config: PostfixConfig) -> Iterator[Finding]:
    """Accepted mail whose HELO name is never logged."""
    cleanup = config.service("cleanup", "unix")
    header_checks = config.get("header_checks", cleanup)
    for entry in config.smtpd_services():
        if config.items("smtpd_log_access_permit_actions", entry.service):
            continue
        hint = (
            f"unless a header_checks rule in {header_checks} logs Received: with INFO"
            if header_checks
            else "and no header_checks are set that could log it"
        )
        yield Finding(
            "helo-not-logged",
            Severity.INFO if header_checks else Severity.LOW,
            "smtpd_log_access_permit_actions",
            config.get("smtpd_log_access_permit_actions", entry.service),
            config.effective("smtpd_log_access_permit_actions", entry.service).service,
            "smtpd logs helo=<...> only with reject, warn and logged permit actions, so the "
            f"HELO name of accepted mail is never logged, {hint}; postwatch uses it to tell "
            "a bot from a mail client.",
            config.fix("smtpd_log_access_permit_actions", "static:all", entry.service),
            (entry.service.label,),
        )


def check_maillog_file(config: PostfixConfig) -> Iterator[Finding]:
    """Logging through postlogd: where the log goes and how it is rotated."""
    target = config.get("maillog_file")
    if not target:
        return
    if config.master_given and not config.by_command("postlogd"):
        yield Finding(
            "maillog-without-postlogd",
            Severity.MEDIUM,
            "maillog_file",
            target,
            None,
            f"maillog_file is set but master.cf has no postlogd service, which writes "
            f"{target} on behalf of the Postfix daemons: without it their records never "
            "reach that file.",
            "postconf -M 'postlog/unix-dgram=postlog unix-dgram n - n - 1 postlogd'",
        )
    if target.startswith("/dev/stdout"):
        why = (
            "Postfix logs to standard output (postfix start-fg), not to syslog: point "
            "postwatch at the container's log stream."
        )
        fix = "no change needed: feed the container's log stream to postwatch"
    else:
        suffix = config.get("maillog_file_rotate_suffix") or "%Y%m%d-%H%M%S"
        why = (
            f"Postfix writes {target} itself and rotates it only with 'postfix logrotate' "
            f"(to {target}.{suffix}, then compressed); syslog never sees it. Point postwatch "
            "at this file and rotate with 'postfix logrotate' from cron, not copytruncate."
        )
        fix = "run 'postfix logrotate' from cron; point postwatch at " + target
    yield Finding("maillog-file", Severity.INFO, "maillog_file", target, None, why, fix)


def allowed_protocols(value: str) -> list[str]:
    """The protocol names a smtpd_tls_protocols-style value allows."""
    allowed = list(PROTOCOLS)
    included: list[str] = []
    for token in value.replace(":", " ").replace(",", " ").split():
        if token.startswith(">=") or token.startswith("<="):
            bound = _protocol_index(token[2:])
            if bound is None:
                continue
            keep = (lambda i, b=bound: i >= b) if token[:2] == ">=" else (lambda i, b=bound: i <= b)
            allowed = [name for i, name in enumerate(PROTOCOLS) if keep(i) and name in allowed]
        elif token.startswith("!"):
            allowed = [name for name in allowed if name.lower() != token[1:].lower()]
        elif _protocol_index(token) is not None:
            included.append(PROTOCOLS[_protocol_index(token) or 0])
    if included:
        allowed = [name for name in allowed if name in included]
    return allowed


def _protocol_index(text: str) -> int | None:
    for index, name in enumerate(PROTOCOLS):
        if text.lower() == name.lower():
            return index
    try:
        number = int(text.lower().removeprefix("0x"), 16)
    except ValueError:
        return None
    known = _HEX_PROTOCOLS.get(number)
    return PROTOCOLS.index(known) if known else None


def check_tls_protocols(config: PostfixConfig) -> Iterator[Finding]:
    """SSLv2/3 or TLS 1.0/1.1 still allowed by the SMTP server."""
    for entry in config.smtpd_services():
        mode = config.tls_mode(entry.service)
        if mode == "none":
            continue
        names = ["smtpd_tls_protocols"] if mode == "may" else []
        if mode in ("encrypt", "wrapper"):
            names.append("smtpd_tls_mandatory_protocols")
        for name in names:
            yield from _protocol_finding(config, entry, name)


def _protocol_finding(config: PostfixConfig, entry: SmtpdService, name: str) -> Iterator[Finding]:
    service: Service = entry.service
    value = config.get(name, service)
    allowed = allowed_protocols(value)
    broken = [protocol for protocol in BROKEN if protocol in allowed]
    old = [protocol for protocol in OLD if protocol in allowed]
    if not broken and not old:
        return
    yield Finding(
        "tls-old-protocols",
        Severity.MEDIUM if broken else Severity.LOW,
        name,
        value or "(empty: every protocol the TLS library offers)",
        config.effective(name, service).service,
        f"The SMTP server allows {', '.join(broken + old)}, which have known attacks"
        + (" and are broken" if broken else "")
        + "; mail clients from the last decade all speak TLS 1.2.",
        config.fix(name, MODERN_ONLY, service),
        (service.label,),
    )


def check_helo_required(config: PostfixConfig) -> Iterator[Finding]:
    """Port 25 clients that may skip HELO, and leave no HELO name to log."""
    for entry in config.smtpd_services("port25"):
        if config.flag("smtpd_helo_required", entry.service):
            continue
        yield Finding(
            "helo-not-required",
            Severity.LOW,
            "smtpd_helo_required",
            config.get("smtpd_helo_required", entry.service),
            config.effective("smtpd_helo_required", entry.service).service,
            "Clients may send MAIL FROM without HELO/EHLO, which only ratware does, and "
            "then there is no HELO name for restrictions or the log.",
            config.fix("smtpd_helo_required", "yes", entry.service),
            (entry.service.label,),
        )


def check_vrfy(config: PostfixConfig) -> Iterator[Finding]:
    """VRFY lets anyone test which addresses exist."""
    for entry in config.smtpd_services():
        if config.flag("disable_vrfy_command", entry.service):
            continue
        yield Finding(
            "vrfy-enabled",
            Severity.LOW,
            "disable_vrfy_command",
            config.get("disable_vrfy_command", entry.service),
            config.effective("disable_vrfy_command", entry.service).service,
            "The server answers VRFY, so spammers and password guessers can test which "
            "addresses (and so which logins) exist.",
            config.fix("disable_vrfy_command", "yes", entry.service),
            (entry.service.label,),
        )
