"""Typed events: what one Postfix or Dovecot log line says.

Every event is a ``NamedTuple`` whose first field is the :class:`~postwatch.records.LogLine`
it came from (time, host, program, pid).  ``kind`` (a property) is a stable short name used in
counters, JSON output and the annotated fixtures; ``KIND_OF`` maps each type to it.

Addresses are kept as logged, without the angle brackets; ``sender`` is ``""`` for
the null sender ``<>`` and ``None`` when the line did not say.
"""

from __future__ import annotations

from typing import NamedTuple

from postwatch.records import LogLine

# --- smtpd / postscreen ------------------------------------------------------------


class Connect(NamedTuple):
    """``connect from name[ip]`` (smtpd) or ``CONNECT from [ip]:port`` (postscreen)."""

    line: LogLine
    client_name: str
    client_ip: str
    client_port: int | None = None

    @property
    def kind(self) -> str:
        return "connect"


class Disconnect(NamedTuple):
    """``disconnect from name[ip] ehlo=1 auth=0/1 commands=1/2``."""

    line: LogLine
    client_name: str
    client_ip: str
    counters: tuple[tuple[str, int, int], ...] = ()  # (command, ok, total)

    @property
    def kind(self) -> str:
        return "disconnect"


class ConnectionLost(NamedTuple):
    """``lost connection after X from name[ip]`` or ``timeout after X from name[ip]``."""

    line: LogLine
    reason: str  # "lost" or "timeout"
    after: str  # the SMTP command/stage: CONNECT, EHLO, AUTH, DATA (123 bytes) ...
    client_name: str
    client_ip: str

    @property
    def kind(self) -> str:
        return "connection_lost"


class TlsEstablished(NamedTuple):
    """``Anonymous TLS connection established from|to name[ip]: TLSv1.3 with cipher X``."""

    line: LogLine
    trust: str  # Anonymous, Trusted, Verified, Untrusted
    direction: str  # "from" (smtpd) or "to" (smtp/lmtp)
    peer_name: str
    peer_ip: str
    protocol: str
    cipher: str

    @property
    def kind(self) -> str:
        return "tls"


class ClientAccepted(NamedTuple):
    """``QID: client=name[ip]:port, sasl_method=M, sasl_username=U, orig_queue_id=Q, ...``."""

    line: LogLine
    queue_id: str
    client_name: str
    client_ip: str
    client_port: int | None = None
    sasl_method: str = ""
    sasl_username: str = ""
    sasl_sender: str = ""
    orig_queue_id: str = ""
    orig_client: str = ""

    @property
    def kind(self) -> str:
        return "client"


class SaslFailure(NamedTuple):
    """``warning: name[ip]: SASL LOGIN authentication failed: reason, sasl_username=U``."""

    line: LogLine
    client_name: str
    client_ip: str
    mechanism: str
    reason: str
    sasl_username: str = ""

    @property
    def kind(self) -> str:
        return "sasl_failure"


class Reject(NamedTuple):
    """An access decision: ``NOQUEUE|QID: reject|warn|hold|discard|filter|redirect|permit:``.

    Also postscreen's ``NOQUEUE: reject: RCPT from [ip]:port: ...`` with its
    comma-separated attributes.
    """

    line: LogLine
    queue_id: str  # "" for NOQUEUE
    action: str  # reject, warn, hold, discard, filter, redirect, permit, ...
    stage: str  # CONNECT, EHLO, HELO, MAIL, RCPT, DATA, END-OF-MESSAGE, VRFY, ETRN, AUTH ...
    client_name: str
    client_ip: str
    reply: str  # "554 5.7.1 <x>: Relay access denied"
    sender: str | None = None
    recipient: str = ""
    proto: str = ""
    helo: str = ""
    sasl_username: str = ""

    @property
    def kind(self) -> str:
        return "reject"


class RateLimit(NamedTuple):
    """``warning: Message delivery request rate limit exceeded: 31 from name[ip] for service S``."""

    line: LogLine
    limit: str  # "Connection rate", "Message delivery request rate", "Recipient address rate" ...
    observed: int  # the rate or count the client reached
    client_name: str
    client_ip: str
    for_service: str

    @property
    def kind(self) -> str:
        return "rate_limit"


class HostnameMismatch(NamedTuple):
    """``warning: hostname X does not resolve to address IP`` (and the ``: reason`` variant)."""

    line: LogLine
    hostname: str
    client_ip: str

    @property
    def kind(self) -> str:
        return "hostname_mismatch"


class PostscreenVerdict(NamedTuple):
    """postscreen: PASS NEW/OLD, DNSBL rank, PREGREET, HANGUP, COMMAND ... LIMIT, ALLOWLISTED ..."""

    line: LogLine
    verdict: str  # "PASS NEW", "DNSBL", "PREGREET", "ALLOWLISTED", "DENYLISTED" ...
    client_ip: str
    client_port: int | None
    detail: str = ""

    @property
    def kind(self) -> str:
        return "postscreen"


