"""Building a :class:`~postwatch.report.model.Report` from log files, and the rows both
sources share (incidents, worst severities, the top-N cut, baselines).

The replay pipeline runs with a detector writing to a scratch in-memory store and a
:class:`~postwatch.report.collect.Collector` beside it: the incidents and learned baselines
come from that store, the volumes from the collector.  The detector sees the whole of the
files (the lines before the window are history); the report counts the window.
From the state store: :mod:`postwatch.report.stored`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime

from postwatch.clock import Clock
from postwatch.config import Settings
from postwatch.detect import Detector
from postwatch.detect.incidents import Incident
from postwatch.detect.profiles import METRICS, WINDOW_NAMES, Profile
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.records import LogLine
from postwatch.report.collect import Collector, Tee, Volume
from postwatch.report.model import (
    SEVERITY_ORDER,
    AccountRow,
    AttackerRow,
    Baseline,
    IncidentRow,
    LockRow,
    PickupRow,
    Report,
    share,
)
from postwatch.report.window import Window, chart_bins, series
from postwatch.store import Store

PEAK_24H = METRICS.index("messages") * len(WINDOW_NAMES) + WINDOW_NAMES.index("24h")
MIN_HISTORY_DAYS = 1.0  # a shorter history gives no per-day average
MIN_HISTORY_OUTCOMES = 10  # fewer delivery outcomes give no deferred/bounced share
EVIDENCE_ITEMS = 10


def report_from_logs(
    lines: Iterable[LogLine],
    *,
    settings: Settings,
    window: Window,
    clock: Clock,
    geo: Geo,
    locks: Sequence[LockRow] = (),
    top: int = 20,
    notes: Sequence[str] = (),
) -> Report:
    """Replay ``lines`` through the pipeline and report on the window."""
    store = Store("sqlite:///:memory:", flush_interval=3600.0, batch_size=10_000)
    try:
        detector = Detector(settings.detect, store, geo, clock)
        collector = Collector(window)
        pipeline = Pipeline(detector=Tee(collector, detector))
        pipeline.run(lines)
        pipeline.close()
        incidents = incident_rows(store.incidents(), window)
    finally:
        store.close()
    extra = list(notes)
    if pipeline.errors:
        extra.append(f"{sum(pipeline.errors.values())} lines could not be processed")
    extra += [
        f"more than {count} {table} in the window: the report covers the first ones"
        for table, count in sorted(collector.overflow.items())
    ]
    end = window.end or collector.last_seen
    bins_start, bin_hours, bins = chart_bins(window.start or collector.first_seen, end)
    severities = worst_by_subject(incidents)
    locked = {row.account for row in locks}
    history_days = 0.0
    if window.start is not None and collector.first_seen is not None:
        history_days = max(0.0, (window.start - collector.first_seen).total_seconds() / 86400)
    rows = []
    for name, volume in collector.accounts.items():
        history = collector.history.get(name) or Volume()
        rows.append(
            AccountRow(
                account=name,
                messages=volume.messages,
                recipients=volume.recipients,
                unique_recipients=len(volume.recipient_digests),
                ips=tuple(ip for ip, _ in volume.ips.most_common()),
                ip_count=len(volume.ips),
                countries=_countries(geo, volume.ips),
                outcomes=volume.outcomes,
                deferred=volume.deferred,
                bounced=volume.bounced,
                # the scratch detector learned from the window itself: its peaks are no baseline
                baseline=baseline_of(history, history_days, None, end, settings),
                hourly=series(volume.hours, bins_start, bin_hours, bins),
                severity=severities.get(("account", name), ""),
                locked=name in locked,
            )
        )
    rows.sort(key=lambda row: (-(row.messages or 0), row.account))
    return Report(
        generated=clock.now(),
        source="logs",
        window=window,
        first_seen=collector.first_seen,
        last_seen=collector.last_seen,
        hosts=tuple(sorted(collector.hosts)),
        lines=collector.lines,
        accounts=top_rows(rows, top, severities, locked),
        accounts_total=len(rows),
        incidents=tuple(incidents),
        locks=tuple(locks),
        attackers=_attackers(collector, geo, severities, top),
        pickups=_pickups(collector, severities),
        bins_start=bins_start,
        bin_hours=bin_hours,
        notes=tuple(extra),
    )


# --- incidents -------------------------------------------------------------------------


def incident_rows(incidents: Iterable[Incident], window: Window) -> list[IncidentRow]:
    rows = []
    for incident in incidents:
        closed = incident.closed if incident.state == "closed" else None
        if not window.overlaps(incident.opened, closed):
            continue
        evidence = incident.evidence or {}
        counts = evidence.get("counts")
        rows.append(
            IncidentRow(
                id=incident.id,
                subject_kind=incident.subject.kind,
                subject=incident.subject.name,
                scope=incident.subject.scope,
                host=incident.host,
                state=incident.state,
                severity=incident.severity,
                score=incident.score,
                opened=incident.opened,
                updated=incident.updated,
                closed=closed,
                reasons=tuple((r.signal, r.detail, r.points) for r in incident.reasons),
                ips=_strings(evidence.get("ips")),
                countries=_strings(evidence.get("countries")),
                helos=_strings(evidence.get("helos")),
                queue_ids=_strings(evidence.get("queue_ids")),
                counts=tuple(
                    (str(name), int(value))
                    for name, value in (counts.items() if isinstance(counts, dict) else ())
                    if isinstance(value, int | float) and not isinstance(value, bool)
                ),
            )
        )
    rows.sort(
        key=lambda row: (row.state != "open", -SEVERITY_ORDER.get(row.severity, 0), row.opened)
    )
    return rows


def incident_count(incident: IncidentRow, name: str) -> int | None:
    """A count from the incident's evidence (``auth_failures_1h`` ...), None if absent."""
    return dict(incident.counts).get(name)


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(item) for item in value[:EVIDENCE_ITEMS])


