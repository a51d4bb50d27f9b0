"""Postfix: route a record to its daemon's patterns, then to diagnostics and notices.

The daemon is the last part of the syslog tag (``postfix/submission/smtpd`` -> ``smtpd``,
``postfix-out/smtp`` -> ``smtp``); Postfix always appends the process name to
``syslog_name``.  Daemons without patterns of their own (and message-only text whose
daemon is unknown) go through every queue-ID pattern in turn.
"""

from __future__ import annotations

from collections.abc import Callable

from postwatch.parse import postscreen, queue, smtpd
from postwatch.parse.envelope import queue_id_prefix, split_queue_id
from postwatch.parse.events import Diagnostic, Event
from postwatch.records import LogLine

Claim = tuple[str, Event]
# Events are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__
QueueHandler = Callable[[LogLine, str, str], "Claim | None"]

DELIVERY_AGENTS = ("smtp", "lmtp", "local", "virtual", "pipe", "error", "retry", "discard")
_SEVERITIES = {"warning": "warning", "error": "error", "fatal": "fatal", "panic": "panic"}

# Informational lines daemons write about themselves (wording from the Postfix sources and
# the corpus).  A queue ID in front of them is allowed.
NOTICES = (
    # master
    "daemon started -- ", "reload -- ", "terminating on signal ",
    # postfix(1), postfix-script
    "starting the Postfix mail system", "stopping the Postfix mail system",
    "refreshing the Postfix mail system", "waiting for the Postfix mail system",
    "the Postfix mail system is ", "Postfix is running with backwards-compatible",
    "Postfix is using backwards-compatible", "See http://www.postfix.org/COMPATIBILITY_README",
    "To disable backwards compatibility use",
    "using backwards-compatible default setting ",
    # smtpd, smtp, tlsproxy
    "setting up TLS connection ", "improper command pipelining after ",
    "SSL_accept error from ", "SSL_connect error to ", "discarding EHLO keywords: ",
    "bare <LF> received after ", "cannot load Certificate Authority data",
    "certificate verification failed for ", "server certificate verification failed for ",
    "connect to ", "lost connection with ", "conversation with ", "enabling PIX workarounds: ",
    "Cannot start TLS: ", "TLS is required, but ", "CONNECT from [", "DISCONNECT [",
    "Host offered STARTTLS: ",
    # scache, dnsblog, verify/postscreen caches, qmgr, cleanup
    "statistics: ", "addr ", "cache ", "skipped, still being delivered", "resent-message-id=",
    "table ",
)  # fmt: skip


LineHandler = Callable[[LogLine], "Claim | None"]
Route = Callable[[LogLine], "Claim | None"]

# Daemons whose records start with a queue ID, and the parser of those records.
QUEUE_HANDLERS: dict[str, QueueHandler] = {
    "cleanup": queue.parse_cleanup,
    "qmgr": queue.parse_qmgr,
    "nqmgr": queue.parse_qmgr,
    "pickup": queue.parse_pickup,
    "bounce": queue.parse_bounce,
    "postsuper": queue.parse_postsuper,
    **dict.fromkeys(DELIVERY_AGENTS, queue.parse_delivery),
}
# Daemons with records of their own, without a queue ID in front.
LINE_HANDLERS: dict[str, LineHandler] = {
    "smtpd": smtpd.parse_smtpd,
    "postscreen": postscreen.parse_postscreen,
    "anvil": postscreen.parse_anvil,
    "postsuper": queue.parse_postsuper_summary,
    "smtp": smtpd.tls_line,
    "lmtp": smtpd.tls_line,
    "tlsproxy": smtpd.tls_line,
}


def route(daemon: str) -> Route:
    """The parser of one daemon's records: its own patterns, then diagnostics and notices."""
    line_handler = LINE_HANDLERS.get(daemon)
    queue_handler = QUEUE_HANDLERS.get(daemon)
    if line_handler is None and queue_handler is None:
        return any_daemon
    if queue_handler is None:
        assert line_handler is not None

        def parse_line(line: LogLine) -> Claim | None:
            return line_handler(line) or _after_queue_id(line, line.message)

        return parse_line

    def parse(line: LogLine) -> Claim | None:
        message = line.message
        prefix = queue_id_prefix(message)  # split_queue_id, inlined on the hot path
        if prefix is not None:
            rest = message[prefix.end() :]
            claim = queue_handler(line, prefix.group(1) or "", rest)
            if claim is not None:
                return claim
            message = rest
        if line_handler is not None:
            claim = line_handler(line)
            if claim is not None:
                return claim
        return diagnostic(line, message)

    return parse


def any_daemon(line: LogLine) -> Claim | None:
    """Records of daemons without patterns of their own (or of an unknown daemon)."""
    for line_handler in _ANY_LINE:
        claim = line_handler(line)
        if claim is not None:
            return claim
    split = split_queue_id(line.message)
    if split is None:
        return diagnostic(line, line.message)
    queue_id, rest = split
    for queue_handler in _ANY_QUEUE:
        claim = queue_handler(line, queue_id, rest)
        if claim is not None:
            return claim
    return diagnostic(line, rest)


def _after_queue_id(line: LogLine, message: str) -> Claim | None:
    split = split_queue_id(message)
    return diagnostic(line, message if split is None else split[1])


_ANY_LINE: tuple[LineHandler, ...] = (
    smtpd.parse_smtpd,
    postscreen.parse_postscreen,
    postscreen.parse_anvil,
    queue.parse_postsuper_summary,
)
_ANY_QUEUE: tuple[QueueHandler, ...] = (
    queue.parse_delivery,
    queue.parse_qmgr,
    queue.parse_cleanup,
    queue.parse_pickup,
    queue.parse_bounce,
    queue.parse_postsuper,
)


def diagnostic(line: LogLine, message: str) -> Claim | None:
    """``warning:``/``error:``/``fatal:``/``panic:`` lines and the daemons' known notices.

    ``message`` is the text after the queue ID, if any; a line with a queue ID keeps it in
    the diagnostic's text.
    """
    whole = line.message
    colon = message.find(": ")
    if 0 < colon < 8:
        severity = _SEVERITIES.get(message[:colon])
        if severity is not None:
            text = message[colon + 2 :] if message is whole else whole
            return "postfix.diagnostic", _new(Diagnostic, (line, severity, text))
    if message.startswith(NOTICES):
        return "postfix.notice", _new(Diagnostic, (line, "info", whole))
    return None
