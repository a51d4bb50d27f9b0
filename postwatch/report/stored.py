"""Building a :class:`~postwatch.report.model.Report` from the state store (what ``watch``
keeps).

The store has the incidents, the learned baselines, the addresses and countries each login
came from, the recipients it wrote to, and in its hourly volumes the messages and recipients
of each login and uid: their counts, their chart, and their messages a day before the
window.  It has no delivery outcomes, and a store whose volumes are empty (written before
revision 0004) has no message counts either: the report says so in its notes instead of
showing zeros.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from postwatch.clock import Clock
from postwatch.config import Settings
from postwatch.detect.alerts import Subject
from postwatch.detect.profiles import Profile
from postwatch.errors import StoreError
from postwatch.report.build import (
    baseline_of,
    incident_count,
    incident_rows,
    top_rows,
    worst_by_subject,
)
from postwatch.report.collect import Volume
from postwatch.report.model import (
    SEVERITY_ORDER,
    AccountRow,
    AttackerRow,
    LockRow,
    PickupRow,
    Report,
)
from postwatch.report.window import Window, chart_bins, hour_of, series
from postwatch.store import Store

STORE_DETAIL = (
    "unique recipients are the addresses first written to, or written to again after a day, "
    "in the window; IPs and countries are the logins' origins seen in the window; attacker "
    "counts are the last hour of each IP incident"
)
STORE_NOTE = (
    "from the state store: messages, recipients and the chart come from its hourly volumes "
    "(an hour counts when it starts in the window); it keeps no deferred or bounced counts, "
    "so those columns show '-' (report from the log files for them); " + STORE_DETAIL
)
STORE_NOTE_NO_VOLUMES = (
    "from the state store: it has no hourly volumes for the window (written by postwatch "
    "before their revision 0004, or none yet), so it knows no per-login message, recipient, "
    "deferred or bounced counts: those columns show '-' and there is no chart (report from "
    "the log files for them); " + STORE_DETAIL
)


def report_from_store(
    store: Store,
    *,
    settings: Settings,
    window: Window,
    clock: Clock,
    locks: Sequence[LockRow] = (),
    top: int = 20,
    notes: Sequence[str] = (),
) -> Report:
    """Report on the window from what the state store holds."""
    try:
        stored_incidents, profiles = store.incidents(), store.load_profiles()
    except SQLAlchemyError as exc:  # Store.incidents leaves the driver's errors unwrapped
        raise StoreError(f"cannot read the state database {store.safe_url}: {exc}") from exc
    volumes = StoredVolumes.read(store, window)
    incidents = incident_rows(stored_incidents, window)
    severities = worst_by_subject(incidents)
    locked = {row.account for row in locks}
    start = window.start.timestamp() if window.start else float("-inf")
    end = window.end.timestamp() if window.end else float("inf")
    accounts: dict[str, Profile | None] = {}
    uids: set[tuple[str, int]] = set()
    seen: list[float] = []
    for profile in profiles:
        kind, name, scope = profile.subject
        if not (profile.last_seen >= start and profile.first_seen < end):
            continue
        seen += [profile.first_seen, profile.last_seen]
        if kind == "account":
            accounts[name] = profile
        elif kind == "uid" and name.isdigit():
            uids.add((scope, int(name)))
    if volumes is not None:
        for subject in volumes.window:
            if subject.kind == "account":
                accounts.setdefault(subject.name, None)
            elif subject.kind == "uid" and subject.name.isdigit():
                uids.add((subject.scope, int(subject.name)))
    for incident in incidents:
        if incident.subject_kind == "uid" and incident.subject.isdigit():
            uids.add((incident.scope, int(incident.subject)))
    rows = [
        _stored_account(name, profile, volumes, start, end, window, settings)._replace(
            severity=severities.get(("account", name), ""), locked=name in locked
        )
        for name, profile in accounts.items()
    ]
    if volumes is not None:
        rows.sort(key=lambda row: (-(row.messages or 0), row.account))
    else:
        rows.sort(
            key=lambda row: (
                -SEVERITY_ORDER.get(row.severity, 0),
                -(row.unique_recipients or 0),
                row.account,
            )
        )
    pickups = []
    for host, uid in uids:
        row = _unknown_pickup(host, uid, severities.get(("uid", f"{uid}@{host}"), ""))
        if volumes is not None:
            messages, recipients, _ = volumes.of(Subject("uid", str(uid), host))
            row = row._replace(messages=messages, recipients=recipients)
        pickups.append(row)
    attackers = [
        AttackerRow(
            ip=incident.subject,
            country=incident.countries[0] if incident.countries else "",
            asn="",
            failures=incident_count(incident, "auth_failures_1h"),
            usernames=incident_count(incident, "usernames_tried_1h"),
            sample_usernames=(),
            relay_denied=incident_count(incident, "relay_denied_1h"),
            severity=incident.severity,
        )
        for incident in incidents
        if incident.subject_kind == "ip"
    ]
    hosts = {incident.host for incident in incidents if incident.host}
    extra = [STORE_NOTE if volumes is not None else STORE_NOTE_NO_VOLUMES]
    if volumes is not None:
        hosts |= volumes.hosts
        extra += volumes.notes(window)
    return Report(
        generated=clock.now(),
        source="store",
        window=window,
        first_seen=_when(min(seen)) if seen else None,
        last_seen=_when(max(seen)) if seen else None,
        hosts=tuple(sorted(hosts)),
        lines=None,
        accounts=top_rows(rows, top, severities, locked),
        accounts_total=len(rows),
        incidents=tuple(incidents),
        locks=tuple(locks),
        attackers=tuple(attackers[:top]),
        pickups=tuple(sorted(pickups, key=lambda row: (-(row.messages or 0), row.host, row.uid))),
        bins_start=volumes.bins_start if volumes is not None else None,
        bin_hours=volumes.bin_hours if volumes is not None else 1,
        notes=(*extra, *notes),
    )


class StoredVolumes:
    """The store's hourly volumes for a window, per subject, and the history before it."""

    def __init__(
        self,
        rows: Iterable[Any],
        history: dict[Subject, int],
        first_hour: datetime,
        window: Window,
    ) -> None:
        self.window: dict[Subject, Volume] = {}
        self.history = history
        self.first_hour = first_hour
        self.hosts: set[str] = set()
        last_hour = first_hour
        for row in rows:
            volume = self.window.get(row.subject)
            if volume is None:
                volume = self.window[row.subject] = Volume()
            volume.messages += row.messages
            volume.recipients += row.recipients
            volume.hours[hour_of(row.hour)] += row.messages
            self.hosts.add(row.host)
            last_hour = max(last_hour, row.hour)
        start = window.start or first_hour
        self.bins_start, self.bin_hours, self.bins = chart_bins(
            start, window.end or last_hour + timedelta(hours=1)
        )

    @classmethod
    def read(cls, store: Store, window: Window) -> StoredVolumes | None:
        """The volumes of ``window``; None when the store has none for it (an old schema, no
        volumes written yet, or all of them newer than the window)."""
        if "volumes" not in store.tables():
            return None
        first_hour, history = store.volume_history(window.start)
        if first_hour is None or (window.end is not None and window.end <= first_hour):
            return None
        return cls(store.volumes(start=window.start, end=window.end), history, first_hour, window)

    def of(self, subject: Subject) -> tuple[int, int, tuple[int, ...]]:
        """Messages, recipients and the chart's series of ``subject`` in the window."""
        volume = self.window.get(subject)
        if volume is None:
            return 0, 0, series({}, self.bins_start, self.bin_hours, self.bins)
        hourly = series(volume.hours, self.bins_start, self.bin_hours, self.bins)
        return volume.messages, volume.recipients, hourly

    def history_days(self, window: Window) -> float:
        if window.start is None or window.start <= self.first_hour:
            return 0.0
        return (window.start - self.first_hour).total_seconds() / 86400

    def notes(self, window: Window) -> list[str]:
        if window.start is not None and self.first_hour > window.start:
            return [
                f"the store's hourly volumes begin at {self.first_hour:%Y-%m-%d %H:%M} UTC: "
                "messages before then are not counted"
            ]
        return []


