"""Records about queued messages: cleanup, qmgr, pickup, bounce, postsuper, delivery agents.

Every record here starts with the queue ID (:func:`~postwatch.parse.envelope.split_queue_id`).
Formats follow Postfix's cleanup_message.c / cleanup_milter.c, qmgr_active.c,
pickup.c, bounce_notify_*.c, postsuper.c and log_adhoc.c (the delivery line).
"""

from __future__ import annotations

import re

from postwatch.parse.envelope import (
    CLEANUP_TAIL,
    CLIENT,
    MILTER_TAIL,
    PLAIN_ADDRESS,
    QUEUE_ID,
    QUOTED_ADDRESS,
    split_tail,
)
from postwatch.parse.events import (
    BounceNotice,
    ContentAction,
    Delivery,
    Event,
    Expired,
    MessageId,
    MilterAction,
    Pickup,
    QueueActive,
    QueueOperation,
    RemoteReply,
    Removed,
)
from postwatch.records import LogLine

Claim = tuple[str, Event]
# Events are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__

# The sender is client text; the counts after it are read from the right.
_queue_active = re.compile(r", size=(\d{1,15}), nrcpt=(\d{1,15}) \(queue active\)\Z").match
_expired = re.compile(r"from=<(.*)>, status=((?:force-)?expired), returned to sender\Z").match
_pickup = re.compile(r"uid=(\d{1,15}) from=<(.*)>(?: orig_id=[0-9A-Za-z]+)?\Z").match
_bounce = re.compile(r"((?:sender|postmaster) [a-z -]+?) notification: ([0-9A-Za-z]+)\Z").match
_content = re.compile(r"([a-z]+(?:-[a-z]+)*): (header|body) ").match
_milter = re.compile(
    rf"(milter-reject|milter-discard|milter-hold): ([A-Z][A-Z0-9-]*) from {CLIENT}: "
).match
_origin = re.compile(CLIENT + r"\Z").match
_POSTSUPER = ("placed on hold", "released from hold", "requeued", "removed", "expired")
_postsuper_summary = re.compile(
    r"(Deleted|Requeued|Placed on hold|Released from hold|Force-expired|"
    r"Renamed to match inode number): (\d{1,15}) messages?\Z"
).match

# log_adhoc.c: to=<r>[, orig_to=<o>], relay=R[, conn_use=N], delay=D, delays=a/b/c/d, dsn=X,
# status=S (text); Postfix 3.10 adds tls= (seen both before and after dsn=).  Addresses hold
# no '<' or '>' outside quotes (Postfix 3.5+ quotes odd local parts), so the recipient ends at
# the first '>' Postfix wrote, and the reply text, last on the line, cannot move the status.
_DELIVERY_FIELDS = (
    r", relay=([^,\s]*)(?:, conn_use=(\d{1,15}))?, delay=([0-9.]+)(?:, delays=[0-9./]+)?"
    r"(?:, tls=([^,\s]*))?(?:, dsn=(\d\.\d{1,3}\.\d{1,3}))?(?:, tls=([^,\s]*))?"
    r", status=([a-z-]+)(?: \((.*)\))?\Z"
)
_delivery, _delivery_quoted = (
    re.compile(rf"to=<{address}>(?:, orig_to=<{address}>)?{_DELIVERY_FIELDS}", re.DOTALL).match
    for address in (PLAIN_ADDRESS, QUOTED_ADDRESS)
)
# Postfix 2.x local(8) logged addresses without brackets.
_delivery_bare = re.compile(
    rf"to=([^<\s,][^\s,]*)(?:, orig_to=([^\s,]*))?{_DELIVERY_FIELDS}", re.DOTALL
).match
_is_queue_id = QUEUE_ID.fullmatch
_remote = re.compile(rf"host {CLIENT} (said|refused to talk to me): (.*)\Z", re.DOTALL).match
_sasl_server = re.compile(
    rf"SASL (?:\[CACHED\] )?authentication failed; server {CLIENT} said: (.*)\Z"
).match


