"""What crosses from a replay to the forked detector (:mod:`postwatch.detect.worker`).

Most of a record is what the engine never reads (a session's counters, a message's dates
and size, an event's raw log line), and a named tuple pickled as itself costs a Python call
on each side.  :func:`pack` turns each record or event into a flat tuple of plain values
holding only the fields the engine reads (``MESSAGE``, ``OUTCOME``, ``SESSION``; an event's
line keeps its time and host), which pickle writes and reads in C alone.  :func:`unpack`
rebuilds the same types, every other field at its default and a message's or a session's
dates at the record's time.  Anything else crosses as itself, so a plain tuple must not be
fed to the detector process (none is: the engine takes records and events)::

    packed = pack(item)            # in the replay
    item = unpack(packed)          # in the detector process: the fields the engine reads
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

from postwatch.parse.events import (
    DovecotAuthFailure,
    DovecotLogin,
    DovecotLoginFailed,
    Reject,
    SaslFailure,
)
from postwatch.records import Accepted, Delivered, LogLine, Message, Outcome, Session, SessionEnded

# the fields the engine reads: a test holds the detect package to them
MESSAGE = (
    "host",
    "queue_id",
    "client_name",
    "client_ip",
    "sasl_username",
    "pickup_uid",
    "sender",
    "nrcpt",
    "message_id",
    "helo",
    "orig_queue_id",
    "next_queue_id",
    "rejected",
)
OUTCOME = ("recipient", "status", "relay", "reply")
SESSION = ("host", "client_name", "client_ip", "helo", "auth_successes", "sasl_usernames")
LINE = ("ts", "host")

ACCEPTED, DELIVERED, SESSION_ENDED = 0, 1, 2
# parse events whose first field is their log line; their code is 3 + the index
EVENTS: tuple[Any, ...] = (
    SaslFailure,
    Reject,
    DovecotLogin,
    DovecotLoginFailed,
    DovecotAuthFailure,
)
_EVENT_CODES: dict[type, int] = {kind: 3 + index for index, kind in enumerate(EVENTS)}
_message = itemgetter(*map(Message._fields.index, MESSAGE))
_outcome = itemgetter(*map(Outcome._fields.index, OUTCOME))
_session = itemgetter(*map(Session._fields.index, SESSION))
_new: Any = tuple.__new__


def pack(item: Any) -> Any:
    """``item`` as a flat tuple of the plain values the engine reads (itself when it is not a
    record or event the engine takes)."""
    kind = type(item)
    if kind is Accepted:
        return (ACCEPTED, item.ts, _message(item.message))
    if kind is Delivered:
        return (DELIVERED, item.ts, _message(item.message), _outcome(item.outcome))
    if kind is SessionEnded:
        return (SESSION_ENDED, item.ts, _session(item.session))
    code = _EVENT_CODES.get(kind)
    if code is None:
        return item
    line = item[0]
    return (code, line.ts, line.host, item[1:])


def unpack(packed: Any) -> Any:
    """The record or event :func:`pack` made ``packed`` from, as far as the engine reads it."""
    if type(packed) is not tuple:
        return packed
    code: int = packed[0]
    ts = packed[1]
    if code == ACCEPTED:
        return _new(Accepted, (ts, _rebuild_message(packed[2], ts)))
    if code == DELIVERED:
        o = packed[3]
        outcome = _new(Outcome, (o[0], o[1], o[2], "", ts, o[3], "", 0))
        return _new(Delivered, (ts, _rebuild_message(packed[2], ts), outcome))
    if code == SESSION_ENDED:
        s = packed[2]
        # fmt: off
        session = _new(Session, (
            s[0], "", 0, ts, ts, s[1], s[2], "", 0, s[4], s[5], (), (), 0, (), s[3], True,
        ))
        # fmt: on
        return _new(SessionEnded, (ts, session))
    line = _new(LogLine, (ts, packed[2], "", None, "", "", 0))
    return _new(EVENTS[code - 3], (line, *packed[3]))


def _rebuild_message(m: tuple[Any, ...], ts: Any) -> Message:
    # fmt: off
    return _new(Message, (
        m[0], m[1], "", ts, ts, m[2], m[3], "", m[4], "", m[5], m[6], None,  # host .. size
        m[7], m[8], m[9], (), None, m[10], m[11], m[12], True,  # nrcpt .. complete
    ))
    # fmt: on