# --- cleanup ------------------------------------------------------------------------


class MessageId(NamedTuple):
    """cleanup: ``QID: message-id=<id>``."""

    line: LogLine
    queue_id: str
    message_id: str

    @property
    def kind(self) -> str:
        return "message_id"


class ContentAction(NamedTuple):
    """cleanup header/body checks: ``QID: reject: header Subject: x from name[ip]; from=<> ...``."""

    line: LogLine
    queue_id: str
    action: str  # reject, warning, hold, discard, redirect, replace, prepend, filter, info
    part: str  # header, body, ...
    text: str  # the matched header/body text (attacker text: not parsed further)
    client_name: str
    client_ip: str
    sender: str | None = None
    recipient: str = ""
    proto: str = ""
    helo: str = ""
    reply: str = ""

    @property
    def kind(self) -> str:
        return "content_action"


class MilterAction(NamedTuple):
    """``QID: milter-reject|milter-discard|milter-hold: STAGE from name[ip]: reply; from=<>``."""

    line: LogLine
    queue_id: str
    action: str  # milter-reject, milter-discard, milter-hold
    stage: str
    client_name: str
    client_ip: str
    reply: str
    sender: str | None = None
    recipient: str = ""
    proto: str = ""
    helo: str = ""

    @property
    def kind(self) -> str:
        return "milter_action"


# --- qmgr ---------------------------------------------------------------------------


class QueueActive(NamedTuple):
    """qmgr: ``QID: from=<s>, size=N, nrcpt=N (queue active)``."""

    line: LogLine
    queue_id: str
    sender: str
    size: int
    nrcpt: int

    @property
    def kind(self) -> str:
        return "queue_active"


class Removed(NamedTuple):
    """qmgr/postsuper: ``QID: removed``."""

    line: LogLine
    queue_id: str

    @property
    def kind(self) -> str:
        return "removed"


class Expired(NamedTuple):
    """qmgr: ``QID: from=<s>, status=expired, returned to sender``."""

    line: LogLine
    queue_id: str
    sender: str

    @property
    def kind(self) -> str:
        return "expired"


# --- delivery agents: smtp lmtp local virtual pipe error retry discard ---------------


class Delivery(NamedTuple):
    """``QID: to=<r>, orig_to=<o>, relay=R, delay=D, delays=a/b/c/d, dsn=X, status=S (text)``."""

    line: LogLine
    queue_id: str
    recipient: str
    status: str  # sent, deferred, bounced, expired, deliverable, undeliverable, ...
    relay: str = ""
    dsn: str = ""
    delay: float | None = None
    reply: str = ""  # the parenthesised text (remote reply: attacker-influenced)
    orig_to: str = ""
    conn_use: int | None = None
    tls: str = ""
    queued_as: str = ""  # "queued as NEXTQID" in the reply: the next hop's queue ID

    @property
    def kind(self) -> str:
        return "delivery"


class RemoteReply(NamedTuple):
    """``QID: host X[ip] said: 550 ... (in reply to RCPT TO command)`` and ``refused to talk``."""

    line: LogLine
    queue_id: str
    peer_name: str
    peer_ip: str
    reply: str

    @property
    def kind(self) -> str:
        return "remote_reply"


# --- bounce, pickup, postsuper, anvil ------------------------------------------------


class BounceNotice(NamedTuple):
    """bounce: ``QID: sender non-delivery notification: NEWQID`` (and delay/success/postmaster)."""

    line: LogLine
    queue_id: str
    notice: str  # "sender non-delivery", "postmaster non-delivery", "sender delay", ...
    notice_queue_id: str

    @property
    def kind(self) -> str:
        return "bounce_notice"


class Pickup(NamedTuple):
    """pickup: ``QID: uid=N from=<s>``."""

    line: LogLine
    queue_id: str
    uid: int
    sender: str

    @property
    def kind(self) -> str:
        return "pickup"


class QueueOperation(NamedTuple):
    """postsuper: ``QID: placed on hold`` / ``released from hold`` / ``requeued`` / ``removed``.

    A summary line (``Placed on hold: 3 messages``) has no queue ID and a ``messages`` count.
    """

    line: LogLine
    queue_id: str
    operation: str  # "placed on hold", "released from hold", "requeued", "removed"
    messages: int | None = None

    @property
    def kind(self) -> str:
        return "queue_operation"


class AnvilStatistic(NamedTuple):
    """anvil: ``statistics: max connection rate 1/60s for (smtp:1.2.3.4) at May 9 22:12:21``."""

    line: LogLine
    statistic: str  # "max connection rate", "max connection count", "max cache size" ...
    value: str
    service: str
    client_ip: str

    @property
    def kind(self) -> str:
        return "anvil"


