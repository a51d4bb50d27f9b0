"""What the detector keeps in memory about one subject over the last day.

One :class:`SubjectState` per account, uid or sender domain, found with one lookup per
record; each signal keeps its windows in its own slot, created on first use.  The state
also caches what the config says about the subject (allowlisted, thresholds, limits,
trusted networks), so settings are matched once per subject, not once per record.
The detector's map of states expires a subject a day after its last record.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

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
        self.queue_ids: deque[str] = deque(maxlen=SAMPLES)
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
