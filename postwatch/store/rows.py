"""Conversions between the detector's objects and the store's rows, and merge rules.

:func:`read_profiles` reads profiles back: every one at start, or some (the refresh).
Known recipients belong to a subject (an account, a uid on its host, a sender domain) and
are read back into that subject's profile; origins (where a login comes from) are an
account's only.

When several mail hosts write the same row, upserts merge: first seen takes the earliest,
last seen the latest, ``confirmed`` and ``learned`` either, ``seen`` the larger count.
Times are stored in UTC; SQLite hands them back naive, so reading attaches UTC.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, case, or_, select, tuple_

from postwatch.detect.alerts import Reason, Subject
from postwatch.detect.incidents import Incident
from postwatch.detect.profiles import (
    DOMAIN_SPANS,
    DOMAINS,
    METRICS,
    NEW_SHARE,
    RECIPIENT_CAP,
    WINDOW_NAMES,
    Origin,
    Profile,
)
from postwatch.detect.state import HourVolume
from postwatch.store import schema

Row = dict[str, Any]


def utc(value: datetime | None) -> datetime | None:
    """A stored time as UTC (SQLite hands back naive times); None stays None."""
    return None if value is None else when(value)


def when(value: datetime) -> datetime:
    """A stored, non-null time as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def profile_rows(
    profiles: Iterable[Profile], host: str
) -> tuple[list[Row], list[Row], list[Row], list[Row]]:
    """Rows for subjects, baselines, origins and recipients: only what changed."""
    subject_rows: list[Row] = []
    baseline_rows: list[Row] = []
    origin_rows: list[Row] = []
    recipient_rows: list[Row] = []
    for profile in profiles:
        kind, name, scope = profile.subject
        subject_rows.append(
            {
                "kind": kind,
                "name": name,
                "scope": scope,
                "host": host,
                "first_seen": at(profile.first_seen),
                "last_seen": at(max(profile.first_seen, profile.last_seen)),
                "learned": profile.learned,
                "last_incident": at(profile.last_incident) if profile.last_incident else None,
            }
        )
        if profile.dirty:
            for slot, peak in enumerate(profile.peaks):
                if peak or (slot == NEW_SHARE and profile.peak_times[slot]):
                    metric, span = slot_name(slot)
                    baseline_rows.append(
                        {
                            "kind": kind,
                            "name": name,
                            "scope": scope,
                            "metric": metric,
                            "span": span,
                            "peak": peak,
                            "peak_at": at(profile.peak_times[slot]),
                        }
                    )
        if kind == "account":  # origins: where a login comes from (read back likewise)
            origin_rows += origin_rows_of(profile, host)
        for digest in profile.dirty_recipients:
            seen = profile.recipients.get(digest)
            if seen is not None:
                recipient_rows.append(
                    {
                        "kind": kind,
                        "name": name,
                        "scope": scope,
                        "digest": digest,
                        "first_seen": at(seen),
                        "last_seen": at(seen),
                    }
                )
    return subject_rows, baseline_rows, origin_rows, recipient_rows


def origin_rows_of(profile: Profile, host: str) -> list[Row]:
    rows = []
    for kind, value in profile.dirty_origins:
        table = profile.origins.get(kind)
        entry = table.get(value) if table is not None else None
        if entry is not None:
            rows.append(
                {
                    "account": profile.subject.name,
                    "kind": kind,
                    "value": value[:255],
                    "first_seen": at(entry.first_seen),
                    "last_seen": at(entry.last_seen),
                    "seen": entry.seen,
                    "confirmed": entry.confirmed,
                    "host": host,
                }
            )
    return rows


def read_profiles(
    connection: Connection, subjects: list[Subject] | None, recipients: bool
) -> dict[Subject, Profile]:
    """The stored profiles of ``subjects`` (None: all), known recipients only if asked."""
    s, b, o, r = schema.subjects, schema.baselines, schema.origins, schema.recipients
    subject_query, baseline_query = select(s), select(b)
    origin_query = select(o).order_by(o.c.last_seen)
    recipient_query = select(r).order_by(r.c.last_seen)
    if subjects is not None:
        accounts = [name for kind, name, _ in subjects if kind == "account"]
        subject_query = subject_query.where(tuple_(s.c.kind, s.c.name, s.c.scope).in_(subjects))
        baseline_query = baseline_query.where(tuple_(b.c.kind, b.c.name, b.c.scope).in_(subjects))
        origin_query = origin_query.where(o.c.account.in_(accounts))
        recipient_query = recipient_query.where(tuple_(r.c.kind, r.c.name, r.c.scope).in_(subjects))
    found: dict[Subject, Profile] = {}
    for row in connection.execute(subject_query):
        subject = Subject(row.kind, row.name, row.scope)
        profile = Profile(subject, when(row.first_seen).timestamp())
        profile.last_seen = when(row.last_seen).timestamp()
        profile.learned = bool(row.learned)
        if row.last_incident is not None:
            profile.last_incident = when(row.last_incident).timestamp()
        found[subject] = profile
    for row in connection.execute(baseline_query):
        owner = found.get(Subject(row.kind, row.name, row.scope))
        slot = slot_of(row.metric, row.span)
        if owner is not None and slot is not None:
            owner.peaks[slot] = float(row.peak)
            owner.peak_times[slot] = when(row.peak_at).timestamp()
    by_account = {p.subject.name: p for p in found.values() if p.subject.kind == "account"}
    for row in connection.execute(origin_query):
        owner = by_account.get(row.account)
        if owner is not None:
            owner.origins.setdefault(row.kind, ordered())[row.value] = Origin(
                when(row.first_seen).timestamp(),
                when(row.last_seen).timestamp(),
                int(row.seen),
                bool(row.confirmed),
            )
    if recipients:  # oldest first, as sightings keep them; past the cap the oldest go
        for row in connection.execute(recipient_query):
            owner = found.get(Subject(row.kind, row.name, row.scope))
            if owner is not None:
                known = owner.recipients
                known[int(row.digest)] = when(row.last_seen).timestamp()
                if len(known) > RECIPIENT_CAP:
                    known.popitem(last=False)
    return found


