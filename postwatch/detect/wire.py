"""What crosses from a replay to the forked detector (:mod:`postwatch.detect.worker`).

A record or parse event pickled as itself costs a Python call per named tuple on each side
(``__getnewargs__`` to pickle, the class's ``__new__`` to unpickle), several per record.
:func:`pack` turns each into a flat tuple of plain values, which pickle reads and writes in
C alone, and :func:`unpack` rebuilds the same named tuples with ``tuple.__new__``: about
half the cost on both sides.  A message crosses without its ``outcomes``: each outcome
crosses in its own ``Delivered``, and the engine reads no other.  Anything else crosses as
itself, so a plain tuple must not be fed to the detector process (none is: the engine
takes records and events)::

    packed = pack(item)            # in the replay
    item = unpack(packed)          # in the detector process: equal to item
"""

from __future__ import annotations

from typing import Any

from postwatch.parse.events import (
    DovecotAuthFailure,
    DovecotLogin,
    DovecotLoginFailed,
    Reject,
    SaslFailure,
)
from postwatch.records import Accepted, Delivered, LogLine, Message, Outcome, Session, SessionEnded

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
_OUTCOMES = Message._fields.index("outcomes")
_new: Any = tuple.__new__


def pack(item: Any) -> Any:
    """``item`` as a flat tuple of plain values (itself when it is not a record or event
    the engine takes)."""
    kind = type(item)
    if kind is Accepted:
        return (ACCEPTED, item.ts, _bare(item.message))
    if kind is Delivered:
        return (DELIVERED, item.ts, _bare(item.message), tuple(item.outcome))
    if kind is SessionEnded:
        return (SESSION_ENDED, item.ts, tuple(item.session))
    code = _EVENT_CODES.get(kind)
    if code is None:
        return item
    return (code, tuple(item[0]), item[1:])


def unpack(packed: Any) -> Any:
    """The record or event :func:`pack` made ``packed`` from."""
    if type(packed) is not tuple:
        return packed
    code: int = packed[0]
    if code == ACCEPTED:
        return _new(Accepted, (packed[1], _new(Message, packed[2])))
    if code == DELIVERED:
        return _new(Delivered, (packed[1], _new(Message, packed[2]), _new(Outcome, packed[3])))
    if code == SESSION_ENDED:
        return _new(SessionEnded, (packed[1], _new(Session, packed[2])))
    return _new(EVENTS[code - 3], (_new(LogLine, packed[1]), *packed[2]))


def _bare(message: Message) -> tuple[Any, ...]:
    if not message.outcomes:
        return tuple(message)
    return (*message[:_OUTCOMES], (), *message[_OUTCOMES + 1 :])
