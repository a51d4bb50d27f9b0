"""Dovecot records: logins and failed logins, passdb failures, mail sessions, notices.

Dovecot logs through syslog as ``dovecot: imap-login: Login: ...`` or to its own files as
``imap-login: Info: Login: ...`` (the framer gives both the program ``dovecot`` and the
message ``process: [Level: ]text``); older versions and PAM use their own tags
(``dovecot-auth``, ``auth``, ``deliver(user)``).

User names are client text on every failure line, so the fields Dovecot writes after them
(``rip=``, ``lip=``, the session) are read from the right.  Passdb prefixes
``passwd-file(user,ip,<session>)`` take the remote IP as the last field that is an address:
Dovecot appends the IP, ``master`` and the session after the user name, and its default
``auth_username_chars`` keeps commas and parentheses out of user names.
"""

from __future__ import annotations

import re

from postwatch.parse.events import (
    Diagnostic,
    DovecotAuthFailure,
    DovecotDisconnect,
    DovecotLogin,
    DovecotLoginFailed,
    DovecotSession,
    Event,
)
from postwatch.records import LogLine

Claim = tuple[str, Event]

PROGRAMS = frozenset({"dovecot", "dovecot-auth", "auth", "auth-worker", "deliver", "lda"})
PROCESSES = frozenset({
    "master", "log", "config", "anvil", "auth", "auth-worker", "dict", "director", "doveadm",
    "doveadm-server", "stats", "old-stats", "replicator", "aggregator", "indexer",
    "indexer-worker", "ssl-params", "dns-client", "imap", "pop3", "lmtp", "lda", "deliver",
    "managesieve", "submission", "imap-hibernate", "imap-urlauth", "imap-urlauth-worker",
    "quota-status", "dovecot", "dovecot-auth", "imap-login", "pop3-login", "submission-login",
    "managesieve-login", "imap-urlauth-login", "IMAP", "POP3",
})  # fmt: skip
_SESSIONS = frozenset({
    "imap", "pop3", "lmtp", "lda", "deliver", "managesieve", "submission", "IMAP", "POP3",
    "imap-hibernate", "indexer-worker", "doveadm",
})  # fmt: skip
_LEVELS = {
    "Info": "info", "Warning": "warning", "Warn": "warning", "Error": "error", "Fatal": "fatal",
    "Panic": "panic", "Debug": "debug",
}  # fmt: skip
_AUTH_FAILURES = (
    "unknown user",
    "Password mismatch",
    "pam_authenticate() failed",
    "invalid credentials",
)

# "imap-login", "auth-worker(24544)", "imap(user)<123><session>", "lmtp(9529, user)",
# "auth(user,192.0.2.1,sasl:login)<session>": the process, then what is in parentheses.
_component = re.compile(r"([A-Za-z][A-Za-z0-9-]*)(?:\((.*?)\))?((?:<[^<>]*>)*)\Z").match
_rip = re.compile(r"(?:^|[ ,])rip=([0-9A-Fa-f:.]+)").finditer
_lip = re.compile(r"(?:^|[ ,])lip=([0-9A-Fa-f:.]+)").search
_user_head = re.compile(r"(.*?)>?(?:, PID=\d+)?(?:, method=([\w-]+))?,?\s*\Z", re.DOTALL).match
_attempts = re.compile(r"(\d{1,15}) (?:authentication )?attempts").search
_session = re.compile(r"session=<([^<>]*)>").search
_passdb = re.compile(r"([a-z][a-z0-9-]*)\(([^()]*)\): (.*)\Z", re.DOTALL).match
_worker_prefix = re.compile(r"conn unix:auth-worker \([^)]*\): auth-worker<\d+>: ").match
# PAM's ruser is the tried name (client text): rhost is the last field but an optional user=.
_pam_unix = re.compile(
    r"pam_unix\(dovecot:auth\): authentication failure; .*?ruser=(.*) rhost=(\S*)"
    r"(?:\s+user=(\S*))?\Z"
).match
_address = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\Z").match


def split_process(line: LogLine, nested: bool = False) -> tuple[str, str, str, str] | None:
    """``(process, in_parens, level, text)`` of a Dovecot record, or None."""
    message = line.message
    level = ""
    if line.program == "dovecot":
        level, message = _split_level(message)  # Dovecot 1.x: "dovecot: Info: imap-login: ..."
        colon = message.find(": ")
        component, body = (message[:colon], message[colon + 2 :]) if colon > 0 else ("", "")
    else:
        component, body = line.program, message
    match = _component(component)
    if match is None or match.group(1) not in PROCESSES:
        if level or message.startswith("Dovecot v"):  # the 1.x master names no process
            return "dovecot", "", level or "info", message
        return None
    process, in_parens, _sessions = match.groups()
    if not level:
        level, body = _split_level(body)
    if process == "dovecot" and line.program == "dovecot" and not nested:
        inner = split_process(line._replace(message=body), nested=True)  # "dovecot: auth: ..."
        if inner is not None:
            return inner
    return process, in_parens or "", level or "info", body


