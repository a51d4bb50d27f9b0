"""The parser turns every annotated sample line into the event its annotation describes."""

from __future__ import annotations

import json
import re
from datetime import UTC
from typing import Any

import pytest
from annotated import read_samples
from conftest import MAILLOGS

from postwatch.parse import PATTERN_NAMES, Parser
from postwatch.parse.syslog import Framer

SAMPLE_DIR = MAILLOGS / "samples"
SAMPLE_FILES = sorted(SAMPLE_DIR.glob("*.log"))
SAMPLES = [sample for path in SAMPLE_FILES for sample in read_samples(path, "event")]
LINE_KEYS = ("program", "pid", "host", "ts")
PARSER = Parser()


def frame(text: str):
    return Framer(tz=UTC, year=2026)(text)


def plain(value: Any) -> Any:
    """A value as JSON gives it back (tuples become lists)."""
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("sample", SAMPLES, ids=[sample.id for sample in SAMPLES])
@pytest.mark.parametrize("parser", [PARSER, Parser(native=False)], ids=["native", "python"])
def test_annotated_sample(sample, parser):
    """Each sample line gives the event kind and the field values its annotation lists, with
    the C shapes and in Python alone."""
    line = frame(sample.text)
    parser(line)  # a counter text is memoised by its first reading, the C shapes use it then
    event = parser(line)
    expected = dict(sample.expected)
    assert event.kind == expected.pop("kind"), sample.id
    for key, want in expected.items():
        if key in LINE_KEYS:
            got = line.ts.isoformat() if key == "ts" else getattr(line, key)
        else:
            got = getattr(event, key)
        assert plain(got) == want, f"{sample.id}: {key}"


def test_every_pattern_has_a_sample():
    """Every named pattern claims at least one annotated sample line."""
    claimed = {PARSER.pattern_name(frame(sample.text)) for sample in SAMPLES}
    assert sorted(set(PATTERN_NAMES) - claimed) == []


def test_samples_are_claimed_by_listed_patterns_only():
    """A sample line is claimed by a pattern of PATTERN_NAMES or left unparsed, nothing else."""
    claimed = {PARSER.pattern_name(frame(sample.text)) for sample in SAMPLES}
    assert claimed <= {*PATTERN_NAMES, "unparsed"}
    assert len(PATTERN_NAMES) == len(set(PATTERN_NAMES))


def test_events_have_every_field_of_their_type():
    """Events built field by field carry exactly the fields their type declares."""
    for sample in SAMPLES:
        event = PARSER(frame(sample.text))
        assert len(event) == len(type(event)._fields), sample.id


def test_every_sample_block_names_its_source():
    """Each sample line sits under a source or shape comment whose folder ATTRIBUTION.md lists."""
    attribution = (SAMPLE_DIR / "ATTRIBUTION.md").read_text(encoding="utf-8")
    label = re.compile(r"# (?:source|shape from): ([\w.-]+)/")
    for path in SAMPLE_FILES:
        source = None
        for lineno, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found = label.match(text)
            if found:
                source = found.group(1)
                if text.startswith("# source:"):
                    assert f"`{source}/" in attribution, f"{path.name}:{lineno}: {source}"
            elif text and not text.startswith("#"):
                assert source is not None, f"{path.name}:{lineno}: no source comment above"