def parse_cleanup(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """message-id, header/body check actions and milter verdicts."""
    if rest.startswith("message-id="):
        value = rest[11:].strip()
        if value[:1] == "<" and value[-1:] == ">":
            value = value[1:-1]
        return "cleanup.message_id", _new(MessageId, (line, queue_id, value))
    match = _milter(rest) if rest[:7] == "milter-" else None
    if match is not None:
        action, stage, name, addr, _port = match.groups()
        tail = split_tail(rest[match.end() :], MILTER_TAIL)
        return "cleanup.milter", _new(MilterAction, (
            line, queue_id, action, stage, name, addr, tail.head, tail.sender, tail.recipient,
            tail.proto, tail.helo,
        ))  # fmt: skip
    match = _content(rest)
    if match is not None:
        return "cleanup.content_action", content_action(line, queue_id, rest, match)
    return None


def content_action(line: LogLine, queue_id: str, rest: str, match: re.Match[str]) -> ContentAction:
    """``QID: reject: header Subject: x from name[addr]; from=<> to=<> proto= helo=<>: text``.

    The matched header or body text (up to 200 characters of attacker text) comes before
    ``from ORIGIN;``: the origin is read at the tail's ``;``, never inside that text, and
    when the tail is ambiguous the origin stays unknown.
    """
    action, part = match.groups()
    tail = split_tail(rest[match.end() :], CLEANUP_TAIL)
    text, name, addr = tail.head, "", ""
    if tail.sender is not None or tail.proto:
        content, sep, origin = tail.head.rpartition(" from ")
        if sep:
            text = content
            client = _origin(origin)
            name, addr = (client.group(1), client.group(2)) if client else (origin, "")
    return _new(ContentAction, (
        line, queue_id, action, part, text, name, addr, tail.sender, tail.recipient, tail.proto,
        tail.helo, tail.extra,
    ))  # fmt: skip


def parse_qmgr(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """``from=<s>, size=N, nrcpt=N (queue active)``, ``removed``, ``status=expired``."""
    if rest == "removed":
        return "qmgr.removed", _new(Removed, (line, queue_id))
    if rest.startswith("from=") and rest.endswith(" (queue active)"):
        cut = rest.rfind(", size=")
        match = _queue_active(rest, cut) if cut > 0 else None
        if match is not None:
            sender = rest[5:cut]
            if sender[:1] == "<" and sender[-1:] == ">":
                sender = sender[1:-1]
            size, nrcpt = match.groups()
            return "qmgr.queue_active", _new(
                QueueActive, (line, queue_id, sender, int(size), int(nrcpt))
            )
    match = _expired(rest)
    if match is not None:
        return "qmgr.expired", _new(Expired, (line, queue_id, match.group(1)))
    return None


def parse_pickup(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """``QID: uid=N from=<sender>`` (sendmail(1) and postdrop submissions)."""
    match = _pickup(rest)
    if match is None:
        return None
    uid, sender = match.groups()
    return "pickup.uid", _new(Pickup, (line, queue_id, int(uid), sender))


def parse_bounce(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """``QID: sender non-delivery notification: NEWQID`` and its delay/success/postmaster kin."""
    match = _bounce(rest)
    if match is None:
        return None
    notice, notice_queue_id = match.groups()
    return "bounce.notice", _new(BounceNotice, (line, queue_id, notice, notice_queue_id))


def parse_postsuper(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """``QID: placed on hold|released from hold|requeued|removed|expired``."""
    if rest in _POSTSUPER:
        return "postsuper.operation", _new(QueueOperation, (line, queue_id, rest, None))
    return None


def parse_postsuper_summary(line: LogLine) -> Claim | None:
    """``Placed on hold: 3 messages`` (one line per postsuper run)."""
    match = _postsuper_summary(line.message)
    if match is None:
        return None
    operation, count = match.groups()
    return "postsuper.summary", _new(QueueOperation, (line, "", operation.lower(), int(count)))


def parse_delivery(line: LogLine, queue_id: str, rest: str) -> Claim | None:
    """A delivery agent's per-recipient status line, or a remote server's reply."""
    if rest.startswith("to="):
        match = _delivery(rest)
        if match is None and '"' in rest:
            match = _delivery_quoted(rest)
        if match is None:
            match = _delivery_bare(rest)
        if match is None:
            return None
        recipient, orig_to, relay, conn_use, delay, tls, dsn, tls_after, status, reply = (
            match.groups()
        )
        tls = tls or tls_after
        try:
            seconds: float | None = float(delay)
        except ValueError:  # "1.2.3": digits and dots, but no number
            seconds = None
        queued_as = ""
        if reply:
            at = reply.rfind("ed as ")  # "queued as NEXT" (smtp, lmtp) or "forwarded as" (local)
            if at >= 0 and reply[at - 4 : at] in ("queu", "ward"):
                candidate = reply[at + 6 :].partition(" ")[0].rstrip(")")
                if _is_queue_id(candidate):
                    queued_as = candidate
        return "delivery.status", _new(Delivery, (
            line, queue_id, recipient, status, relay, dsn or "", seconds, reply or "",
            orig_to or "", int(conn_use) if conn_use else None, tls or "", queued_as,
        ))  # fmt: skip
    match = _remote(rest)
    if match is not None:
        name, addr, _port, how, reply = match.groups()
        if how != "said":
            reply = f"refused to talk to me: {reply}"
        return "delivery.remote_reply", _new(RemoteReply, (line, queue_id, name, addr, reply))
    match = _sasl_server(rest)
    if match is not None:
        name, addr, _port, reply = match.groups()
        return "delivery.remote_reply", _new(RemoteReply, (line, queue_id, name, addr, reply))
    return None
