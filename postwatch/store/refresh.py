"""Shared state: what other mail hosts learned, merged into this host's profiles while it runs.

Several hosts may write one database.  Each loads every profile at start; after that,
``watch`` calls :meth:`ProfileRefresh.refresh` every ``[store] refresh_interval`` of its
clock.  A refresh reads the profiles whose ``subjects`` row was written since the last one
(``written_at``, stamped by the database's own clock, so the hosts' clocks do not matter)
and merges them into the detector's profiles in memory, by the rules the store's upserts
follow (``rows``): first seen the earliest, last seen the latest, ``learned`` and
``confirmed`` either, ``seen`` the larger; a baseline peak is taken when it is higher than
this host's once both are decayed to now.  Nothing here marks a profile changed: what was
read is in the database already, and what this host has not written yet stays pending, so
the next batch writes it as it would have.  Known recipients are not refreshed (they are
the bulk of a profile and only sharpen the new-recipient share).

Each refresh re-reads the last ``OVERLAP`` seconds of writes: a batch still being written
when the previous refresh read carries an earlier stamp than what that refresh saw.
Merging is idempotent, so reading a profile twice changes nothing.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from postwatch.clock import Clock
from postwatch.detect.profiles import ORIGIN_CAPS, SLOTS, Origin, Profile

if TYPE_CHECKING:
    from postwatch.detect import Detector
    from postwatch.store.database import Store

log = logging.getLogger(__name__)

OVERLAP = timedelta(seconds=60)  # writes re-read by each refresh (a batch takes less)


class ProfileRefresh:
    """Merge the profiles other hosts wrote into ``detector``'s, since ``store`` opened."""

    def __init__(self, store: Store, detector: Detector, clock: Clock) -> None:
        self.store = store
        self.detector = detector
        self.clock = clock
        self.since: datetime = store.opened_at - OVERLAP
        self.merged = 0  # profiles merged or added, over all refreshes

    def refresh(self) -> int:
        """Read what was written since the last refresh and merge it; how many profiles.

        Raises :class:`~postwatch.errors.StoreError`; the next refresh reads from the same
        point again.
        """
        subjects, newest = self.store.changed_subjects(self.since)
        if not subjects:
            return 0
        now = self.clock.now().timestamp()
        half_life = self.detector.settings.baseline_half_life
        profiles = self.detector.profiles
        count = 0
        for stored in self.store.load_profiles(subjects, recipients=False):
            local = profiles.peek(stored.subject)
            if local is None:
                profiles.put(stored, now)
                count += 1
            elif merge_profile(local, stored, now, half_life):
                count += 1
        if newest is not None:
            self.since = max(self.since, newest - OVERLAP)
        self.merged += count
        log.debug("merged %d profiles written by other hosts", count)
        return count


def merge_profile(local: Profile, stored: Profile, now: float, half_life: float) -> bool:
    """Merge a stored profile into this host's in-memory one; True when ``local`` changed.

    ``local`` keeps whatever it has not written yet (its dirty marks are left alone).
    """
    changed = False
    if stored.first_seen < local.first_seen:
        local.first_seen, changed = stored.first_seen, True
    if stored.last_seen > local.last_seen:
        local.last_seen, changed = stored.last_seen, True
    if stored.learned and not local.learned:
        local.learned, changed = True, True
    if stored.last_incident > local.last_incident:
        local.last_incident, changed = stored.last_incident, True
    for slot in range(SLOTS):
        theirs = stored.peak(slot, now, half_life)
        known = stored.peak_times[slot] and not local.peak_times[slot]
        if known or (theirs > local.peak(slot, now, half_life)):
            local.peaks[slot] = stored.peaks[slot]
            local.peak_times[slot] = stored.peak_times[slot]
            changed = True
    for kind, table in stored.origins.items():
        changed = _merge_origins(local, kind, table) or changed
    return changed


def _merge_origins(local: Profile, kind: str, stored: OrderedDict[str, Origin]) -> bool:
    mine = local.origins.get(kind)
    if mine is None:
        mine = local.origins[kind] = OrderedDict()
    changed = False
    for value, theirs in stored.items():
        entry = mine.get(value)
        merged = theirs
        if entry is not None:
            merged = Origin(
                min(entry.first_seen, theirs.first_seen),
                max(entry.last_seen, theirs.last_seen),
                max(entry.seen, theirs.seen),
                entry.confirmed or theirs.confirmed,
            )
        if merged != entry:
            mine[value] = merged
            changed = True
    if changed:  # oldest first, as sightings keep it; past the cap the oldest go
        ordered = sorted(mine.items(), key=lambda item: item[1].last_seen)
        mine.clear()
        mine.update(ordered[-ORIGIN_CAPS.get(kind, len(ordered)) :])
    return changed
