"""The parts of a Postfix record that Postfix itself writes around attacker text.

A Postfix message mixes text Postfix controls (queue IDs, ``name[addr]`` pairs it looked up
itself, ``proto=`` values) with text a client chose (HELO names, envelope addresses, reply
texts, header contents).  Every function here anchors on the Postfix-written parts:

* the queue ID is the leftmost word, before the first ``": "``;
* a client ``name[addr]`` comes from DNS and the socket: the name is a validated hostname
  (no spaces, no brackets), the address sits inside the brackets;
* the context tail that access checks, cleanup and milters append,
  ``; from=<s> to=<r> proto=P helo=<h>``, is read from the right with values that hold no
  ``<`` or ``>`` outside double quotes (Postfix 3.5+ quotes odd local parts).  A line that
  reads as more than one tail gives no tail at all: unknown, never a guess.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Short IDs are hex; long IDs (enable_long_queue_ids) are 10 base-52 digits of time,
# the separator "z", then the inode number in base 51 (the same alphabet without "z").
QUEUE_ID = re.compile(
    r"[0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+"
)
# "QID: " or "NOQUEUE: " at the start of a message; group 1 is the queue ID.
queue_id_prefix = re.compile(rf"(?:({QUEUE_ID.pattern})|NOQUEUE): ").match

# name[addr] with the optional :port of smtpd_client_port_logging.
CLIENT = r"([^\s\[\]]*)\[([^\s\[\]]*)\](?::(\d{1,15}))?"

# An envelope address as logged: quoted runs may hold anything, the rest no angle brackets.
# Most lines hold no quote at all and take the plain (faster) form.
QUOTED_ADDRESS = r'((?:"(?:[^"\\]|\\.)*"|[^"<>])*)'
PLAIN_ADDRESS = r'([^"<>]*)'


def _tails(template: str, flags: int = 0) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The plain and the quote-aware form of one tail pattern."""
    return (
        re.compile(template.replace("ADDRESS", PLAIN_ADDRESS), flags),
        re.compile(template.replace("ADDRESS", QUOTED_ADDRESS), flags),
    )


# log_whatsup (smtpd_check.c), cleanup_act_log and smtpd_whatsup: "; from=<> to=<> ..."
_ENVELOPE = r";(?: from=<ADDRESS>)?(?: to=<ADDRESS>)?(?: proto=([A-Za-z0-9]+))?"
# The HELO name is the last field of an access decision: it runs to the closing bracket.
WHATSUP_TAIL = _tails(_ENVELOPE + r"(?: helo=<(.*)>)?\Z", re.DOTALL)
# smtpd.c's milter logging adds the SASL login of the session after the HELO name.
MILTER_TAIL = _tails(_ENVELOPE + r"(?: helo=<(.*?)>)?(?: sasl_username=<([^<>]*)>)?\Z")
# cleanup's header/body actions may end with ": " and the text of the matched rule.
CLEANUP_TAIL = _tails(_ENVELOPE + r"(?: helo=<([^<>]*)>)?(?:: (.*))?\Z", re.DOTALL)
# postscreen writes the tail with commas: "; from=<s>, to=<r>, proto=P, helo=<h>".
POSTSCREEN_TAIL = _tails(r"; from=<ADDRESS>, to=<ADDRESS>, proto=([A-Za-z0-9]+), helo=<([^<>]*)>\Z")

# Where a tail can start, and text that only a tail contains: more than one start, or a
# tail keyword before the start, means attacker text imitates Postfix's own fields.
_tail_start = re.compile(r"; (?:from=<|to=<|proto=|helo=<)").search
_tail_marker = re.compile(r" (?:to=<|proto=|helo=<)").search


class Tail(NamedTuple):
    """The context tail of one line: ``head`` is the text before it."""

    head: str
    sender: str | None = None  # None: the line did not say (or said it ambiguously)
    recipient: str = ""
    proto: str = ""
    helo: str = ""
    extra: str = ""  # cleanup's rule text, or smtpd's sasl_username on milter lines


_new = tuple.__new__


def split_queue_id(message: str) -> tuple[str, str] | None:
    """``("QID", rest)`` for ``QID: rest``, ``("", rest)`` for ``NOQUEUE: rest``, else None."""
    match = queue_id_prefix(message)
    if match is None:
        return None
    return match.group(1) or "", message[match.end() :]


def split_tail(text: str, patterns: tuple[re.Pattern[str], re.Pattern[str]] = WHATSUP_TAIL) -> Tail:
    """Split ``reply; from=<s> to=<r> proto=P helo=<h>`` where the one tail starts.

    The tail fields stay unknown (``sender`` None, the rest empty) when the tail is not
    well formed, when tail keywords show up before it, or when a second tail starts inside
    it: attacker text then imitates Postfix's own fields.
    """
    found = _tail_start(text)
    if found is None:
        return Tail(text[:-1] if text.endswith(";") else text)
    start = found.start()
    if _tail_start(text, found.end()) is not None or _tail_marker(text, 0, start) is not None:
        return Tail(text)
    pattern = patterns[1] if text.find('"', start) >= 0 else patterns[0]
    match = pattern.match(text, start)
    if match is None:
        return Tail(text)
    groups = match.groups()
    extra = groups[4] if len(groups) > 4 and groups[4] is not None else ""
    return _new(
        Tail, (text[:start], groups[0], groups[1] or "", groups[2] or "", groups[3] or "", extra)
    )


def port_number(text: str | None) -> int | None:
    """The ``:port`` group of a client match as an int."""
    return int(text) if text else None
