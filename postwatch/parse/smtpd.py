"""smtpd(8) records: sessions, SASL logins and failures, access decisions, limits.

Formats follow Postfix's smtpd.c, smtpd_check.c (``log_whatsup``), smtpd_sasl_glue.c,
smtpd_sasl_proto.c and smtpd_proxy.c.  The client ``name[addr]`` is always read where
Postfix writes it, before any text the client chose.
"""

from __future__ import annotations

import re

from postwatch.parse.envelope import (
    CLIENT,
    MILTER_TAIL,
    WHATSUP_TAIL,
    port_number,
    split_queue_id,
    split_tail,
)
from postwatch.parse.events import (
    ClientAccepted,
    Connect,
    ConnectionLost,
    Disconnect,
    Event,
    HostnameMismatch,
    MilterAction,
    RateLimit,
    Reject,
    SaslFailure,
    TlsEstablished,
)
from postwatch.records import LogLine

Claim = tuple[str, Event]
# Events are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__

_connect = re.compile(rf"connect from {CLIENT}\Z").match
# The counters after the client are checked on their own (they repeat from line to line).
_disconnect = re.compile(rf"disconnect from {CLIENT}(.*)\Z").match
_counters_tail = re.compile(r"(?: [\w-]+=\d{1,15}(?:/\d{1,15})?)*\Z").match
_counter = re.compile(r"([\w-]+)=(\d{1,15})(?:/(\d{1,15}))?").findall
# counter text -> counters: a few hundred distinct tails in a busy day's log; cleared when full
COUNTERS: dict[str, tuple[tuple[str, int, int], ...]] = {}
COUNTERS_LIMIT = 4096
COUNTERS_KEY_LENGTH = 200
_TLS_STARTS = ("Anonymous TLS ", "Trusted TLS ", "Verified TLS ", "Untrusted TLS ", "TLS ")
_client = re.compile(rf"client={CLIENT}").match
# After the SASL login come, in this order, the MAIL FROM AUTH= sender (client text, one
# SMTP token) and the XFORWARD origin of a re-injected message.
_orig_suffix = re.compile(rf"(?:, orig_queue_id=([0-9A-Za-z]+))?(?:, orig_client=({CLIENT}))?\Z")
_simple_login = re.compile(r"(?:, sasl_method=([^\s,]*))?, sasl_username=([^,]*)\Z").match
_ORIG_SUFFIX = rf"(?:, orig_queue_id=[0-9A-Za-z]+)?(?:, orig_client={CLIENT})?\Z"
_find_orig_suffix = _orig_suffix.search
_sender_token = re.compile(rf"\S*?(?={_ORIG_SUFFIX})").match
_action = re.compile(rf"([a-z][a-z_-]*): ([A-Z][A-Z0-9-]*) from {CLIENT}: ").match
_lost = re.compile(rf"(lost connection|timeout|too many errors) after (.+) from {CLIENT}\Z").match
_sasl = re.compile(
    rf"warning: {CLIENT}: SASL ([\w-]+) authentication (failed|aborted)(?:: ?(.*))?\Z"
).match
_rate = re.compile(
    rf"warning: ([A-Za-z ]+?) limit exceeded: (\d{{1,15}}) from {CLIENT} for service (\S+)\Z"
).match
_no_resolve = re.compile(
    r"warning: hostname (\S+) does not resolve to address ([0-9A-Fa-f:.]*[0-9A-Fa-f.])(?:: .*)?\Z"
).match
_not_listed = re.compile(
    r"warning: ([0-9A-Fa-f:.]*[0-9A-Fa-f.]): "
    r"(?:address not listed for hostname (\S+)|hostname (\S+) verification failed: .*)\Z"
).match
_tls = re.compile(
    rf"(?:(Anonymous|Trusted|Verified|Untrusted) )?TLS connection established (from|to) "
    rf"{CLIENT}: (\S+) with cipher (\S+)"
).match
_proxy = re.compile(r"(proxy-accept|proxy-reject): ([A-Z][A-Z0-9-]*): ").match
_SERVER_CONFIG_ERROR = "421 4.3.5 Server configuration error"


