"""The parser: one framed :class:`~postwatch.records.LogLine` -> one typed event.

::

    parser = Parser()                 # compiles everything once
    event = parser(line)              # Connect, ClientAccepted, Delivery, ... or Unparsed
    parser.pattern_name(line)         # "smtpd.client", ... or "unparsed"

Records are routed on the program: Postfix (``postfix``, ``postfix/...``,
``postfix-<instance>/...``) by daemon, Dovecot by process.  Anything no pattern claims
comes back as :class:`~postwatch.parse.events.Unparsed`; the parser never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from postwatch.parse import dovecot, events, postfix, smtpd
from postwatch.parse.events import Event, Unparsed
from postwatch.records import LogLine

try:  # the commonest shapes in C, when the build made it (setup.py)
    from postwatch.parse._shapes import Shapes
except ImportError:  # pragma: no cover - a build without a C compiler
    Shapes = None

__all__ = ["PATTERN_NAMES", "Parser", "program_family"]

Claim = tuple[str, Event]

PATTERN_NAMES: tuple[str, ...] = (
    "smtpd.connect", "smtpd.disconnect", "smtpd.client", "smtpd.reject", "smtpd.milter",
    "smtpd.proxy", "smtpd.connection_lost", "smtpd.sasl_failure", "smtpd.rate_limit",
    "smtpd.hostname_mismatch", "smtpd.address_not_listed", "postfix.tls",
    "postscreen.connect", "postscreen.verdict", "postscreen.reject", "anvil.statistics",
    "cleanup.message_id", "cleanup.content_action", "cleanup.milter",
    "qmgr.queue_active", "qmgr.removed", "qmgr.expired",
    "delivery.status", "delivery.remote_reply", "bounce.notice", "pickup.uid",
    "postsuper.operation", "postsuper.summary", "postfix.diagnostic", "postfix.notice",
    "dovecot.login", "dovecot.login_failed", "dovecot.disconnect", "dovecot.auth_failure",
    "dovecot.pam_failure", "dovecot.session", "dovecot.relayed", "dovecot.diagnostic",
)  # fmt: skip
"""Every named pattern; each has at least one annotated sample in fixtures/maillogs/samples."""

_POSTFIX_INSTANCE = re.compile(r"postfix-[\w.-]+/").match
_DOVECOT_PROGRAM = re.compile(r"([A-Za-z][A-Za-z0-9-]*)(?:\(.*\))?(?:<[^<>]*>)*\Z", re.DOTALL).match
_REPEATED = re.compile(r"message repeated \d{1,9} times: \[ ?(.*)\]\Z", re.DOTALL).match
_ROUTE_LIMIT = 1024
_DOVECOT_NAMES = dovecot.PROGRAMS | dovecot.PROCESSES


def program_family(program: str) -> str:
    """``"postfix"``, ``"dovecot"`` or ``""`` (another program) for a syslog tag."""
    if program == "postfix" or program.startswith("postfix/") or _POSTFIX_INSTANCE(program):
        return "postfix"
    match = _DOVECOT_PROGRAM(program)
    if match is not None and match.group(1) in _DOVECOT_NAMES:
        return "dovecot"
    return ""


class Parser:
    """Typed events from framed lines; build once, call per line.

    With the C speedup (``postwatch.parse._shapes``), the commonest shapes (Postfix's
    connect/client/queue/delivery/header-check lines, postscreen's, Dovecot logins and
    sessions') are read there
    first: the same events, without the regular expressions.  ``native=False`` parses
    everything in Python.
    """

    def __init__(self, *, native: bool = True) -> None:
        # program -> route; programs are few, the map is cleared if a stream invents many.
        self._routes: dict[str, Callable[[LogLine], Claim | None]] = {}
        self._shapes: Callable[[LogLine], Event | None] | None = None
        if native and Shapes is not None:
            self._shapes = Shapes(
                connect=events.Connect, disconnect=events.Disconnect,
                tls=events.TlsEstablished, client=events.ClientAccepted,
                removed=events.Removed, queue_active=events.QueueActive,
                message_id=events.MessageId, delivery=events.Delivery,
                verdict=events.PostscreenVerdict, session=events.DovecotSession,
                content=events.ContentAction, login=events.DovecotLogin,
                counters=smtpd.COUNTERS, components=dovecot.COMPONENTS, levels=dovecot.LEVELS,
            )  # fmt: skip

    def __call__(self, line: LogLine) -> Event:
        """The event ``line`` says, or ``Unparsed(line)``."""
        shapes = self._shapes
        if shapes is not None:
            known = shapes(line)
            if known is not None:
                return known
        return self._python(line)

    def parse_all(self, lines: list[LogLine]) -> list[Event]:
        """The events of ``lines`` in order: ``[parser(line) for line in lines]``, faster."""
        shapes = self._shapes
        python = self._python
        if shapes is None:
            return [python(line) for line in lines]
        return [
            known if known is not None else python(line)
            for known, line in zip(map(shapes, lines), lines, strict=True)
        ]

    def _python(self, line: LogLine) -> Event:
        program = line.program
        route = self._routes.get(program)
        if route is None:
            route = self._route(program)
        claim = route(line)
        if claim is not None:
            return claim[1]
        return self._fallback(line, route)[1]

    def pattern_name(self, line: LogLine) -> str:
        """Which named pattern claims ``line`` (``"unparsed"`` when none does)."""
        route = self._routes.get(line.program) or self._route(line.program)
        claim = route(line)
        return claim[0] if claim is not None else self._fallback(line, route)[0]

    def _fallback(self, line: LogLine, route: Callable[[LogLine], Claim | None]) -> Claim:
        repeated = _REPEATED(line.message)
        if repeated is not None:  # rsyslog's "message repeated 2 times: [ original ]"
            claim = route(line._replace(message=repeated.group(1)))
            if claim is not None:
                return claim
        return "unparsed", Unparsed(line)

    def _route(self, program: str) -> Callable[[LogLine], Claim | None]:
        family = program_family(program)
        route: Callable[[LogLine], Claim | None]
        if family == "postfix":
            route = postfix.route(program.rpartition("/")[2])
        elif family == "dovecot":
            route = dovecot.parse_dovecot
        else:
            route = _no_route
        if len(self._routes) >= _ROUTE_LIMIT:
            self._routes.clear()
        self._routes[program] = route
        return route


def _no_route(line: LogLine) -> Claim | None:
    return None
