"""What postwatch has learned about each subject: volume baselines and known origins.

A :class:`Profile` holds, per account (or uid, or sender domain):

- ``peaks``: the busiest count seen per metric and window (messages and recipients over
  5 min, 1 h, 24 h; distinct recipient domains over 1 h and 24 h), decaying with a
  half-life so the baseline follows slow change;
- ``origins``: countries, ASNs, /24 or /48 networks and IPs the account has logged in from,
  and the weak HELO names (``DESKTOP-7F3K2LP``) its mail clients use, with first/last seen,
  count, and whether the origin is *confirmed* (learned, or it survived ``min_history``
  with no incident on the account);
- ``recipients``: hashes of addresses it has sent to (bounded, most recent kept).

Outside learning mode the baseline only learns from clean days: the peaks of the current
day stay *pending* and are committed after 24 h if no incident opened on the subject.  So a
burst never raises the bar it is measured against.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from postwatch.detect.alerts import Subject
from postwatch.detect.windows import ExpiringMap

METRICS = ("messages", "recipients")
WINDOW_NAMES = ("5m", "1h", "24h")
# peaks[metric_index * 3 + window_index]; then the learned share of recipients never written
# to before (per clean day), stored as metric "new_share", span "24h"; then the distinct
# recipient domains in 1 h and in 24 h, stored as metric "domains"
NEW_SHARE = len(METRICS) * len(WINDOW_NAMES)
DOMAINS = NEW_SHARE + 1
DOMAIN_SPANS = ("1h", "24h")
SLOTS = DOMAINS + len(DOMAIN_SPANS)
TAINT_SPAN = 86400.0  # what first appears within a day of an incident's start is suspect
MIN_SHARE_SAMPLE = 20
ORIGIN_KINDS = ("country", "asn", "net", "ip", "provider", "helo")
ORIGIN_CAPS = {"country": 64, "asn": 128, "net": 256, "ip": 256, "provider": 32, "helo": 16}
RECIPIENT_CAP = 5000
COMMIT_AFTER = 86400.0


def recipient_hash(address: str) -> int:
    """A stable 63-bit hash of a lower-cased address (what the store keeps): CRC-32 and
    Adler-32 side by side, cheap and stable across processes and versions."""
    data = address.lower().encode("utf-8", "replace")
    return (zlib.crc32(data) & 0x7FFFFFFF) << 32 | zlib.adler32(data)


class Origin(NamedTuple):
    """One place an account logged in from."""

    first_seen: float
    last_seen: float
    seen: int
    confirmed: bool


class Profile:
    """Learned state of one subject (plain mutable object: it changes on every message)."""

    __slots__ = (
        "dirty",
        "dirty_origins",
        "dirty_recipients",
        "first_seen",
        "last_incident",
        "last_seen",
        "learned",
        "origins",
        "peak_times",
        "peaks",
        "pending",
        "pending_new",
        "pending_since",
        "pending_total",
        "recipients",
        "subject",
    )

    def __init__(self, subject: Subject, first_seen: float) -> None:
        self.subject = subject
        self.first_seen = first_seen
        self.last_seen = first_seen
        self.learned = False  # fed in learning mode at least once
        self.last_incident = 0.0
        self.peaks = [0.0] * SLOTS
        self.peak_times = [0.0] * SLOTS
        self.pending = [0] * SLOTS
        self.pending_since = 0.0
        self.pending_total = 0  # recipients counted since pending_since
        self.pending_new = 0  # of which never seen before
        self.origins: dict[str, OrderedDict[str, Origin]] = {}
        self.recipients: OrderedDict[int, float] = OrderedDict()
        self.dirty = False
        self.dirty_origins: set[tuple[str, str]] = set()
        self.dirty_recipients: set[int] = set()

    # --- volume baseline -----------------------------------------------------------------

    def peak(self, slot: int, now: float, half_life: float) -> float:
        """The learned peak for ``slot``, decayed to ``now``."""
        value = self.peaks[slot]
        if not value:
            return 0.0
        age = now - self.peak_times[slot]
        return value * 0.5 ** (age / half_life) if age > 0 else value

    def observe_counts(
        self, counts: Iterable[int], offset: int, now: float, learning: bool, half_life: float
    ) -> None:
        """Feed current window counts (3 of them, from slot ``offset``)."""
        if learning:
            for index, count in enumerate(counts, offset):
                if count > self.peak(index, now, half_life):
                    self.peaks[index], self.peak_times[index] = float(count), now
                    self.dirty = True
            return
        if not self.pending_since:
            self.pending_since = now
        pending = self.pending
        for index, count in enumerate(counts, offset):
            if count > pending[index]:
                pending[index] = count

    def tainted(self, when: float) -> bool:
        """Whether ``when`` falls within a day after the start of the last incident."""
        return bool(self.last_incident) and 0 <= when - self.last_incident <= TAINT_SPAN

    def commit_pending(self, now: float, half_life: float) -> bool:
        """After a clean day, fold the pending peaks into the baseline; True if it did."""
        if not self.pending_since or now - self.pending_since < COMMIT_AFTER:
            return False
        clean = not (
            self.last_incident and self.pending_since - TAINT_SPAN <= self.last_incident <= now
        )
        if clean:
            if self.pending_total >= MIN_SHARE_SAMPLE:
                self.pending[NEW_SHARE] = round(100 * self.pending_new / self.pending_total)
            for index, count in enumerate(self.pending):
                if count > self.peak(index, now, half_life):
                    self.peaks[index], self.peak_times[index] = float(count), now
                    self.dirty = True
        self.pending = [0] * SLOTS
        self.pending_since = 0.0
        self.pending_total = self.pending_new = 0
        return True

    def count_recipient(self, is_new: bool, now: float) -> None:
        """Count a recipient towards the day's share of new ones (committed like peaks)."""
        if not self.pending_since:
            self.pending_since = now
        self.pending_total += 1
        if is_new:
            self.pending_new += 1

    def new_share(self, now: float, half_life: float) -> float | None:
        """The learned share (0..1) of recipients never seen before; None if unknown."""
        if not self.peak_times[NEW_SHARE]:
            return None
        return self.peak(NEW_SHARE, now, half_life) / 100

    def has_baseline(self) -> bool:
        return any(self.peaks)

    # --- origins -------------------------------------------------------------------------

    def established(self, now: float, min_history: float) -> bool:
        """Whether novelty means something: learned, or watched for ``min_history``."""
        return self.learned or now - self.first_seen >= min_history

    def origin_known(self, kind: str, value: str, now: float, min_history: float) -> bool:
        """Whether ``value`` is a confirmed origin (confirming it lazily when it has aged)."""
        table = self.origins.get(kind)
        entry = table.get(value) if table else None
        if entry is None:
            return False
        if entry.confirmed:
            return True
        if now - entry.first_seen >= min_history and not self.tainted(entry.first_seen):
            assert table is not None
            table[value] = entry._replace(confirmed=True)
            self.dirty_origins.add((kind, value))
            return True
        return False

    def see_origin(self, kind: str, value: str, now: float, learning: bool) -> None:
        """Record a sighting (``seen`` counts at most one sighting an hour)."""
        table = self.origins.get(kind)
        if table is None:
            table = self.origins[kind] = OrderedDict()
        entry = table.get(value)
        if entry is None:
            table[value] = Origin(now, now, 1, learning)
            if len(table) > ORIGIN_CAPS[kind]:
                table.popitem(last=False)
        elif now - entry.last_seen < 3600 and (entry.confirmed or not learning):
            return  # seen within the hour: nothing worth changing or writing
        else:
            table.move_to_end(value)
            table[value] = Origin(
                min(entry.first_seen, now),
                max(entry.last_seen, now),
                entry.seen + 1,
                entry.confirmed or learning,
            )
        self.dirty_origins.add((kind, value))

    def visit_origin(self, kind: str, value: str, now: float, min_history: float) -> bool:
        """Record a sighting outside learning mode; return whether it was a known origin."""
        table = self.origins.get(kind)
        entry = table.get(value) if table is not None else None
        if entry is not None and now - entry.last_seen < 3600:
            # seen within the hour: nothing to record (the common case, kept cheap)
            return entry.confirmed or self.origin_known(kind, value, now, min_history)
        known = self.origin_known(kind, value, now, min_history)
        self.see_origin(kind, value, now, False)
        return known

    def known_values(self, kind: str) -> list[str]:
        return [value for value, entry in (self.origins.get(kind) or {}).items() if entry.confirmed]

    def note_incident(self, since: float) -> None:
        """An incident opened: origins first seen and peaks pending around then stay out."""
        if since > self.last_incident:
            self.last_incident = since
            self.dirty = True

    # --- recipients ----------------------------------------------------------------------

    def see_recipient(self, digest: int, now: float) -> bool:
        """Remember a recipient; True when it was never seen before."""
        recipients = self.recipients
        last = recipients.get(digest)
        if last is None:
            recipients[digest] = now
            if len(recipients) > RECIPIENT_CAP:
                recipients.popitem(last=False)
            self.dirty_recipients.add(digest)
            return True
        recipients.move_to_end(digest)
        if now - last >= 86400:
            recipients[digest] = now
            self.dirty_recipients.add(digest)
        return False

    def is_dirty(self) -> bool:
        return self.dirty or bool(self.dirty_origins) or bool(self.dirty_recipients)

    def clear_dirty(self) -> None:
        self.dirty = False
        self.dirty_origins.clear()
        self.dirty_recipients.clear()


