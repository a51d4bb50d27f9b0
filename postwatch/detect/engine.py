"""The detector: routes parse events and correlated records to the signals, sums their
findings per subject and turns scores into incidents and alerts.

::

    Accepted ---> volume, origins, helo, senders, stuffing   (account | uid + sender_domain)
    Delivered --> recipients, delivery                        (same subjects)
    SessionEnded, DovecotLogin --> origins, helo, stuffing,   (account)
                                   shared logins             (account, ip)
    SaslFailure, Dovecot failures --> brute force, login attempts   (ip, account)
    Reject "Relay access denied" --> relay probing            (ip)

Mail a local uid sends on behalf of mail received is not the uid's doing: a Sieve redirect
or a ``.forward`` (a copy of a message received lately, the same Message-ID), and an
automatic reply (a vacation notice: one recipient, the envelope sender of a message
received lately; a local message to one recipient is judged at its first outcome, where
its recipient shows).

Time is log time: the detector never reads the wall clock.  In learning mode it updates
baselines, known origins and known recipients, and raises nothing.  With a store it loads
profiles and open incidents once, and writes what changed every ``flush_interval`` seconds
of log time or ``batch_size`` changes, never per event.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from postwatch.clock import Clock
from postwatch.config import DetectSettings, Thresholds
from postwatch.detect.alerts import Alert, Finding, Subject
from postwatch.detect.credentials import CredentialSignal
from postwatch.detect.delivery import DeliverySignal, is_filter_hop
from postwatch.detect.helo import HeloJudge
from postwatch.detect.incidents import IncidentBook
from postwatch.detect.origins import OriginSignal
from postwatch.detect.profiles import Profile, Profiles
from postwatch.detect.recipients import RecipientSignal
from postwatch.detect.senders import SenderSignal
from postwatch.detect.shared import SharedLoginSignal
from postwatch.detect.state import HourlyVolumes, SubjectState
from postwatch.detect.subjects import SubjectRules, account, folded
from postwatch.detect.volume import VolumeSignal
from postwatch.detect.windows import ExpiringMap, Recent
from postwatch.geo import Geo, GeoInfo
from postwatch.parse.events import (
    DovecotAuthFailure,
    DovecotLogin,
    DovecotLoginFailed,
    Reject,
    SaslFailure,
)
from postwatch.records import Accepted, Delivered, Message, SessionEnded

if TYPE_CHECKING:
    from postwatch.store import Store

EXPIRE_EVERY = 60.0
COMMIT_EVERY = 3600.0
PRUNE_EVERY = 86400.0
STATE_TTL = 86400.0 + 600.0  # the longest window, and a margin
SAME_LOGIN = 1800.0  # the same user from the same address again within this: no news
COUNTED_TTL = 6 * 3600.0  # a recipient's first outcome is known within hours
FORWARD_SPAN = 900.0  # a Sieve redirect or a .forward re-sends a received message at once
FORWARDS_PER_RECIPIENT = 4  # copies one received message may excuse, per recipient ...
MAX_FORWARDS = 100  # ... and at most this many in all
REPLY_SPAN = 3600.0  # a vacation notice goes out as the mail it answers is delivered
PROFILE_TTL = 400 * 86400.0


class Detector:
    """Feed it every event and record in log order; it returns the alerts they raise."""

    def __init__(
        self,
        settings: DetectSettings,
        store: Store | None,
        geo: Geo,
        clock: Clock,
        *,
        learn: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self.geo = geo
        self.clock = clock
        self.learning = learn
        self.profiles = Profiles(PROFILE_TTL)
        self.states: ExpiringMap[Subject, SubjectState] = ExpiringMap(STATE_TTL, 500_000)
        self.hours = HourlyVolumes()  # for the store's volumes table, taken by flush()
        self.volume = VolumeSignal(settings.baseline_factor, settings.baseline_half_life)
        self.origins = OriginSignal(
            geo, settings.min_history, settings.travel_max_kmh, settings.travel_min_km
        )
        self.recipients = RecipientSignal(
            settings.freemail_domains,
            settings.min_history,
            settings.baseline_factor,
            settings.baseline_half_life,
        )
        self.delivery = DeliverySignal()
        self.credentials = CredentialSignal(
            settings.brute_failures,
            settings.brute_usernames,
            settings.stuffing_usernames,
            settings.stuffing_failures,
            settings.account_fail_ips,
        )
        self.shared = SharedLoginSignal(settings.shared_accounts, settings.min_history)
        self.senders = SenderSignal(settings.aliases, settings.login_maps, settings.valid_senders)
        self.helo = HeloJudge(settings.hostnames, settings.ratware_helos, settings.min_history)
        self.book = IncidentBook(
            hold=settings.evidence_hold,
            quiet=settings.incident_quiet,
            thresholds_for=self._thresholds,
            evidence_for=self.evidence,
            on_open=self._incident_opened,
        )
        self._logins: Recent[tuple[str, str], float] = Recent(SAME_LOGIN)
        self._counted: Recent[tuple[str, str, str], bool] = Recent(COUNTED_TTL)
        # (host, Message-ID) of mail received lately -> forwards it may still excuse
        self._received: Recent[tuple[str, str], int] = Recent(FORWARD_SPAN)
        # (host, envelope sender) of mail received lately: who an automatic reply may answer
        self._senders: Recent[tuple[str, str], bool] = Recent(REPLY_SPAN)
        # (host, queue ID) of a local message to one recipient -> it, until its first outcome
        self._automatic: Recent[tuple[str, str], Message] = Recent(COUNTED_TTL)
        # (host, queue ID) of local mail sent on behalf of mail received: forwards, replies
        self._excused: Recent[tuple[str, str], bool] = Recent(COUNTED_TTL)
        self.rules = SubjectRules(settings)
        self._allowed = self.rules.allowed
        self._ip_allowed = self.rules.ip_allowed
        self._handlers: dict[type, Callable[[Any, float], list[Finding]]] = {
            Accepted: self._on_accepted,
            Delivered: self._on_delivered,
            SessionEnded: self._on_session,
            DovecotLogin: self._on_dovecot_login,
            SaslFailure: self._on_sasl_failure,
            DovecotLoginFailed: self._on_login_failed,
            DovecotAuthFailure: self._on_auth_failure,
            Reject: self._on_reject,
        }
        self._next_expire = self._next_commit = self._next_prune = 0.0
        self._next_flush = 0.0
        self._last_ts: datetime | None = None
        # cold start: volume judges nothing but ceilings until min_history of log has passed
        self._warm_until: float | None = None
        self._now = 0.0
        if store is not None:
            self._load(store)

    # --- input ---------------------------------------------------------------------------

    @property
    def accepts(self) -> frozenset[type]:
        """The record and event types ``feed`` looks at; the rest it ignores (a caller may
        skip them)."""
        return frozenset(self._handlers)

    def feed(self, item: object) -> list[Alert]:
        """Take one parse event or correlated record; return the alerts it raised."""
        handler = self._handlers.get(type(item))
        if handler is None:
            return []
        ts: datetime = item.ts if hasattr(item, "ts") else item.line.ts  # type: ignore[attr-defined]  # events: .line
        now = ts.timestamp()
        self._advance(now, ts)
        findings = handler(item, now)
        if not findings:
            return []
        self._last_ts = ts
        return self.book.apply(findings, ts, now, _host_of(item))

    def relevant(self, item: object) -> bool:
        """Whether :meth:`feed` may do more with ``item`` than let log time pass: a message
        without a login or a uid (and, accepted, without a Message-ID a forward may carry
        again: only then is its sender one a reply may answer) and a session without a
        login only move the clock, and a caller that skips them calls :meth:`tick` with
        their time instead.  Cheap, for the caller asks it of every record: true is no
        promise that ``feed`` will use the item."""
        kind = type(item)
        if kind is Accepted:
            message: Message = item.message  # type: ignore[attr-defined]
            if message.rejected or message.orig_queue_id:
                return False
            return bool(message.message_id or message.sasl_username) or (
                message.pickup_uid is not None
            )
        if kind is Delivered:
            message = item.message  # type: ignore[attr-defined]
            return bool(message.sasl_username) or message.pickup_uid is not None
        if kind is SessionEnded:
            session = item.session  # type: ignore[attr-defined]
            return bool(session.auth_successes and session.sasl_usernames)
        return kind in self._handlers

    def tick(self, now: float) -> None:
        """Log time reached ``now`` (POSIX seconds) on an item :meth:`relevant` let go."""
        self._advance(now, None)

    def _advance(self, now: float, ts: datetime | None) -> None:
        self._now = now
        if self._warm_until is None:
            self._warm_until = 0.0 if self.learning else now + self.settings.min_history
        if now >= self._next_expire:
            self._housekeeping(now, ts or datetime.fromtimestamp(now, UTC))

    def close(self, now: datetime | None = None) -> list[Alert]:
        """End of input: write what is pending to the store."""
        if now is not None:
            self._last_ts = now
        self.flush()
        return []

    def set_learning(self, learning: bool) -> None:
        """Switch learning mode (``replay --learn`` archives first, then watch)."""
        self.learning = learning
        if learning:
            self._warm_until = 0.0  # what is learned replaces the warm-up

    @property
    def warming(self) -> bool:
        """Whether the detector is still in its cold-start warm-up."""
        return self._warm_until is None or self._now < self._warm_until

    # --- subjects ------------------------------------------------------------------------

    def state(self, subject: Subject, now: float) -> SubjectState:
        """The in-memory state of ``subject`` (made, with its profile, on first sight)."""
        state = self.states.get(subject)
        if state is None:
            state = self.rules.new_state(subject, self.profiles.get(subject, now))
            self.states.put(subject, state, now)
        else:
            self.states.refresh(subject, now)
        profile = state.profile
        if now > profile.last_seen:
            profile.last_seen = now
        return state

    def _subjects(self, message: Message) -> tuple[Subject, ...]:
        if message.pickup_uid is not None and _origin(message) in self._excused:
            return ()
        return self.rules.subjects(message)

    def _is_forward(self, message: Message) -> bool:
        """Whether a local submission re-sends a message this host received lately: a Sieve
        redirect or a ``.forward`` through sendmail keeps the Message-ID, and the mail uid
        that sends it wrote none of it (the spam a mailbox receives is forwarded too).

        Each received message excuses a few copies per recipient and no more, so a script
        reusing one Message-ID for its spam is still scored from the first copies past that.
        """
        key = (message.host, message.message_id)
        left = self._received.get(key) if message.message_id else None
        if not left:
            return False
        self._received.put(key, left - 1)
        self._excused.put(_origin(message), True)
        return True

    # --- handlers ------------------------------------------------------------------------

    def _on_accepted(self, item: Accepted, now: float) -> list[Finding]:
        message = item.message
        if message.rejected or message.orig_queue_id:
            return []
        if message.pickup_uid is None:
            if message.message_id:
                copies = min(FORWARDS_PER_RECIPIENT * (message.nrcpt or 1), MAX_FORWARDS)
                self._received.put((message.host, message.message_id), copies)
                if message.sender:
                    self._senders.put((message.host, folded(message.sender)), True)
        elif self._is_forward(message):
            return []
        elif message.nrcpt == 1:
            self._automatic.put(_origin(message), message)
            return []
        return self._on_message(message, now)

    def _on_message(self, message: Message, now: float) -> list[Finding]:
        """Score a message on its sending subjects."""
        out: list[Finding] = []
        learning = self.learning
        for subject in self._subjects(message):
            if self.store is not None:
                self.hours.add(message.host, subject, now, message.nrcpt or 0)
            state = self.state(subject, now)
            if state.allowed:
                continue
            info = None
            if subject.kind == "account":
                info = self._foreign(message.client_ip, state)
                state.familiar = info is not None and state.profile.origin_known(
                    "provider" if info.provider else "net",
                    info.provider or info.netblock,
                    now,
                    self.settings.min_history,
                )
            self.volume.on_message(
                now, state, message.nrcpt or 1, learning, now < (self._warm_until or 0.0), out
            )
            if subject.kind == "account":
                if info is not None:
                    self._success(
                        now, state, info, message.client_name, message.helo, message.host, out
                    )
                if not learning:
                    self.senders.on_account_message(now, state, message.sender or "", out)
            elif subject.kind == "uid" and not learning:
                messages = state.volume.totals[1][0] if state.volume is not None else 1
                self.senders.on_pickup_message(now, state, message.sender or "", messages, out)
            if learning:
                state.profile.learned = True
            else:
                state.queue_ids.append((message.host, message.queue_id))
            self.profiles.mark(state.profile)
        return out

    def _success(
        self,
        now: float,
        state: SubjectState,
        info: GeoInfo,
        client_name: str,
        helo: str,
        host: str,
        out: list[Finding],
    ) -> None:
        """A successful login or message of an account from a foreign address."""
        if self.origins.on_success(now, state, info, client_name, self.learning, out):
            self.profiles.mark(state.profile)
            if not self.learning and not self._own_place(state.profile, info, now):
                self.credentials.on_success(now, info.ip, info.netblock, state, out)
                self.shared.on_login(now, state, info, out)
        if helo and self.helo.on_success(now, state, helo, info.ip, host, self.learning, out):
            self.profiles.mark(state.profile)

    def _on_delivered(self, item: Delivered, now: float) -> list[Finding]:
        message, outcome = item.message, item.outcome
        if message.rejected or is_filter_hop(message, outcome):
            return []
        out: list[Finding] = []
        if message.pickup_uid is not None:
            origin = _origin(message)
            automatic = self._automatic.pop(origin)
            if automatic is not None:
                if (message.host, folded(outcome.recipient)) in self._senders:
                    self._excused.put(origin, True)  # an automatic reply
                    return []
                out = self._on_message(automatic, now)
        subjects = self._subjects(message)
        if not subjects:
            return out
        key = (message.host, message.queue_id, outcome.recipient)
        if key in self._counted:
            return out  # only the first outcome of each recipient counts
        self._counted.put(key, True)
        learning = self.learning
        for subject in subjects:
            state = self.state(subject, now)
            if state.allowed:
                continue
            self.recipients.on_recipient(now, state, outcome.recipient, learning, out)
            self.profiles.mark(state.profile)
            if not learning:
                self.delivery.on_outcome(now, state, outcome.status, outcome.reply, out)
        return out

    def _on_session(self, item: SessionEnded, now: float) -> list[Finding]:
        session = item.session
        if not session.auth_successes or not session.sasl_usernames:
            return []
        out: list[Finding] = []
        for username in session.sasl_usernames:
            state = self.state(account(username), now)
            if state.allowed:
                continue
            info = self._foreign(session.client_ip, state)
            if info is not None:
                self._success(
                    now, state, info, session.client_name, session.helo, session.host, out
                )
        return out

    def _on_dovecot_login(self, item: DovecotLogin, now: float) -> list[Finding]:
        if not item.user or not item.remote_ip:
            return []
        key = (item.user, item.remote_ip)
        last = self._logins.get(key)
        if last is not None and now - last < SAME_LOGIN:
            return []  # a mail client polling again: nothing new
        self._logins.put(key, now)
        state = self.state(account(item.user), now)
        if state.allowed:
            return []
        info = self._foreign(item.remote_ip, state)
        if info is None:
            return []
        out: list[Finding] = []
        self._success(now, state, info, "", "", item.line.host, out)
        return out

    def _failure(self, now: float, ip: str, user: str, source: int, attempts: int) -> list[Finding]:
        if self.learning or not ip:
            return []
        info = self.geo.lookup(ip)
        if not info.valid:
            return []
        foreign = not info.local and not self._ip_allowed(info.ip)
        target: Subject | None = None
        if user:
            target = account(user)
            if self._allowed(target):
                target = None
            elif self._own_place(self.profiles.peek(target), info, now):
                return []  # the owner's own device with a stale password: no guessing
        out: list[Finding] = []
        self.credentials.on_failure(
            now, info.ip, info.netblock, user, source, attempts, foreign, target, out
        )
        return out

    def _on_sasl_failure(self, item: SaslFailure, now: float) -> list[Finding]:
        return self._failure(now, item.client_ip, item.sasl_username, 0, 1)

    def _on_login_failed(self, item: DovecotLoginFailed, now: float) -> list[Finding]:
        return self._failure(now, item.remote_ip, item.user, 1, max(1, item.attempts or 1))

    def _on_auth_failure(self, item: DovecotAuthFailure, now: float) -> list[Finding]:
        if item.reason.startswith("unknown user") and self._logged_in_before(item.user):
            # a passdb before the one that holds the account missed it (a deny list: with
            # auth_verbose every good login logs this); a wrong password is a mismatch
            return []
        return self._failure(now, item.remote_ip, item.user, 2, 1)

    def _logged_in_before(self, user: str) -> bool:
        """Whether ``user`` has logged in (or sent) from somewhere this detector knows."""
        profile = self.profiles.peek(account(user)) if user else None
        return profile is not None and bool(profile.origins)

    def _on_reject(self, item: Reject, now: float) -> list[Finding]:
        if self.learning or not item.client_ip:
            return []
        out: list[Finding] = []
        reply = item.reply
        if "Relay access denied" in reply:
            info = self.geo.lookup(item.client_ip)
            if info.valid and not info.local and not self._ip_allowed(info.ip):
                self.credentials.on_relay_denied(now, info.ip, out)
        elif item.sasl_username and "not owned by user" in reply:
            state = self.state(account(item.sasl_username), now)
            if not state.allowed and state.due("sender_mismatch", 10, now):
                out.append(
                    Finding(
                        state.subject,
                        "sender_mismatch",
                        10,
                        f"Postfix refused sender {(item.sender or '')[:80]!r}: "
                        "not owned by the login",
                    )
                )
        return out

    # --- settings ------------------------------------------------------------------------

    def _foreign(self, ip: str, state: SubjectState) -> GeoInfo | None:
        """Geography of ``ip`` if it is a foreign address for the subject, else None."""
        if not ip:
            return None
        info = self.geo.lookup(ip)
        if not info.valid or info.local or self._ip_allowed(info.ip):
            return None
        if state.trusted:
            address = ipaddress.ip_address(info.ip)
            if any(address in net for net in state.trusted):
                return None
        return info

    def _own_place(self, profile: Profile | None, info: GeoInfo, now: float) -> bool:
        """Whether ``info``'s address or network is a confirmed origin of the account."""
        if profile is None:
            return False
        min_history = self.settings.min_history
        return profile.origin_known("ip", info.ip, now, min_history) or (
            bool(info.netblock) and profile.origin_known("net", info.netblock, now, min_history)
        )

    def _thresholds(self, subject: Subject) -> Thresholds:
        state = self.states.get(subject)
        return state.thresholds if state is not None else self.rules.thresholds(subject)

    def _incident_opened(self, subject: Subject, since: float) -> None:
        profile = self.profiles.peek(subject)
        if profile is not None:
            profile.note_incident(since)
            self.profiles.mark(profile)

    # --- evidence ------------------------------------------------------------------------

    def evidence(self, subject: Subject, now: float, host: str = "") -> dict[str, Any]:
        """What an alert shows: addresses, places, HELOs, sample queue IDs, counts.

        ``queue_ids`` are those of ``host``, the one the alert came from (all, without a
        host); the other hosts' are under ``queue_ids_by_host``: one queue ID means another
        message on each host, and a hold must only name the host's own.
        """
        evidence: dict[str, Any] = {
            "ips": [],
            "countries": [],
            "asns": [],
            "helos": [],
            "queue_ids": [],
        }
        counts: dict[str, int] = {}
        if subject.kind == "ip":
            info = self.geo.lookup(subject.name)
            evidence["ips"] = [subject.name]
            evidence["countries"] = [info.country] if info.country else []
            evidence["asns"] = [info.asn] if info.asn else []
            counts.update(self.credentials.totals(subject.name, now))
        else:
            state = self.states.get(subject)
            if state is not None:
                evidence.update(self.origins.evidence(state, now))
                evidence["known_ips"] = self._known_ips(state, evidence.get("ips", ()), now)
                evidence["helos"] = sorted(state.helos)
                _queue_ids(evidence, state.queue_ids, host)
                counts.update(self.volume.totals(state, now))
                counts.update(self.recipients.totals(state, now))
                counts.update(self.delivery.totals(state, now))
            if subject.kind == "account":
                counts.update(self.credentials.account_totals(subject.name, now))
        evidence["counts"] = counts
        return evidence

    def _known_ips(self, state: SubjectState, ips: Any, now: float) -> list[str]:
        """The evidence IPs that are the account's own confirmed origins (its home, its
        office): the owner's addresses, which a ban must never hit."""
        return [ip for ip in ips if self._own_place(state.profile, self.geo.lookup(ip), now)]

    # --- time and the store --------------------------------------------------------------

    def _housekeeping(self, now: float, ts: datetime) -> None:
        self._next_expire = now + EXPIRE_EVERY
        self.states.expire(now)
        self.credentials.expire(now)
        self.shared.expire(now)
        self._logins.expire(now)
        self._counted.expire(now)
        self._received.expire(now)
        self._senders.expire(now)
        self._automatic.expire(now)
        self._excused.expire(now)
        self.book.expire(now)
        self.profiles.expire(now)
        if now >= self._next_commit:
            self._next_commit = now + COMMIT_EVERY
            self.profiles.commit_pending(now, self.settings.baseline_half_life)
        store = self.store
        if store is None:
            return
        pending = (
            len(self.profiles.changed)
            + len(self.book.dirty)
            + len(self.book.alerts)
            + len(self.hours)
        )
        if now >= self._next_flush or pending >= store.batch_size:
            self._next_flush = now + store.flush_interval
            self.flush()
        if now >= self._next_prune:
            self._next_prune = now + PRUNE_EVERY
            store.prune(ts)

    def flush(self) -> None:
        """Write changed profiles, incidents and new alerts to the store (if any)."""
        if self.store is None:
            self.profiles.take_changed()
            self.book.take_dirty()
            return
        profiles = self.profiles.take_changed()
        incidents, alerts = self.book.take_dirty()
        volumes = self.hours.take()
        if not (profiles or incidents or alerts or volumes):
            return
        now = self._last_ts.timestamp() if self._last_ts else 0.0
        for incident in incidents:
            if incident.state == "open" and now:
                incident.evidence = self.evidence(incident.subject, now, incident.host)
        self.store.save(profiles, incidents, alerts, volumes)
        for profile in profiles:
            profile.clear_dirty()

    def _load(self, store: Store) -> None:
        now = self.clock.now().timestamp()
        for profile in store.load_profiles():
            self.profiles.put(profile, now)
            self._warm_until = 0.0  # a stored history: no warm-up
        for incident in store.load_open_incidents():
            self.book.restore(incident, incident.updated.timestamp())


def _host_of(item: object) -> str:
    if isinstance(item, Accepted | Delivered):
        return item.message.host
    if isinstance(item, SessionEnded):
        return item.session.host
    return item.line.host  # type: ignore[attr-defined]  # parse events carry their line


def _origin(message: Message) -> tuple[str, str]:
    """(host, queue ID) of the message as it entered: a filter's next hop names its first."""
    return message.host, message.orig_queue_id or message.queue_id


def _queue_ids(evidence: dict[str, Any], samples: Iterable[tuple[str, str]], host: str) -> None:
    """Put the sample queue IDs into ``evidence``: ``host``'s, then the other hosts'."""
    elsewhere: dict[str, list[str]] = {}
    for where, queue_id in samples:
        if not host or where == host:
            evidence["queue_ids"].append(queue_id)
        else:
            elsewhere.setdefault(where, []).append(queue_id)
    if elsewhere:
        evidence["queue_ids_by_host"] = elsewhere