def parse_smtpd(line: LogLine) -> Claim | None:
    """One smtpd line, or None when no smtpd pattern claims it."""
    message = line.message
    first = message[:1]
    if first == "c":
        match = _connect(message)
        if match is not None:
            name, addr, port = match.groups()
            return "smtpd.connect", _new(Connect, (line, name, addr, int(port) if port else None))
    elif first == "d":
        match = _disconnect(message)
        if match is not None:
            event = disconnect(line, match)
            if event is not None:
                return "smtpd.disconnect", event
    elif first in "ATUV" and message.startswith(_TLS_STARTS):  # no queue ID starts so
        return tls_established(line, message)
    elif first == "w":
        return warning(line, message)
    elif first == "l" or first == "t":
        claim = connection_lost(line, message)
        if claim is not None:
            return claim
    elif first == "p":
        match = _proxy(message)
        if match is not None:
            return "smtpd.proxy", proxy(line, message, match)
    split = split_queue_id(message)
    if split is None:
        return tls_established(line, message)
    queue_id, rest = split
    if rest.startswith("client="):
        return client_accepted(line, queue_id, rest)
    match = _action(rest)
    if match is not None:
        if match.group(1).startswith("milter-"):
            return "smtpd.milter", milter_action(line, queue_id, rest, match)
        return "smtpd.reject", reject(line, queue_id, rest, match)
    if not queue_id:  # "NOQUEUE: lost connection after ..." (seen once, in fail2ban's tests)
        return connection_lost(line, rest)
    return None


def disconnect(line: LogLine, match: re.Match[str]) -> Disconnect | None:
    """``disconnect from name[addr] ehlo=1 auth=0/1 commands=1/2`` (counters since 3.0)."""
    name, addr, _port, tail = match.groups()
    counters = COUNTERS.get(tail)
    if counters is None:
        if _counters_tail(tail) is None:
            return None
        counters = tuple(
            (command, int(ok), int(total or ok)) for command, ok, total in _counter(tail)
        )
        if len(tail) <= COUNTERS_KEY_LENGTH:
            if len(COUNTERS) >= COUNTERS_LIMIT:
                COUNTERS.clear()
            COUNTERS[tail] = counters
    return _new(Disconnect, (line, name, addr, counters))


