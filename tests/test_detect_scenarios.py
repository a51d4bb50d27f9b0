"""The quality target, on the scenario builder's logs and golden files (``bench/scenarios``).

Each case is four days of an ordinary population, then a fifth with abuse or a look-alike.
Every abusive subject must be alerted; nothing else may be, on any day; and a stolen-password
burst must be stopped early: at most 10 spam messages accepted between its first message
and the alert (median over the burst cases, seeds 1 to 3).
"""

from __future__ import annotations

import json
import statistics
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bench.scenarios import ABUSIVE, LOOKALIKES, build_scenario
from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Alert, Detector
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.records import Accepted
from postwatch.sources.files import read_lines

GOLDENS = Path(__file__).resolve().parents[1] / "fixtures" / "maillogs" / "scenarios"
BURST_SEEDS = (1, 2, 3)


class Outcome(NamedTuple):
    golden: dict[str, Any]
    alerts: list[Alert]
    accepted: dict[str, datetime]  # queue ID -> time it entered the queue


class Recording:
    """A detector wrapper that remembers when each message was accepted."""

    def __init__(self, detector: Detector) -> None:
        self.detector = detector
        self.accepted: dict[str, datetime] = {}

    def feed(self, item: object) -> list[Alert]:
        if type(item) is Accepted:
            self.accepted.setdefault(item.message.queue_id, item.ts)
        return self.detector.feed(item)

    def close(self, now: datetime | None) -> list[Alert]:
        return self.detector.close(now)


def run_case(case: str, seed: int, folder: Path) -> Outcome:
    log = build_scenario(case, seed, folder)
    golden = json.loads(log.with_name(f"{case}.golden.json").read_text(encoding="utf-8"))
    recording = Recording(Detector(DetectSettings(), None, Geo(), SteppedClock()))
    alerts: list[Alert] = []
    pipeline = Pipeline(detector=recording, on_alert=alerts.append)
    pipeline.run(read_lines([str(log)], tz=UTC))
    pipeline.close()
    log.unlink()  # the logs are large; only the results are kept
    return Outcome(golden, alerts, recording.accepted)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int], Outcome]:
    folder = tmp_path_factory.mktemp("scenarios")
    runs = [(case, 1) for case in ABUSIVE + LOOKALIKES]
    runs += [("burst", seed) for seed in BURST_SEEDS if seed != 1]
    return {(case, seed): run_case(case, seed, folder / f"{case}-{seed}") for case, seed in runs}


def leaked(outcome: Outcome, entry: dict[str, Any]) -> int:
    """Abusive messages accepted up to the subject's first alert."""
    key = (entry["subject_kind"], entry["subject"])
    alert = next(a for a in outcome.alerts if (a.subject_kind, a.subject) == key)
    return sum(
        1
        for queue_id in entry["queue_ids"]
        if queue_id in outcome.accepted and outcome.accepted[queue_id] <= alert.ts
    )


def test_builder_goldens_match_the_committed_ones(outcomes: dict[tuple[str, int], Outcome]) -> None:
    """The logs tested are the ones the committed golden files describe."""
    for case in ABUSIVE + LOOKALIKES:
        committed = json.loads((GOLDENS / f"{case}.golden.json").read_text(encoding="utf-8"))
        built = outcomes[(case, 1)].golden
        assert built["abusive"] == committed["abusive"], case
        assert built["lookalikes"] == committed["lookalikes"], case


@pytest.mark.parametrize("case", ABUSIVE)
def test_every_abusive_subject_is_alerted_and_nothing_else(
    outcomes: dict[tuple[str, int], Outcome], case: str
) -> None:
    """Each abusive subject of the case gets an alert; no other subject gets one."""
    outcome = outcomes[(case, 1)]
    abusive = {(e["subject_kind"], e["subject"]) for e in outcome.golden["abusive"]}
    alerted = {(a.subject_kind, a.subject) for a in outcome.alerts}
    assert abusive and abusive <= alerted
    assert alerted == abusive, f"false alerts: {sorted(alerted - abusive)}"


@pytest.mark.parametrize("case", LOOKALIKES)
def test_lookalikes_raise_no_alert_at_all(
    outcomes: dict[tuple[str, int], Outcome], case: str
) -> None:
    """Newsletter, traveller, mobile, office NAT and webmail: not one alert, any day."""
    outcome = outcomes[(case, 1)]
    assert outcome.golden["lookalikes"]
    assert [(a.subject_kind, a.subject, a.severity) for a in outcome.alerts] == []


def test_failed_logins_never_lock_the_targeted_accounts(
    outcomes: dict[tuple[str, int], Outcome],
) -> None:
    """Accounts that were only guessed at get no alert (their attackers' IPs do)."""
    for case in ("brute_force", "credential_stuffing"):
        outcome = outcomes[(case, 1)]
        targets = set(outcome.golden["lookalikes"])
        assert targets
        assert not [a for a in outcome.alerts if a.subject in targets]


def test_bursts_are_stopped_within_ten_messages(outcomes: dict[tuple[str, int], Outcome]) -> None:
    """Median over the burst cases: at most 10 spam messages accepted before the alert;
    and every burst escalates until the account is lockable (critical)."""
    counts = []
    for seed in BURST_SEEDS:
        outcome = outcomes[("burst", seed)]
        entry = outcome.golden["abusive"][0]
        counts.append(leaked(outcome, entry))
        severities = [a.severity for a in outcome.alerts if a.subject == entry["subject"]]
        assert "critical" in severities, (seed, severities)
    assert statistics.median(counts) <= 10, counts


def test_only_alerts_on_a_subjects_own_activity_may_lock_it(
    outcomes: dict[tuple[str, int], Outcome],
) -> None:
    """Every stolen account ends with a lockable alert; no IP alert and no alert about a
    merely attacked account is ever lockable."""
    for (case, _seed), outcome in outcomes.items():
        for alert in outcome.alerts:
            if alert.subject_kind == "ip" or alert.subject in outcome.golden["lookalikes"]:
                assert not alert.lockable, (case, alert.subject)
    for seed in BURST_SEEDS:
        outcome = outcomes[("burst", seed)]
        victim = outcome.golden["abusive"][0]["subject"]
        assert any(a.lockable for a in outcome.alerts if a.subject == victim)
