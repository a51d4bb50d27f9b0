"""Reader for annotated sample files: each log line is preceded by a ``# TAG: {json}`` comment
holding what the line must give (fail2ban's ``# failJSON:`` idea)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple


class Sample(NamedTuple):
    path: Path
    lineno: int
    text: str
    expected: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.path.name}:{self.lineno}"


def read_samples(path: Path, tag: str) -> Iterator[Sample]:
    """Yield each annotated line of ``path``; an annotation without a line after it is an error."""
    marker = f"# {tag}:"
    pending: dict[str, Any] | None = None
    with path.open(encoding="utf-8") as stream:
        for lineno, raw in enumerate(stream, 1):
            text = raw.rstrip("\n")
            if text.startswith(marker):
                pending = json.loads(text[len(marker) :])
            elif not text.strip() or text.startswith("#"):
                continue
            elif pending is not None:
                yield Sample(path, lineno, text, pending)
                pending = None
            else:
                raise AssertionError(f"{path.name}:{lineno}: log line without a '{marker}' comment")
    if pending is not None:
        raise AssertionError(f"{path.name}: '{marker}' comment at the end without a line")