def client_accepted(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """``QID: client=name[addr]:port, sasl_method=M, sasl_username=U, sasl_sender=S, ...``.

    Fields are read left to right in the order smtpd_sasl_proto.c writes them: the login
    name (checked by the SASL server) ends at the first ``, sasl_sender=``, and the sender
    (client text) cannot pose as the ``orig_*`` fields that follow it.
    """
    match = _client(rest)
    if match is None:
        return None
    name, addr, port = match.groups()
    end = match.end()
    if end == len(rest):  # the common case: no SASL login, no XFORWARD origin
        return "smtpd.client", _new(ClientAccepted, (
            line, queue_id, name, addr, int(port) if port else None, "", "", "", "", "",
        ))  # fmt: skip
    simple = _simple_login(rest, end)  # a login name without commas, nothing after it
    if simple is not None:
        method, username = simple.groups()
        return "smtpd.client", _new(ClientAccepted, (
            line, queue_id, name, addr, port_number(port), method or "", username or "", "", "",
            "",
        ))  # fmt: skip
    text = rest[end:]
    method = username = sender = ""
    if text.startswith(", sasl_method="):
        end = text.find(", ", 14)
        end = len(text) if end < 0 else end
        method, text = text[14:end], text[end:]
    if text.startswith(", sasl_username="):
        text = text[16:]
        end = text.find(", sasl_sender=")
        if end < 0:
            suffix = _find_orig_suffix(text) if ", orig_" in text else None
            end = suffix.start() if suffix is not None else len(text)
        username, text = text[:end], text[end:]
    if text.startswith(", sasl_sender="):
        token = _sender_token(text, 14)
        end = len(text) if token is None else token.end()
        sender, text = text[14:end], text[end:]
    suffix = _orig_suffix.match(text)
    orig_queue_id = orig_client = ""
    if suffix is not None:
        orig_queue_id, orig_client = suffix.group(1) or "", suffix.group(2) or ""
    return "smtpd.client", _new(ClientAccepted, (
        line, queue_id, name, addr, port_number(port), method, username, sender, orig_queue_id,
        orig_client,
    ))  # fmt: skip


def reject(line: LogLine, queue_id: str, rest: str, match: re.Match[str]) -> Reject:
    """``NOQUEUE: reject: RCPT from name[addr]: 554 5.7.1 ...; from=<s> to=<r> proto= helo=<h>``.

    smtpd_check.c's log_whatsup never writes the SASL login, so a ``sasl_username=<...>``
    after the HELO name is HELO text, except on the one reject smtpd.c logs itself (a milter
    configuration error), which carries the session's login.
    """
    action, stage, name, addr, _port = match.groups()
    text = rest[match.end() :]
    username = ""
    if text.startswith(_SERVER_CONFIG_ERROR):
        tail = split_tail(text, MILTER_TAIL)
        username = tail.extra
    else:
        tail = split_tail(text, WHATSUP_TAIL)
    return _new(Reject, (
        line, queue_id, action, stage, name, addr, tail.head, tail.sender, tail.recipient,
        tail.proto, tail.helo, username,
    ))  # fmt: skip


def milter_action(line: LogLine, queue_id: str, rest: str, match: re.Match[str]) -> MilterAction:
    """``QID: milter-reject: END-OF-MESSAGE from name[addr]: 5.7.1 ...; from=<> to=<> ...``."""
    action, stage, name, addr, _port = match.groups()
    tail = split_tail(rest[match.end() :], MILTER_TAIL)
    return _new(MilterAction, (
        line, queue_id, action, stage, name, addr, tail.head, tail.sender, tail.recipient,
        tail.proto, tail.helo,
    ))  # fmt: skip


def proxy(line: LogLine, message: str, match: re.Match[str]) -> Reject:
    """``proxy-accept: END-OF-MESSAGE: 250 2.0.0 Ok: queued as X; from=<> ...`` (no client)."""
    action, stage = match.groups()
    tail = split_tail(message[match.end() :], MILTER_TAIL)
    return _new(Reject, (
        line, "", action, stage, "", "", tail.head, tail.sender, tail.recipient, tail.proto,
        tail.helo, "",
    ))  # fmt: skip


def connection_lost(line: LogLine, message: str) -> Claim | None:
    """``lost connection|timeout|too many errors after STAGE from name[addr]``."""
    match = _lost(message)
    if match is None:
        return None
    what, after, name, addr, _port = match.groups()
    reason = "lost" if what == "lost connection" else "timeout" if what == "timeout" else "errors"
    return "smtpd.connection_lost", _new(ConnectionLost, (line, reason, after, name, addr))


def warning(line: LogLine, message: str) -> Claim | None:
    """SASL failures, rate limits and hostname checks; other warnings are diagnostics."""
    if "SASL" in message:
        match = _sasl(message)
        if match is not None:
            name, addr, _port, mechanism, how, text = match.groups()
            reason, username = "aborted", ""
            if how == "failed":
                reason, _, username = (text or "").partition(", sasl_username=")
            return "smtpd.sasl_failure", _new(
                SaslFailure, (line, name, addr, mechanism, reason, username)
            )
        return None
    if "limit exceeded" in message:
        match = _rate(message)
        if match is not None:
            limit, count, name, addr, _port, service = match.groups()
            return "smtpd.rate_limit", _new(
                RateLimit, (line, limit, int(count), name, addr, service)
            )
        return None
    if message.startswith("warning: hostname "):
        match = _no_resolve(message)
        if match is not None:
            hostname, addr = match.groups()
            return "smtpd.hostname_mismatch", _new(HostnameMismatch, (line, hostname, addr))
        return None
    match = _not_listed(message)
    if match is not None:
        addr, listed, verified = match.groups()
        return "smtpd.address_not_listed", _new(HostnameMismatch, (line, listed or verified, addr))
    return None


def tls_line(line: LogLine) -> Claim | None:
    """A TLS handshake line of smtp, lmtp or tlsproxy."""
    return tls_established(line, line.message)


def tls_established(line: LogLine, message: str) -> Claim | None:
    """``Anonymous TLS connection established from|to name[addr]: TLSv1.3 with cipher X``."""
    if "TLS connection established " not in message:
        return None
    match = _tls(message)
    if match is None:
        return None
    trust, direction, name, addr, _port, protocol, cipher = match.groups()
    return "postfix.tls", _new(
        TlsEstablished, (line, trust or "", direction, name, addr, protocol, cipher)
    )
