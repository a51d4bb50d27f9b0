"""What the detector keeps in memory about one subject over the last day.

One :class:`SubjectState` per account, uid or sender domain, found with one lookup per
record; each signal keeps its windows in its own slot, created on first use.  The state
also caches what the config says about the subject (allowlisted, thresholds, limits,
trusted networks), so settings are matched once per subject, not once per record.
The detector's map of states expires a subject a day after its last record.

:class:`HourlyVolumes` counts the accepted messages and recipients of each account and uid
per host and hour, for the store's ``volumes`` table (what ``report`` charts); the detector
hands its counts over with every batch it writes, so it holds only what is not saved yet.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from postwatch.config import IPNetwork, Limits, Thresholds
from postwatch.detect.alerts import Subject

if TYPE_CHECKING:
    from postwatch.detect.profiles import Profile

SAMPLES = 5
REFRESH = 900.0  # an unchanged finding is re-sent at most this often (it stays held)


class SubjectState:
    """One subject's windows, samples and cached settings."""

    __slots__ = (
        "allowed",
        "ceiling",
        "emitted",
        "familiar",
        "floor",
        "floor_override",
        "helos",
        "last_ip",
        "last_ip_at",
        "outcomes",
        "places",
        "profile",
        "queue_ids",
        "senders",
        "spread",
        "subject",
        "thresholds",
        "trusted",
        "volume",
    )

    def __init__(
        self,
        subject: Subject,
        profile: Profile,
        *,
        allowed: bool,
        thresholds: Thresholds,
        floor: Limits,
        ceiling: Limits,
        trusted: tuple[IPNetwork, ...],
    ) -> None:
        self.subject = subject
        self.profile = profile
        self.allowed = allowed
        self.thresholds = thresholds
        self.floor = floor
        self.floor_override = False  # the floor comes from an override: use it as it is
        self.ceiling = ceiling
        self.trusted = trusted
        self.volume: Any = None  # volume.Windows
        self.spread: Any = None  # recipients.Spread
        self.outcomes: Any = None  # delivery.Windows
        self.places: Any = None  # origins.Places
        self.senders: Any = None  # senders.SenderWindows
        self.queue_ids: deque[tuple[str, str]] = deque(maxlen=SAMPLES)  # (host, queue ID)
        self.helos: deque[str] = deque(maxlen=SAMPLES)
        self.emitted: dict[str, tuple[int, float]] = {}
        self.familiar = False  # its last message came from a confirmed network of its own
        self.last_ip = ""
        self.last_ip_at = 0.0

    def due(self, signal: str, points: int, now: float, family: str = "") -> bool:
        """Whether a finding is news: a new signal, new points, a new family, or due for a
        refresh."""
        return due(self.emitted, f"{signal}/{family}" if family else signal, points, now)

    @property
    def routine(self) -> str:
        """The family for volume and recipient findings: ``routine`` from a familiar place."""
        return "routine" if self.familiar else ""


def due(emitted: dict[str, tuple[int, float]], signal: str, points: int, now: float) -> bool:
    """Whether a finding is news, given what was last emitted per signal (and note it)."""
    last = emitted.get(signal)
    if last is not None and last[0] == points and now - last[1] < REFRESH:
        return False
    emitted[signal] = (points, now)
    return True


# --- hourly volumes ---------------------------------------------------------------------

HOUR = 3600
MAX_VOLUME_KEYS = 100_000  # (host, hour, subject) counts held between two batches
VOLUME_KINDS = frozenset({"account", "uid"})  # sender domains are attacker-chosen: not kept


class HourVolume(NamedTuple):
    """Messages and recipients one subject submitted on one host in one hour (UTC)."""

    host: str
    hour: datetime  # the start of the hour, timezone-aware UTC
    subject: Subject
    messages: int
    recipients: int


class HourlyVolumes:
    """Counts per (host, hour, subject) since the last :meth:`take`.

    At most ``max_keys`` keys: when a batch is not taken in time (no store to write to),
    the oldest hours go first and ``dropped`` counts the messages lost with them.
    """

    __slots__ = ("_counts", "dropped", "max_keys")

    def __init__(self, max_keys: int = MAX_VOLUME_KEYS) -> None:
        self.max_keys = max_keys
        self.dropped = 0
        self._counts: dict[tuple[str, int, Subject], list[int]] = {}

    def add(self, host: str, subject: Subject, now: float, recipients: int) -> None:
        """Count one accepted message of ``subject`` at ``now`` (log time, seconds)."""
        if subject.kind not in VOLUME_KINDS:
            return
        key = (host, int(now // HOUR), subject)
        counts = self._counts.get(key)
        if counts is None:
            if len(self._counts) >= self.max_keys:
                self._drop_oldest_hour()
            counts = self._counts[key] = [0, 0]
        counts[0] += 1
        counts[1] += recipients

    def take(self) -> list[HourVolume]:
        """The counts so far, oldest hour first; the next counts start from zero."""
        counts, self._counts = self._counts, {}
        return [
            HourVolume(host, datetime.fromtimestamp(hour * HOUR, UTC), subject, *amounts)
            for (host, hour, subject), amounts in sorted(
                counts.items(), key=lambda item: (item[0][1], item[0][0], item[0][2])
            )
        ]

    def _drop_oldest_hour(self) -> None:
        oldest = min(hour for _, hour, _ in self._counts)
        for key in [key for key in self._counts if key[1] == oldest]:
            self.dropped += self._counts.pop(key)[0]

    def __len__(self) -> int:
        return len(self._counts)
