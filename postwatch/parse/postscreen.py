"""postscreen(8) and anvil(8) records: the pre-SMTP screen and the connection statistics.

postscreen writes clients as ``[addr]:port`` (no name: it never looks one up); its reject
tail uses commas (``; from=<s>, to=<r>, proto=P, helo=<h>``).  Formats follow Postfix's
postscreen_*.c and anvil.c.
"""

from __future__ import annotations

import re

from postwatch.parse.envelope import POSTSCREEN_TAIL, WHATSUP_TAIL, split_tail
from postwatch.parse.events import AnvilStatistic, Connect, Event, PostscreenVerdict, Reject
from postwatch.records import LogLine

Claim = tuple[str, Event]
# Events are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__

_PEER = r"\[([^\s\[\]]*)\]:(\d{1,15})"
_connect = re.compile(rf"CONNECT from {_PEER} to \[[^\s\[\]]*\]:\d+\Z").match
# "PASS NEW [a]:p", "DNSBL rank 3 for [a]:p", "HANGUP after 1.2 from [a]:p in tests after
# SMTP handshake", "COMMAND TIME LIMIT from [a]:p after RCPT", "ALLOWLISTED [a]:p" ...
_verdict = re.compile(
    r"(PASS NEW|PASS OLD|DISCONNECT|(?:ALLOW|WHITE|DENY|BLACK)LISTED|(?:ALLOW|WHITE)LIST VETO"
    r"|PREGREET|HANGUP|DNSBL|COMMAND (?:TIME|COUNT|LENGTH) LIMIT|COMMAND PIPELINING"
    r"|NON-SMTP COMMAND|BARE NEWLINE|(?:DATA|BDAT) without valid RCPT)"
    rf"(?: (.*?))??(?: from| for)? {_PEER}((?::| in| after) .*)?\Z",
    re.DOTALL,
).match
_reject = re.compile(rf"NOQUEUE: (reject): ([A-Z]+) from {_PEER}: ").match
_anvil = re.compile(
    r"statistics: max ([a-z ]+?) (\d+(?:/\d+s)?)(?: for \(([^:()]*):(.*)\))? at .*\Z"
).match


def parse_postscreen(line: LogLine) -> Claim | None:
    """CONNECT, verdicts and NOQUEUE rejects; None for other postscreen text."""
    message = line.message
    if message.startswith("CONNECT from "):
        match = _connect(message)
        if match is not None:
            addr, port = match.groups()
            return "postscreen.connect", _new(Connect, (line, "", addr, int(port)))
        return None
    if message.startswith("NOQUEUE: "):
        match = _reject(message)
        if match is None:
            return None
        action, stage, addr, port = match.groups()
        text = message[match.end() :]
        tail = split_tail(text, POSTSCREEN_TAIL)
        if tail.sender is None:  # some logs carry smtpd's tail, without the commas
            tail = split_tail(text, WHATSUP_TAIL)
        return "postscreen.reject", _new(Reject, (
            line, "", action, stage, "", addr, tail.head, tail.sender, tail.recipient,
            tail.proto, tail.helo, "",
        ))  # fmt: skip
    match = _verdict(message)
    if match is None:
        return None
    verdict, before, addr, port, after = match.groups()
    detail = ((before or "") + (after or "")).lstrip()
    return "postscreen.verdict", _new(PostscreenVerdict, (line, verdict, addr, int(port), detail))


def parse_anvil(line: LogLine) -> Claim | None:
    """``statistics: max connection rate 1/60s for (smtp:192.0.2.1) at May  9 22:12:21``."""
    match = _anvil(line.message)
    if match is None:
        return None
    statistic, value, service, client = match.groups()
    return "anvil.statistics", _new(
        AnvilStatistic, (line, f"max {statistic}", value, service or "", client or "")
    )
