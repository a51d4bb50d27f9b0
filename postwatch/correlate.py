"""Correlation: join events per queue ID (messages) and per smtpd process (sessions).

The correlator is fed parse events in log order and returns the records it can emit at once:
:class:`~postwatch.records.Accepted` when a message whose origin it saw (``client=`` or
``pickup``) enters the queue, :class:`~postwatch.records.Delivered` per delivery attempt,
:class:`~postwatch.records.Completed` when it leaves (``removed``, a cleanup/milter reject, or
the TTL), and :class:`~postwatch.records.SessionEnded` at ``disconnect``.

Memory stays bounded: records leave memory when completed, and stale ones (no ``removed``
within ``message_ttl`` of log time, no ``disconnect`` within ``session_ttl``) are flushed as
incomplete.  Postfix reuses queue IDs: a new ``client=``/``pickup`` line for a queue ID that
already has an origin starts a new message and flushes the old one, never merging the two.
A content-filter hop is linked to the message it came from by ``orig_queue_id=`` or by the
first hop's ``queued as NEXT`` reply, and inherits its origin (client, SASL user, uid).  A
``queued as`` from a relay on this host (loopback, a unix socket) links at once; one from
another address (a filter in a container or on the LAN) only when NEXT's ``client=`` is
that very address within ``REMOTE_HOP_TTL``: a remote MX's ``queued as`` is its own ID.

Dovecot's submission service relays through Postfix as a client of its own, without the
login unless it sends XCLIENT LOGIN (or with one shared ``submission_relay_user``).  Its
``Successfully relayed message`` line names the login and Postfix's queue ID: the message
takes that login, with the address and method of the ``submission-login`` session, in place
of the relay's.  Once a client address is known to be Dovecot's relay, its messages' Accepted
waits for that line, or for the first delivery attempt at the latest.  A message accepted
before its relay was known (the first one after a start) is Accepted again, with its login,
when the line comes: that second Accepted is the one an account's volume counts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from postwatch.parse import events as ev
from postwatch.records import (
    Accepted,
    Completed,
    Correlated,
    Delivered,
    LogLine,
    Message,
    Outcome,
    Session,
    SessionEnded,
)

_FLUSH_EVERY = timedelta(minutes=5)
REMOTE_HOP_TTL = timedelta(minutes=10)  # a filter elsewhere queues its hand-over back by then
DOVECOT_SUBMISSION = "dovecot/submission"  # the service of a message Dovecot's relayed
# Records are built without the NamedTuple constructor: every field, in order.
_new = tuple.__new__


def flush_mark(ts: datetime) -> datetime:
    """The first five-minute mark of the clock after ``ts`` (UTC)."""
    return ts.replace(minute=ts.minute - ts.minute % 5, second=0, microsecond=0) + _FLUSH_EVERY


def is_local_relay(relay: str) -> bool:
    """A relay on this host (a content filter), e.g. ``127.0.0.1[127.0.0.1]:10024``."""
    return "[127." in relay or "[::1]" in relay or "[private/" in relay or "[public/" in relay


def _relay_address(relay: str) -> str:
    """The address of ``name[address]:port`` (``""`` when there is none)."""
    end = relay.rfind("]")
    return relay[relay.rfind("[", 0, end) + 1 : end] if end > 0 else ""


class _MessageState:
    """The mutable, in-progress side of a :class:`Message`."""

    __slots__ = (
        "accepted",
        "awaiting_login",
        "client_ip",
        "client_name",
        "first_seen",
        "helo",
        "host",
        "last_seen",
        "message_id",
        "next_queue_id",
        "nrcpt",
        "orig_queue_id",
        "outcomes",
        "pickup_uid",
        "queue_id",
        "rejected",
        "sasl_method",
        "sasl_sender",
        "sasl_username",
        "sender",
        "service",
        "session_pid",
        "size",
    )

    def __init__(self, host: str, queue_id: str, ts: datetime) -> None:
        self.host = host
        self.queue_id = queue_id
        self.service = ""
        self.first_seen = self.last_seen = ts
        self.client_name = self.client_ip = ""
        self.sasl_method = self.sasl_username = self.sasl_sender = ""
        self.pickup_uid: int | None = None
        self.sender: str | None = None
        self.size: int | None = None
        self.nrcpt: int | None = None
        self.message_id = self.helo = ""
        self.outcomes: dict[str, Outcome] = {}
        self.session_pid: int | None = None
        self.orig_queue_id = self.next_queue_id = ""
        self.rejected = False
        self.accepted = False
        self.awaiting_login = False  # Accepted waits for Dovecot's relay line

    @property
    def started(self) -> bool:
        """Whether a ``client=`` or ``pickup`` line for this ID starts another message."""
        return bool(self.client_ip or self.pickup_uid is not None or self.accepted)

    @property
    def has_origin(self) -> bool:
        return bool(self.client_ip or self.pickup_uid is not None or self.orig_queue_id)

    def inherit(self, first_hop: _MessageState) -> None:
        """Take the origin of the message this content-filter hop came from."""
        self.orig_queue_id = first_hop.queue_id
        self.client_name, self.client_ip = first_hop.client_name, first_hop.client_ip
        self.sasl_method, self.sasl_username = first_hop.sasl_method, first_hop.sasl_username
        self.sasl_sender, self.pickup_uid = first_hop.sasl_sender, first_hop.pickup_uid
        self.service, self.session_pid = first_hop.service, first_hop.session_pid
        self.helo = self.helo or first_hop.helo
        self.accepted = self.accepted or first_hop.accepted

    def freeze(self, complete: bool = True) -> Message:
        return _new(Message, (
            self.host, self.queue_id, self.service, self.first_seen, self.last_seen,
            self.client_name, self.client_ip, self.sasl_method, self.sasl_username,
            self.sasl_sender, self.pickup_uid, self.sender, self.size, self.nrcpt,
            self.message_id, self.helo, tuple(self.outcomes.values()), self.session_pid,
            self.orig_queue_id, self.next_queue_id, self.rejected, complete,
        ))  # fmt: skip


class _SessionState:
    __slots__ = (
        "auth_failures",
        "auth_successes",
        "client_ip",
        "client_name",
        "failed_usernames",
        "helo",
        "host",
        "last_seen",
        "pid",
        "queue_ids",
        "rejects",
        "sasl_usernames",
        "service",
        "started",
        "tls",
    )

    def __init__(self, line: LogLine, client_name: str, client_ip: str) -> None:
        self.host, self.pid = line.host, line.pid or 0
        self.service = line.program.rpartition("/")[0]
        self.started = self.last_seen = line.ts
        self.client_name, self.client_ip = client_name, client_ip
        self.tls = self.helo = ""
        self.auth_failures = self.auth_successes = self.rejects = 0
        self.sasl_usernames: list[str] = []
        self.failed_usernames: list[str] = []
        self.queue_ids: list[str] = []

    def freeze(
        self,
        ended: datetime,
        counters: tuple[tuple[str, int, int], ...] = (),
        complete: bool = True,
    ) -> Session:
        return _new(Session, (
            self.host, self.service, self.pid, self.started, ended, self.client_name,
            self.client_ip, self.tls, self.auth_failures, self.auth_successes,
            tuple(self.sasl_usernames), tuple(self.failed_usernames), tuple(self.queue_ids),
            self.rejects, counters, self.helo, complete,
        ))  # fmt: skip


Handler = Callable[[object, list[Correlated]], None]


class Correlator:
    """Feed events in log order; get back what can be emitted now."""

    def __init__(
        self,
        message_ttl: timedelta = timedelta(days=2),
        session_ttl: timedelta = timedelta(hours=1),
    ) -> None:
        self.message_ttl = message_ttl
        self.session_ttl = session_ttl
        self.messages: dict[tuple[str, str], _MessageState] = {}
        self.sessions: dict[tuple[str, int], _SessionState] = {}
        # content-filter links: next hop (host, queue ID) -> first hop's queue ID, when
        # seen, and the relay's address that NEXT's client must be ("" for a local relay)
        self._next_hops: dict[tuple[str, str], tuple[str, datetime, str]] = {}
        # Dovecot submission: (host, session) -> (address, method, seen) of its logins,
        # and (host, client address) -> last seen of the connections it relays over
        self._submission_logins: dict[tuple[str, str], tuple[str, str, datetime]] = {}
        self._relay_clients: dict[tuple[str, str], datetime] = {}
        self._hosts: dict[str, datetime] = {}  # host -> when it last started a message
        self._next_flush: datetime | None = None
        self.flushed_messages = 0
        self.flushed_sessions = 0
        handlers: dict[type, Handler] = {
            ev.ClientAccepted: self._client,  # type: ignore[dict-item]
            ev.Pickup: self._pickup,  # type: ignore[dict-item]
            ev.QueueActive: self._queue_active,  # type: ignore[dict-item]
            ev.Delivery: self._delivery,  # type: ignore[dict-item]
            ev.Removed: self._removed,  # type: ignore[dict-item]
            ev.MessageId: self._message_id,  # type: ignore[dict-item]
            ev.Expired: self._expired,  # type: ignore[dict-item]
            ev.ContentAction: self._content,  # type: ignore[dict-item]
            ev.MilterAction: self._content,  # type: ignore[dict-item]
            ev.Reject: self._reject,  # type: ignore[dict-item]
            ev.Connect: self._connect,  # type: ignore[dict-item]
            ev.Disconnect: self._disconnect,  # type: ignore[dict-item]
            ev.SaslFailure: self._sasl_failure,  # type: ignore[dict-item]
            ev.TlsEstablished: self._tls,  # type: ignore[dict-item]
            ev.QueueOperation: self._queue_operation,  # type: ignore[dict-item]
            ev.DovecotLogin: self._dovecot_login,  # type: ignore[dict-item]
            ev.DovecotRelayed: self._dovecot_relayed,  # type: ignore[dict-item]
        }
        self._handlers = handlers
        # the event types feed() looks at; it returns nothing for the rest (a caller may skip them)
        self.accepts = frozenset(handlers)

    # --- driving ---------------------------------------------------------------------

    def feed(self, event: object) -> list[Correlated]:
        """Take one event; return the records it completes (often none)."""
        handler = self._handlers.get(type(event))
        out: list[Correlated] = []
        if handler is not None:
            handler(event, out)
            ts: datetime = event.line.ts  # type: ignore[attr-defined]
            if self.flush_due(ts):
                self.expire(ts, out)
        return out

    def handle(self, event: object, out: list[Correlated]) -> None:
        """:meth:`feed` without the flushes, its records added to ``out``."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event, out)

    def flush_due(self, ts: datetime) -> bool:
        """Whether an event at ``ts`` is the first past a five-minute mark of the clock
        (never the first event): a flush is due.  The marks are the clock's, not the
        input's, so that a replay started anywhere in a log flushes when the whole would."""
        next_flush = self._next_flush
        if next_flush is not None and ts < next_flush:
            return False
        self._next_flush = flush_mark(ts)
        return next_flush is not None

    @property
    def next_flush(self) -> datetime | None:
        """The five-minute mark an event must reach for the next flush (None: no event yet)."""
        return self._next_flush

    def expire(self, now: datetime, out: list[Correlated]) -> None:
        """Flush messages and sessions that have been quiet longer than their TTL."""
        message_cutoff = now - self.message_ttl
        for key in [k for k, m in self.messages.items() if m.last_seen < message_cutoff]:
            out.append(_new(Completed, (now, self.messages.pop(key).freeze(False))))
            self.flushed_messages += 1
        remote_cutoff = now - REMOTE_HOP_TTL
        for key in [
            k
            for k, (_, seen, address) in self._next_hops.items()
            if seen < (remote_cutoff if address else message_cutoff)
        ]:
            del self._next_hops[key]
        for key in [k for k, (*_, seen) in self._submission_logins.items() if seen < remote_cutoff]:
            del self._submission_logins[key]
        for key in [k for k, seen in self._relay_clients.items() if seen < message_cutoff]:
            del self._relay_clients[key]
        for host in [h for h, seen in self._hosts.items() if seen < message_cutoff]:
            del self._hosts[host]
        session_cutoff = now - self.session_ttl
        for skey in [k for k, s in self.sessions.items() if s.last_seen < session_cutoff]:
            session = self.sessions.pop(skey)
            out.append(_new(SessionEnded, (now, session.freeze(session.last_seen, (), False))))
            self.flushed_sessions += 1

    def close(self, now: datetime | None = None) -> list[Correlated]:
        """End of input: flush everything still in memory as incomplete."""
        out: list[Correlated] = []
        for message in self.messages.values():
            out.append(Completed(now or message.last_seen, message.freeze(complete=False)))
        for session in self.sessions.values():
            ended = now or session.last_seen
            out.append(SessionEnded(ended, session.freeze(session.last_seen, complete=False)))
        self.messages.clear()
        self.sessions.clear()
        self._next_hops.clear()
        self._submission_logins.clear()
        self._relay_clients.clear()
        self._hosts.clear()
        return out

    # --- a replay in halves (postwatch.halves) ------------------------------------------

    def started_elsewhere(
        self, host: str, queue_id: str, orig_queue_id: str, ts: datetime, out: list[Correlated]
    ) -> bool:
        """Another correlator (a later half of the log) started message ``queue_id`` at
        ``ts``: flush a message of that ID here, as a reused ID is.  False when this one's
        state would have shaped the new message: a content-filter link waiting for the ID,
        a message of the ID without an origin yet, or the ``orig_queue_id`` it names."""
        key = (host, queue_id)
        old = self.messages.get(key)
        if old is not None:
            if not old.started:
                return False
            out.append(_new(Completed, (ts, self.messages.pop(key).freeze(False))))
            self.flushed_messages += 1
        if key in self._next_hops:
            return False
        return not orig_queue_id or (host, orig_queue_id) not in self.messages

    def adopt(self, state: _MessageState) -> bool:
        """Take over a message another correlator held (False: one of its ID is here)."""
        key = (state.host, state.queue_id)
        if key in self.messages:
            return False
        self.messages[key] = state
        return True

    def has_login(self, host: str, session: str) -> bool:
        """Whether Dovecot session ``session`` of ``host`` logged in to submission lately."""
        return (host, session) in self._submission_logins

    # --- message helpers ---------------------------------------------------------------

    def _state(self, line: LogLine, queue_id: str) -> _MessageState:
        host, ts = line.host, line.ts
        key = (host, queue_id)
        state = self.messages.get(key)
        if state is None:
            state = self.messages[key] = _MessageState(host, queue_id, ts)
        else:
            state.last_seen = ts
        return state

    def _fresh(
        self, line: LogLine, queue_id: str, out: list[Correlated], client_ip: str = ""
    ) -> _MessageState:
        """State for a line that starts a message: a reused queue ID flushes the old one."""
        key = (line.host, queue_id)
        self._hosts[line.host] = line.ts
        old = self.messages.get(key)
        if old is not None and old.started:
            out.append(_new(Completed, (line.ts, self.messages.pop(key).freeze(False))))
            self.flushed_messages += 1
        state = self._state(line, queue_id)
        link = self._next_hops.pop(key, None)
        if link is not None and (not link[2] or link[2] == client_ip):
            first_hop = self.messages.get((line.host, link[0]))
            if first_hop is not None:
                state.inherit(first_hop)
                first_hop.next_queue_id = queue_id
        return state

    def _client(self, event: ev.ClientAccepted, out: list[Correlated]) -> None:
        line = event.line
        state = self._fresh(line, event.queue_id, out, event.client_ip)
        first_hop = None
        if event.orig_queue_id:
            first_hop = self.messages.get((line.host, event.orig_queue_id))
        if first_hop is not None:
            state.inherit(first_hop)
            first_hop.next_queue_id = event.queue_id
            return
        if state.orig_queue_id:  # already linked by "queued as"
            return
        state.service = line.program.rpartition("/")[0]
        state.client_name, state.client_ip = event.client_name, event.client_ip
        if event.orig_client.endswith("]"):  # XFORWARD from a content filter: the real client
            name, _, address = event.orig_client[:-1].rpartition("[")
            state.client_name, state.client_ip = name, address
        state.sasl_method, state.sasl_username = event.sasl_method, event.sasl_username
        state.sasl_sender = event.sasl_sender
        state.session_pid = line.pid
        session = self.sessions.get((line.host, line.pid or 0))
        if session is not None:
            session.last_seen = line.ts
            session.queue_ids.append(event.queue_id)
            if session.helo:
                state.helo = session.helo
            if event.sasl_username and event.sasl_username not in session.sasl_usernames:
                session.sasl_usernames.append(event.sasl_username)
                session.auth_successes += 1

    def _pickup(self, event: ev.Pickup, out: list[Correlated]) -> None:
        state = self._fresh(event.line, event.queue_id, out)
        state.service = event.line.program.rpartition("/")[0] + "/pickup"
        state.pickup_uid = event.uid
        state.sender = event.sender

    def _queue_active(self, event: ev.QueueActive, out: list[Correlated]) -> None:
        line = event.line
        state = self._state(line, event.queue_id)
        state.sender, state.size, state.nrcpt = event.sender, event.size, event.nrcpt
        if not state.accepted and state.has_origin:
            if (
                self._relay_clients
                and state.service != DOVECOT_SUBMISSION
                and (line.host, state.client_ip) in self._relay_clients
            ):
                state.awaiting_login = True
                return
            self._accept(state, line.ts, out)

    def _accept(self, state: _MessageState, ts: datetime, out: list[Correlated]) -> None:
        state.accepted, state.awaiting_login = True, False
        out.append(_new(Accepted, (ts, state.freeze(False))))

    def _delivery(self, event: ev.Delivery, out: list[Correlated]) -> None:
        line, queue_id, recipient, status, relay, dsn, _delay, reply, orig_to = event[:9]
        state = self._state(line, queue_id)
        if state.awaiting_login:
            self._accept(state, line.ts, out)
        outcomes = state.outcomes
        previous = outcomes.get(recipient)
        deferrals = previous[7] if previous is not None else 0  # previous.deferrals
        if status == "deferred":
            deferrals += 1
        ts = line.ts
        outcome = _new(Outcome, (recipient, status, relay, dsn, ts, reply, orig_to, deferrals))
        outcomes[recipient] = outcome
        if event.queued_as:
            self._hand_over(state, line, event.queued_as, relay)
        out.append(_new(Delivered, (ts, state.freeze(False), outcome)))

    def _hand_over(self, state: _MessageState, line: LogLine, queued_as: str, relay: str) -> None:
        """A relay took the message and "queued as" ``queued_as``: a content filter that
        queues it back here (linked now, or when that queue ID starts), or a remote MX."""
        linked = is_local_relay(relay)
        address = "" if linked else _relay_address(relay)
        if not (linked or address):
            return  # no relay address to check the next hop's client against
        key = (line.host, queued_as)
        next_hop = self.messages.get(key)
        if next_hop is None:
            self._next_hops[key] = (state.queue_id, line.ts, address)
        elif linked or (next_hop.client_ip == address and not next_hop.orig_queue_id):
            next_hop.inherit(state)
            linked = True
        if linked:
            state.next_queue_id = queued_as

    def _expired(self, event: ev.Expired, out: list[Correlated]) -> None:
        state = self._state(event.line, event.queue_id)
        state.sender = event.sender

    def _removed(self, event: ev.Removed, out: list[Correlated]) -> None:
        state = self.messages.pop((event.line.host, event.queue_id), None)
        if state is not None:
            state.last_seen = event.line.ts
            if state.awaiting_login:
                self._accept(state, event.line.ts, out)
            out.append(_new(Completed, (event.line.ts, state.freeze())))

    def _queue_operation(self, event: ev.QueueOperation, out: list[Correlated]) -> None:
        if event.operation == "removed" and event.queue_id:
            self._removed(ev.Removed(event.line, event.queue_id), out)

    def _message_id(self, event: ev.MessageId, out: list[Correlated]) -> None:
        self._state(event.line, event.queue_id).message_id = event.message_id

    def _content(self, event: ev.ContentAction | ev.MilterAction, out: list[Correlated]) -> None:
        if not event.queue_id:
            return
        state = self._state(event.line, event.queue_id)
        if event.helo and not state.helo:
            state.helo = event.helo
        if event.action in ("reject", "discard", "milter-reject", "milter-discard"):
            # the queue file is deleted without a "removed" line
            state.rejected = True
            self.messages.pop((event.line.host, event.queue_id), None)
            out.append(_new(Completed, (event.line.ts, state.freeze())))

    def _dovecot_login(self, event: ev.DovecotLogin, out: list[Correlated]) -> None:
        if event.protocol == "submission" and event.session:
            line = event.line
            self._submission_logins[(line.host, event.session)] = (
                event.remote_ip,
                event.method,
                line.ts,
            )

    def _dovecot_relayed(self, event: ev.DovecotRelayed, out: list[Correlated]) -> None:
        """Dovecot's submission relayed ``queue_id``: the message is its login's."""
        line = event.line
        state = self._relayed_message(line.host, event.queue_id)
        if state is None or state.pickup_uid is not None or state.orig_queue_id:
            return
        again = False
        if state.sasl_username != event.user:  # not told by XCLIENT LOGIN
            again = state.accepted  # Accepted before the relay was known: again, with the login
            self._relay_clients[(state.host, state.client_ip)] = line.ts
            login = self._submission_logins.get((line.host, event.session))
            if login is not None:
                self._submission_logins[(line.host, event.session)] = (*login[:2], line.ts)
                state.client_ip, state.sasl_method = login[0], login[1]
            state.sasl_username, state.sasl_sender = event.user, ""
            state.client_name = state.helo = ""  # the relay's own name and HELO
            state.service = DOVECOT_SUBMISSION
        if state.awaiting_login or again:
            self._accept(state, line.ts, out)

    def _relayed_message(self, host: str, queue_id: str) -> _MessageState | None:
        """The message ``queue_id`` of ``host``; Dovecot's own log files name no host, so a
        line without one is looked up on each host whose messages are in memory."""
        if not queue_id:
            return None
        if host:
            return self.messages.get((host, queue_id))
        for candidate in self._hosts:
            state = self.messages.get((candidate, queue_id))
            if state is not None:
                return state
        return None

    # --- session helpers ---------------------------------------------------------------

    def _session(self, line: LogLine) -> _SessionState | None:
        session = self.sessions.get((line.host, line.pid or 0))
        if session is not None:
            session.last_seen = line.ts
        return session

    def _connect(self, event: ev.Connect, out: list[Correlated]) -> None:
        line = event.line
        if not line.program.endswith("smtpd"):
            return  # postscreen's CONNECT is not an smtpd session
        key = (line.host, line.pid or 0)
        old = self.sessions.pop(key, None)
        if old is not None:
            out.append(_new(SessionEnded, (line.ts, old.freeze(old.last_seen, (), False))))
            self.flushed_sessions += 1
        self.sessions[key] = _SessionState(line, event.client_name, event.client_ip)

    def _disconnect(self, event: ev.Disconnect, out: list[Correlated]) -> None:
        line = event.line
        session = self.sessions.pop((line.host, line.pid or 0), None)
        if session is None:
            session = _SessionState(line, event.client_name, event.client_ip)
            out.append(
                _new(SessionEnded, (line.ts, session.freeze(line.ts, event.counters, False)))
            )
            return
        out.append(_new(SessionEnded, (line.ts, session.freeze(line.ts, event.counters))))

    def _sasl_failure(self, event: ev.SaslFailure, out: list[Correlated]) -> None:
        session = self._session(event.line)
        if session is not None:
            session.auth_failures += 1
            if event.sasl_username and len(session.failed_usernames) < 100:
                session.failed_usernames.append(event.sasl_username)

    def _tls(self, event: ev.TlsEstablished, out: list[Correlated]) -> None:
        if event.direction == "from":
            session = self._session(event.line)
            if session is not None:
                session.tls = event.trust

    def _reject(self, event: ev.Reject, out: list[Correlated]) -> None:
        session = self._session(event.line)
        if session is not None:
            session.rejects += event.action == "reject"
            if event.helo:
                session.helo = event.helo
        if event.queue_id:
            state = self.messages.get((event.line.host, event.queue_id))
            if state is not None and event.helo and not state.helo:
                state.helo = event.helo