def _split_level(text: str) -> tuple[str, str]:
    """``("warning", rest)`` for ``Warning: rest``; ``("", text)`` without a level."""
    colon = text.find(": ")
    if 0 < colon < 8:
        level = _LEVELS.get(text[:colon])
        if level is not None:
            return level, text[colon + 2 :]
    return "", text


def parse_dovecot(line: LogLine) -> Claim | None:
    """The first Dovecot pattern that claims ``line``, or None."""
    split = split_process(line)
    if split is None:
        return None
    process, in_parens, level, text = split
    if process.endswith("-login") and level == "info":
        claim = login(line, process[:-6], text)
        if claim is not None:
            return claim
    elif process in ("auth", "auth-worker", "dovecot-auth", "dovecot"):
        claim = auth_failure(line, in_parens, text)
        if claim is not None:
            return claim
    elif process in _SESSIONS and in_parens:
        user = in_parens.rpartition(", ")[2]
        if user.isdigit():  # lmtp(9529): the process ID, no user yet
            user = ""
        shown = text if level == "info" else f"{level.capitalize()}: {text}"
        return "dovecot.session", DovecotSession(line, process.lower(), user, shown)
    return "dovecot.diagnostic", Diagnostic(line, level, text)


def login(line: LogLine, protocol: str, text: str) -> Claim | None:
    """``Login: user=<u>, method=M, rip=R, ...`` and the ways a login process ends."""
    if text.startswith(("Login: ", "Logged in: ")):
        reason, fields = "", text[text.find(": ") + 2 :]
    else:
        cut = _fields_start(text)
        if cut < 0:
            return None
        reason, fields = text[:cut], text[cut + 2 :]
    rips = list(_rip(fields))
    if not rips:
        return None
    last = rips[-1]
    remote_ip = last.group(1)
    after = fields[last.end() :]
    lip = _lip(after)
    local_ip = lip.group(1) if lip else ""
    user, method = _user_and_method(fields[: last.start()])
    if not reason:
        session = _session(after)
        return "dovecot.login", DovecotLogin(
            line, protocol, user, method, remote_ip, local_ip, session.group(1) if session else "",
            "TLS" in after or "secured" in after,
        )  # fmt: skip
    if (
        "auth failed" in reason
        or "authorization failed" in reason
        or ("authentication attempts" in reason)
    ):
        attempts = _attempts(reason)
        return "dovecot.login_failed", DovecotLoginFailed(
            line, protocol, user, method, remote_ip, local_ip, reason,
            int(attempts.group(1)) if attempts else None,
        )  # fmt: skip
    return "dovecot.disconnect", DovecotDisconnect(line, protocol, user, remote_ip, reason)


def _fields_start(text: str) -> int:
    """Where ``: user=``/``: method=``/``: rip=`` starts the fields after a login's reason."""
    found = -1
    for key in (": user=", ": method=", ": rip="):
        at = text.find(key)
        if at >= 0 and (found < 0 or at < found):
            found = at
    return found


def _user_and_method(head: str) -> tuple[str, str]:
    """``user=<u>, method=PLAIN, `` -> (u, PLAIN): the user runs to the last ``>``."""
    if not head.startswith("user="):
        match = _user_head(head)
        return "", (match.group(2) or "") if match else ""
    head = head[5:]
    if head.startswith("<"):
        head = head[1:]
    match = _user_head(head)
    if match is None:
        return head, ""
    return match.group(1), match.group(2) or ""


def auth_failure(line: LogLine, in_parens: str, text: str) -> Claim | None:
    """``passwd-file(user,ip,<session>): unknown user`` and its relatives."""
    worker = _worker_prefix(text)
    if worker is not None:
        text = text[worker.end() :]
    if text.startswith("pam_unix(dovecot:auth): "):
        match = _pam_unix(text)
        if match is None:
            return None
        ruser, rhost, user = match.groups()
        return "dovecot.pam_failure", DovecotAuthFailure(
            line, "pam_unix", user or ruser, rhost, "authentication failure"
        )
    match = _passdb(text)
    if match is not None:
        passdb, request, reason = match.groups()
    elif in_parens and "," in in_parens:  # Dovecot 2.4: auth(user,ip,sasl:x)<s>: sql: ...
        passdb, _, reason = text.partition(": ")
        request = in_parens
    else:
        return None
    if not reason.startswith(_AUTH_FAILURES):
        return None
    user, remote_ip = _request_user_and_ip(request)
    return "dovecot.auth_failure", DovecotAuthFailure(line, passdb, user, remote_ip, reason)


def _request_user_and_ip(request: str) -> tuple[str, str]:
    """``user,192.0.2.1,master,<session>`` -> (user, ip), reading the fields from the right."""
    fields = request.split(",")
    for index in range(len(fields) - 1, 0, -1):
        if _address(fields[index]):
            return ",".join(fields[:index]), fields[index]
    return request, ""