# --- daemon diagnostics ---------------------------------------------------------------


class Diagnostic(NamedTuple):
    """A daemon's own ``warning:``, ``error:``, ``fatal:``, ``panic:`` or master notice."""

    line: LogLine
    severity: str  # info, warning, error, fatal, panic
    text: str

    @property
    def kind(self) -> str:
        return "diagnostic"


# --- Dovecot --------------------------------------------------------------------------


class DovecotLogin(NamedTuple):
    """``imap-login: Login: user=<u>, method=PLAIN, rip=1.2.3.4, lip=...`` (2.4: ``Logged in``)."""

    line: LogLine
    protocol: str  # imap, pop3, submission, managesieve, lmtp ...
    user: str
    method: str
    remote_ip: str
    local_ip: str
    session: str = ""
    tls: bool = False

    @property
    def kind(self) -> str:
        return "dovecot_login"


class DovecotLoginFailed(NamedTuple):
    """``imap-login: Disconnected|Aborted login|Login aborted (auth failed, N attempts ...)``."""

    line: LogLine
    protocol: str
    user: str
    method: str
    remote_ip: str
    local_ip: str
    reason: str
    attempts: int | None = None

    @property
    def kind(self) -> str:
        return "dovecot_login_failed"


class DovecotDisconnect(NamedTuple):
    """A login process ends without a failed auth: ``Disconnected (no auth attempts ...)``."""

    line: LogLine
    protocol: str
    user: str
    remote_ip: str
    reason: str

    @property
    def kind(self) -> str:
        return "dovecot_disconnect"


class DovecotAuthFailure(NamedTuple):
    """``auth: passwd-file(user,1.2.3.4): unknown user`` / ``Password mismatch`` (and 2.4 form)."""

    line: LogLine
    passdb: str  # passwd-file, sql, ldap, pam, shadow, ...
    user: str
    remote_ip: str
    reason: str

    @property
    def kind(self) -> str:
        return "dovecot_auth_failure"


class DovecotSession(NamedTuple):
    """A mail session's own lines: ``imap(user)<..>: Logged out in=..``, lda/lmtp deliveries."""

    line: LogLine
    protocol: str
    user: str
    text: str

    @property
    def kind(self) -> str:
        return "dovecot_session"


class DovecotRelayed(NamedTuple):
    """Dovecot's submission service handed a message to the MTA:
    ``submission(user)<pid><session>: Successfully relayed message: from=<s>, size=N, id=X,
    nrcpt=N, reply=`250 2.0.0 Ok: queued as QID'``.  ``queue_id`` is the MTA's, read from
    its reply at the end of the line (``""`` when the reply names none)."""

    line: LogLine
    user: str
    session: str
    queue_id: str

    @property
    def kind(self) -> str:
        return "dovecot_relayed"


# --- everything else ---------------------------------------------------------------


class Unparsed(NamedTuple):
    """A line no pattern claimed; counted per program, never an error."""

    line: LogLine

    @property
    def kind(self) -> str:
        return "unparsed"


Event = (
    Connect
    | Disconnect
    | ConnectionLost
    | TlsEstablished
    | ClientAccepted
    | SaslFailure
    | Reject
    | RateLimit
    | HostnameMismatch
    | PostscreenVerdict
    | MessageId
    | ContentAction
    | MilterAction
    | QueueActive
    | Removed
    | Expired
    | Delivery
    | RemoteReply
    | BounceNotice
    | Pickup
    | QueueOperation
    | AnvilStatistic
    | Diagnostic
    | DovecotLogin
    | DovecotLoginFailed
    | DovecotDisconnect
    | DovecotAuthFailure
    | DovecotSession
    | DovecotRelayed
    | Unparsed
)

EVENT_TYPES: tuple[type, ...] = (
    Connect,
    Disconnect,
    ConnectionLost,
    TlsEstablished,
    ClientAccepted,
    SaslFailure,
    Reject,
    RateLimit,
    HostnameMismatch,
    PostscreenVerdict,
    MessageId,
    ContentAction,
    MilterAction,
    QueueActive,
    Removed,
    Expired,
    Delivery,
    RemoteReply,
    BounceNotice,
    Pickup,
    QueueOperation,
    AnvilStatistic,
    Diagnostic,
    DovecotLogin,
    DovecotLoginFailed,
    DovecotDisconnect,
    DovecotAuthFailure,
    DovecotSession,
    DovecotRelayed,
    Unparsed,
)
# event type -> its kind, for counting by type (read off a blank instance of each)
KIND_OF: dict[type, str] = {
    cls: cls._make((None,) * len(cls._fields)).kind  # type: ignore[attr-defined]
    for cls in EVENT_TYPES
}
EVENT_KINDS: dict[str, type] = {kind: cls for cls, kind in KIND_OF.items()}