def worst_by_subject(incidents: Iterable[IncidentRow]) -> dict[tuple[str, str], str]:
    worst: dict[tuple[str, str], str] = {}
    for incident in incidents:
        # a uid is per host: uid 33 on one web server is not uid 33 on another
        name = f"{incident.subject}@{incident.scope}" if incident.scope else incident.subject
        key = (incident.subject_kind, name)
        if SEVERITY_ORDER.get(incident.severity, 0) > SEVERITY_ORDER.get(worst.get(key, ""), 0):
            worst[key] = incident.severity
    return worst


# --- rows ------------------------------------------------------------------------------


def top_rows(
    rows: list[AccountRow], top: int, severities: dict[tuple[str, str], str], locked: set[str]
) -> tuple[AccountRow, ...]:
    """The first ``top`` rows, and every row with an incident or a lock after them."""
    chosen = rows[:top]
    chosen += [
        row for row in rows[top:] if ("account", row.account) in severities or row.account in locked
    ]
    return tuple(chosen)


def baseline_of(
    history: Volume | None,
    days: float,
    profile: Profile | None,
    end: datetime | None,
    settings: Settings,
) -> Baseline:
    peak = None
    if profile is not None and profile.peaks[PEAK_24H]:
        now = end.timestamp() if end else profile.last_seen
        peak = round(profile.peak(PEAK_24H, now, settings.detect.baseline_half_life), 1)
    if history is None or days < MIN_HISTORY_DAYS:
        return Baseline(days=round(days, 2), peak_messages_24h=peak)
    enough = history.outcomes >= MIN_HISTORY_OUTCOMES
    return Baseline(
        days=round(days, 2),
        messages_per_day=round(history.messages / days, 1),
        deferred_share=share(history.deferred, history.outcomes) if enough else None,
        bounced_share=share(history.bounced, history.outcomes) if enough else None,
        peak_messages_24h=peak,
    )


def _countries(geo: Geo, ips: Counter[str]) -> tuple[str, ...]:
    by_country: Counter[str] = Counter()
    for ip, count in ips.items():
        if ip:
            country = geo.lookup(ip).country
            if country:
                by_country[country] += count
    return tuple(country for country, _ in by_country.most_common())


def _attackers(
    collector: Collector, geo: Geo, severities: dict[tuple[str, str], str], top: int
) -> tuple[AttackerRow, ...]:
    ranked = sorted(
        collector.attackers.items(),
        key=lambda item: (-(item[1].failures + item[1].relay_denied), item[0]),
    )
    chosen = ranked[:top] + [item for item in ranked[top:] if ("ip", item[0]) in severities]
    rows = []
    for ip, attempts in chosen:
        info = geo.lookup(ip)
        rows.append(
            AttackerRow(
                ip=ip,
                country="local" if info.local else info.country,
                asn=info.asn,
                failures=attempts.failures,
                usernames=len(attempts.usernames),
                sample_usernames=tuple(attempts.samples),
                relay_denied=attempts.relay_denied,
                severity=severities.get(("ip", ip), ""),
            )
        )
    return tuple(rows)


def _pickups(collector: Collector, severities: dict[tuple[str, str], str]) -> tuple[PickupRow, ...]:
    rows = [
        PickupRow(
            host=host,
            uid=uid,
            messages=volume.messages,
            recipients=volume.recipients,
            senders=len(volume.senders),
            top_senders=tuple(sender for sender, _ in volume.senders.most_common(5)),
            outcomes=volume.outcomes,
            deferred=volume.deferred,
            bounced=volume.bounced,
            severity=severities.get(("uid", f"{uid}@{host}"), ""),
        )
        for (host, uid), volume in collector.pickups.items()
    ]
    return tuple(sorted(rows, key=lambda row: (-(row.messages or 0), row.host, row.uid)))