class Profiles:
    """Every subject's profile, bounded, with the set of those changed since the last save."""

    def __init__(self, ttl: float, max_size: int = 200_000) -> None:
        self._profiles: ExpiringMap[Subject, Profile] = ExpiringMap(ttl, max_size)
        self.changed: dict[Subject, Profile] = {}

    def get(self, subject: Subject, now: float) -> Profile:
        profile = self._profiles.get(subject)
        if profile is None:
            profile = Profile(subject, now)
            profile.dirty = True
            self.changed[subject] = profile
            self._profiles.put(subject, profile, now)
        else:
            self._profiles.refresh(subject, now)
        if now > profile.last_seen:
            profile.last_seen = now
        return profile

    def peek(self, subject: Subject) -> Profile | None:
        return self._profiles.get(subject)

    def put(self, profile: Profile, now: float) -> None:
        """Install a profile loaded from the store (replacing any in memory)."""
        self._profiles.put(profile.subject, profile, now)

    def mark(self, profile: Profile) -> None:
        if profile.is_dirty():
            self.changed[profile.subject] = profile

    def take_changed(self) -> list[Profile]:
        changed = list(self.changed.values())
        self.changed.clear()
        return changed

    def commit_pending(self, now: float, half_life: float) -> None:
        for _, profile in self._profiles.items():
            if profile.pending_since and profile.commit_pending(now, half_life):
                self.mark(profile)

    def expire(self, now: float) -> int:
        return self._profiles.expire(now)

    def __len__(self) -> int:
        return len(self._profiles)

    def __iter__(self) -> Iterator[Profile]:
        return (profile for _, profile in self._profiles.items())
