"""Small hand-checked logs through the whole pipeline: the alerts in each golden file, no more.

Each ``fixtures/maillogs/detect/<name>.log`` (real line shapes, see ATTRIBUTION.md there) is
read, parsed, correlated and fed to a detector; ``<name>.golden.json`` lists the alerts it
must raise (first severity and signals among the reasons) and subjects that must stay quiet.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import pytest

from postwatch.clock import SteppedClock
from postwatch.config import DetectSettings
from postwatch.detect import Alert, Detector
from postwatch.geo import Geo
from postwatch.pipeline import Pipeline
from postwatch.sources.files import read_lines

DETECT = Path(__file__).resolve().parents[1] / "fixtures" / "maillogs" / "detect"
CASES = sorted(path.stem for path in DETECT.glob("*.log"))


def replay(path: Path) -> list[Alert]:
    """Run one log through parse, correlate and detect; return the alerts."""
    alerts: list[Alert] = []
    detector = Detector(DetectSettings(hostnames=("mx.example.org",)), None, Geo(), SteppedClock())
    pipeline = Pipeline(detector=detector, on_alert=alerts.append)
    pipeline.run(read_lines([str(path)], tz=UTC, year=2026))
    pipeline.close()
    assert not pipeline.errors, pipeline.errors
    return alerts


def test_every_fixture_has_a_golden_file() -> None:
    """No log without its expectations, and the set is not empty."""
    assert CASES
    for name in CASES:
        assert (DETECT / f"{name}.golden.json").is_file(), name


@pytest.mark.parametrize("name", CASES)
def test_fixture_raises_exactly_its_golden_alerts(name: str) -> None:
    """The first alert per subject matches the golden file; quiet subjects stay quiet."""
    golden = json.loads((DETECT / f"{name}.golden.json").read_text(encoding="utf-8"))
    alerts = replay(DETECT / f"{name}.log")
    first: dict[tuple[str, str], Alert] = {}
    for alert in alerts:
        first.setdefault((alert.subject_kind, alert.subject), alert)
    expected = {(item["subject_kind"], item["subject"]): item for item in golden["alerts"]}
    assert set(first) == set(expected)
    for key, item in expected.items():
        alert = first[key]
        assert alert.severity == item["severity"], key
        assert set(item["signals"]) <= {reason.signal for reason in alert.reasons}, key
    quiet = set(golden["quiet"])
    assert not [alert for alert in alerts if alert.subject in quiet]
