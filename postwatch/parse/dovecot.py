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
    DovecotRelayed,
    DovecotSession,
    Event,
)
from postwatch.records import LogLine

Claim = tuple[str, Event]
# Events are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__

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
LEVELS = {
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
# component -> what it is (see describe): components repeat (lmtp(pid), imap(user)).
# Cleared when full.
COMPONENTS: dict[str, tuple[str, str, str, str, str]] = {}
COMPONENTS_LIMIT = 4096
MEMO_KEY_LENGTH = 200  # longer components (client text) are split every time
_address_run = re.compile(r"[0-9A-Fa-f:.]+").match
# What may follow the user name: ">", ", PID=N", ", method=M", ",", blanks (read from the right).
_pid_field = re.compile(r", PID=\d+\Z").search
_method_value = re.compile(r"[\w-]+\Z").search
_attempts = re.compile(r"(\d{1,15}) (?:authentication )?attempts").search
_session = re.compile(r"session=<([^<>]*)>").search
_passdb = re.compile(r"([a-z][a-z0-9-]*)\(([^()]*)\): (.*)\Z", re.DOTALL).match
_worker_prefix = re.compile(r"conn unix:auth-worker \([^)]*\): auth-worker<\d+>: ").match
# PAM's ruser is the tried name (client text): rhost is the last field but an optional user=.
_pam_unix = re.compile(
    r"pam_unix\(dovecot:auth\): authentication failure; .*?ruser=(.*) rhost=(\S*)"
    r"(?:\s+user=(\S*))?\Z"
).match
_RELAYED = "Successfully relayed message: "
_queued_as = re.compile(r", reply=`2\d\d [^`']*\bqueued as ([0-9A-Za-z]{5,20})'\Z").search
_address = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}\Z|[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\Z").match


# What a component is, worked out once: (process, in parentheses, role, protocol, user).
# The role picks the patterns: a login process, the auth processes, a mail session (with
# its user), or none (diagnostics only).
Component = tuple[str, str, str, str, str]
_LOGIN, _AUTH, _SESSION = "login", "auth", "session"
_AUTH_PROCESSES = frozenset({"auth", "auth-worker", "dovecot-auth", "dovecot"})
_NO_PROCESS: Component = ("", "", "", "", "")
_MASTER: Component = ("dovecot", "", _AUTH, "", "")  # Dovecot 1.x master: no process named


def split_process(line: LogLine, nested: bool = False) -> tuple[Component, str, str] | None:
    """``(component, level, text)`` of a Dovecot record, or None."""
    message = line.message
    program = line.program
    level = ""
    if program == "dovecot":
        colon = message.find(": ")
        if 0 < colon < 8:  # Dovecot 1.x: "dovecot: Info: imap-login: ..."
            level = LEVELS.get(message[:colon], "")
            if level:
                message = message[colon + 2 :]
                colon = message.find(": ")
        if colon > 0:
            component, body = message[:colon], message[colon + 2 :]
        else:
            component, body = "", ""
    else:
        component, body = program, message
    known = COMPONENTS.get(component)
    if known is None:
        known = describe(component)
        if len(component) <= MEMO_KEY_LENGTH:
            if len(COMPONENTS) >= COMPONENTS_LIMIT:
                COMPONENTS.clear()
            COMPONENTS[component] = known
    if not known[0]:
        if level or message.startswith("Dovecot v"):  # the 1.x master names no process
            return _MASTER, level or "info", message
        return None
    if not level:
        colon = body.find(": ")
        if 0 < colon < 8:
            level = LEVELS.get(body[:colon], "")
            if level:
                body = body[colon + 2 :]
    if known[0] == "dovecot" and program == "dovecot" and not nested:
        inner = split_process(line._replace(message=body), nested=True)  # "dovecot: auth: ..."
        if inner is not None:
            return inner
    return known, level or "info", body


def describe(component: str) -> Component:
    """``imap(user)<123><session>`` -> ``("imap", "user", "session", "imap", "user")``.

    :data:`_NO_PROCESS` when the component names no known process.
    """
    match = _component(component)
    if match is None or match.group(1) not in PROCESSES:
        return _NO_PROCESS
    process, in_parens = match.group(1), match.group(2) or ""
    if process.endswith("-login"):
        return process, in_parens, _LOGIN, process[:-6], ""
    if process in _AUTH_PROCESSES:
        return process, in_parens, _AUTH, "", ""
    if process in _SESSIONS and in_parens:
        user = in_parens.rpartition(", ")[2]
        if user.isdigit():  # lmtp(9529): the process ID, no user yet
            user = ""
        return process, in_parens, _SESSION, process.lower(), user
    return process, in_parens, "", "", ""


def parse_dovecot(line: LogLine) -> Claim | None:
    """The first Dovecot pattern that claims ``line``, or None."""
    split = split_process(line)
    if split is None:
        return None
    component, level, text = split
    role = component[2]
    if role == _SESSION:
        if component[3] == "submission" and text.startswith(_RELAYED):
            return "dovecot.relayed", relayed(line, component[4], text)
        shown = text if level == "info" else f"{level.capitalize()}: {text}"
        return "dovecot.session", _new(DovecotSession, (line, component[3], component[4], shown))
    if role == _LOGIN:
        if level == "info":
            claim = login(line, component[3], text)
            if claim is not None:
                return claim
    elif role == _AUTH:
        claim = auth_failure(line, component[1], text)
        if claim is not None:
            return claim
    return "dovecot.diagnostic", _new(Diagnostic, (line, level, text))


def login(line: LogLine, protocol: str, text: str) -> Claim | None:
    """``Login: user=<u>, method=M, rip=R, ...`` and the ways a login process ends."""
    if text.startswith(("Login: ", "Logged in: ")):
        reason, fields = "", text[text.find(": ") + 2 :]
    else:
        cut = _fields_start(text)
        if cut < 0:
            return None
        reason, fields = text[:cut], text[cut + 2 :]
    # the user name is client text: the remote IP is the last "rip=" field
    rip = fields.rfind("rip=")
    while rip >= 0:
        if rip == 0 or fields[rip - 1] in " ,":
            value = _address_run(fields, rip + 4)
            if value is not None:
                break
        rip = fields.rfind("rip=", 0, rip)
    else:
        return None
    remote_ip = value.group()
    after = fields[value.end() :]
    local_ip = _first_field(after, "lip=")
    user, method = _user_and_method(fields[: rip - 1] if rip else "")
    if not reason:
        session = _session(after)
        return "dovecot.login", _new(DovecotLogin, (
            line, protocol, user, method, remote_ip, local_ip, session.group(1) if session else "",
            "TLS" in after or "secured" in after,
        ))  # fmt: skip
    if (
        "auth failed" in reason
        or "authorization failed" in reason
        or ("authentication attempts" in reason)
    ):
        attempts = _attempts(reason)
        return "dovecot.login_failed", _new(DovecotLoginFailed, (
            line, protocol, user, method, remote_ip, local_ip, reason,
            int(attempts.group(1)) if attempts else None,
        ))  # fmt: skip
    return "dovecot.disconnect", _new(DovecotDisconnect, (line, protocol, user, remote_ip, reason))


def relayed(line: LogLine, user: str, text: str) -> DovecotRelayed:
    """``Successfully relayed message: from=<s>, ..., reply=`250 ... queued as QID'``.

    The sender is client text and comes first; the reply is the MTA's and ends the line, so
    the queue ID is read there and nowhere else.  The session is the last ``<...>`` of the
    process name (``submission(user)<pid><session>``), which precedes all client text.
    """
    head = line.message[: line.message.find(": ")] if line.program == "dovecot" else ""
    session = head[head.rfind("<") + 1 : -1] if head.endswith(">") else ""
    queued = _queued_as(text)
    return _new(DovecotRelayed, (line, user, session, queued.group(1) if queued else ""))


def _first_field(text: str, key: str) -> str:
    """The address of the first ``key`` field (at the start, or after a blank or comma)."""
    at = text.find(key)
    while at >= 0:
        if at == 0 or text[at - 1] in " ,":
            value = _address_run(text, at + len(key))
            if value is not None:
                return value.group()
        at = text.find(key, at + 1)
    return ""


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
        return "", _split_user(head)[1]
    head = head[5:]
    if head.startswith("<"):
        head = head[1:]
    return _split_user(head)


def _split_user(head: str) -> tuple[str, str]:
    """``u>, PID=1, method=M, `` -> (u, M): the longest tail of those fields, from the right.

    The tail is ``>``, ``, PID=N``, ``, method=M``, ``,`` and blanks, each optional, in that
    order; each can only be read one way, so taking every one that is there, right to left,
    finds the longest tail, and the user name is what is left before it.
    """
    end = len(head)
    while end and head[end - 1].isspace():
        end -= 1
    if head[end - 1 : end] == ",":
        end -= 1
    method = ""
    mark = head.rfind(", method=", 0, end)
    if mark >= 0:
        value = _method_value(head, mark + 9, end)
        if value is not None and value.start() == mark + 9:
            method, end = value.group(), mark
    pid = _pid_field(head, 0, end)
    if pid is not None:
        end = pid.start()
    if head[end - 1 : end] == ">":
        end -= 1
    return head[:end], method


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