def _stored_account(
    name: str,
    profile: Profile | None,
    volumes: StoredVolumes | None,
    start: float,
    end: float,
    window: Window,
    settings: Settings,
) -> AccountRow:
    """One login's row from its stored profile and hourly volumes (either may be missing)."""
    ips = origins_in(profile, "ip", start, end) if profile is not None else ()
    row = AccountRow(
        account=name,
        messages=None,
        recipients=None,
        unique_recipients=sum(1 for when in profile.recipients.values() if start <= when < end)
        if profile is not None
        else None,
        ips=ips,
        ip_count=len(ips),
        countries=origins_in(profile, "country", start, end) if profile is not None else (),
        outcomes=None,
        deferred=None,
        bounced=None,
        baseline=baseline_of(None, 0.0, profile, window.end, settings),
    )
    if volumes is None:
        return row
    subject = Subject("account", name)
    messages, recipients, hourly = volumes.of(subject)
    history = Volume()
    history.messages = volumes.history.get(subject, 0)
    baseline = baseline_of(history, volumes.history_days(window), profile, window.end, settings)
    return row._replace(messages=messages, recipients=recipients, hourly=hourly, baseline=baseline)


def origins_in(profile: Profile, kind: str, start: float, end: float) -> tuple[str, ...]:
    table = profile.origins.get(kind)
    if not table:
        return ()
    live = [(value, origin) for value, origin in table.items() if start <= origin.last_seen < end]
    live.sort(key=lambda item: (-item[1].seen, item[0]))
    return tuple(value for value, _ in live)


def _unknown_pickup(host: str, uid: int, severity: str) -> PickupRow:
    return PickupRow(host, uid, None, None, None, (), None, None, None, severity)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