def slot_name(slot: int) -> tuple[str, str]:
    if slot == NEW_SHARE:
        return "new_share", "24h"
    if slot >= DOMAINS:
        return "domains", DOMAIN_SPANS[slot - DOMAINS]
    return METRICS[slot // 3], WINDOW_NAMES[slot % 3]


def slot_of(metric: str, span: str) -> int | None:
    if metric == "new_share":
        return NEW_SHARE
    if metric == "domains":
        return DOMAINS + DOMAIN_SPANS.index(span) if span in DOMAIN_SPANS else None
    if metric in METRICS and span in WINDOW_NAMES:
        return METRICS.index(metric) * 3 + WINDOW_NAMES.index(span)
    return None


def ordered() -> OrderedDict[str, Any]:
    """A fresh origins table of a profile (oldest first)."""
    return OrderedDict()


def earliest(column: Any, new: Any) -> Any:
    return case((column.is_(None), new), (new < column, new), else_=column)


def latest(column: Any, new: Any) -> Any:
    return case((column.is_(None), new), (new > column, new), else_=column)


def merge_seen(table: Table, excluded: Any) -> dict[str, Any]:
    merged = {
        "first_seen": earliest(table.c.first_seen, excluded.first_seen),
        "last_seen": latest(table.c.last_seen, excluded.last_seen),
    }
    if "confirmed" in table.c:
        merged["confirmed"] = or_(table.c.confirmed, excluded.confirmed)
        merged["seen"] = case((excluded.seen > table.c.seen, excluded.seen), else_=table.c.seen)
    return merged


def merge_subjects(table: Table, excluded: Any) -> dict[str, Any]:
    return {
        "first_seen": earliest(table.c.first_seen, excluded.first_seen),
        "last_seen": latest(table.c.last_seen, excluded.last_seen),
        "learned": or_(table.c.learned, excluded.learned),
        "last_incident": case(
            (excluded.last_incident.is_(None), table.c.last_incident),
            else_=latest(table.c.last_incident, excluded.last_incident),
        ),
    }


def incident_row(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "host": incident.host,
        "subject_kind": incident.subject.kind,
        "subject": incident.subject.name,
        "scope": incident.subject.scope,
        "state": incident.state,
        "severity": incident.severity,
        "score": incident.score,
        "opened_at": incident.opened,
        "updated_at": incident.updated,
        "closed_at": incident.closed,
        "reasons": [reason.to_json() for reason in incident.reasons],
        "evidence": incident.evidence,
    }


def incident_from_row(row: Any) -> Incident:
    incident = Incident(
        row.id, Subject(row.subject_kind, row.subject, row.scope), row.host, when(row.opened_at)
    )
    incident.updated = when(row.updated_at)
    incident.closed = utc(row.closed_at)
    incident.state = row.state
    incident.severity = row.severity
    incident.score = int(row.score)
    incident.reasons = tuple(
        Reason(r["signal"], r["detail"], int(r["points"])) for r in row.reasons or ()
    )
    incident.evidence = dict(row.evidence or {})
    return incident


def volume_row(volume: HourVolume) -> Row:
    kind, name, scope = volume.subject
    return {
        "host": volume.host[:255],
        "hour": volume.hour,
        "subject_kind": kind,
        "subject": name[:320],
        "scope": scope[:255],
        "messages": volume.messages,
        "recipients": volume.recipients,
    }


def volume_from_row(row: Any) -> HourVolume:
    return HourVolume(
        row.host,
        when(row.hour),
        Subject(row.subject_kind, row.subject, row.scope),
        int(row.messages),
        int(row.recipients),
    )


def add_counts(table: Table, excluded: Any) -> dict[str, Any]:
    """Volumes add up: a batch brings the counts since the last one."""
    return {
        "messages": table.c.messages + excluded.messages,
        "recipients": table.c.recipients + excluded.recipients,
    }
