"""The TOML side of the config file: typed values out of its tables, every error located.

A section parser (``postwatch.config``, ``postwatch.actions.settings``) reads its table
through a :class:`TableReader`, asking for each key as the type it needs.  Every problem
becomes one :class:`~postwatch.errors.ConfigError` naming the file, the line and the
dotted key (``file:line: key: message``).  :mod:`tomllib` keeps no positions, so
:func:`find_key_line` finds the line in the TOML text itself.  Durations are seconds or
``"90s"``, ``"5m"``, ``"6h"``, ``"2d"``, ``"1w"`` (:func:`parse_duration`).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from postwatch.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_text(path: str | Path) -> str:
    """The text of the config file at ``path``; a ConfigError naming it if unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", path=str(path)) from exc


_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def parse_toml(text: str, path: str) -> dict[str, Any]:
    """The tables of TOML ``text``; a syntax error is a ConfigError with its line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_LINE.search(message)
        line = int(match.group(1)) if match else None
        raise ConfigError(_TOML_LINE.sub("", message).strip(), path=path, line=line) from exc


class TableReader:
    """Reads typed values out of one table, turning each problem into a located ConfigError.

    Every key asked for is marked used; :meth:`check_unknown` then rejects the rest, so a
    typo never passes silently.
    """

    def __init__(self, path: str, text: str, data: Mapping[str, Any], where: tuple[str, ...]):
        self.path, self.text, self.data, self.where = path, text, data, where
        self.used: set[str] = set()

    def fail(self, message: str, *keys: str) -> ConfigError:
        keypath = (*self.where, *keys)
        return ConfigError(
            message, path=self.path, line=find_key_line(self.text, keypath), key=".".join(keypath)
        )

    def sub(self, key: str) -> TableReader:
        value = self.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail("must be a table", key)
        return TableReader(self.path, self.text, value, (*self.where, key))

    def get(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        return self.data.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.data

    def number(self, key: str, default: float, *, minimum: float = 0) -> float:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            raise self.fail(f"must be a number >= {minimum:g}, not {value!r}", key)
        return float(value)

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(f"must be an integer >= {minimum}, not {value!r}", key)
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"must be true or false, not {value!r}", key)
        return value

    def duration(self, key: str, default: float) -> float:
        value = self.get(key, default)
        seconds = parse_duration(value)
        if seconds is None:
            raise self.fail(f'must be a duration like 90, "5m", "6h" or "2d", not {value!r}', key)
        return seconds

    def strings(self, key: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail("must be a list of strings", key)
        return tuple(value)

    def networks(self, key: str) -> tuple[IPNetwork, ...]:
        out = []
        for text in self.strings(key):
            try:
                out.append(ipaddress.ip_network(text, strict=False))
            except ValueError as exc:
                raise self.fail(f"not an IP network: {text!r}", key) from exc
        return tuple(out)

    def paths(self, key: str) -> tuple[Path, ...]:
        return tuple(Path(item) for item in self.strings(key))

    def check_unknown(self) -> None:
        for key in self.data:
            if key not in self.used:
                raise self.fail("unknown setting", key)


_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*\Z")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"5m"``, ``"6h"``, ``"2d"``, ``"1w"``; None if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _UNIT[match.group(2)]
    return None


# --- finding the line of a key -------------------------------------------------------

_HEADER = re.compile(r"\s*\[\[?\s*(.+?)\s*\]\]?\s*(?:#.*)?\Z")
_ASSIGN = re.compile(
    r"\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')"
    r"(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)
_KEY_PART = re.compile(r"[A-Za-z0-9_-]+|\"([^\"]*)\"|'([^']*)'")


def _split_key(text: str) -> tuple[str, ...]:
    parts = []
    for match in _KEY_PART.finditer(text):
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        parts.append(quoted if quoted is not None else match.group(0))
    return tuple(parts)


def find_key_line(text: str, keypath: tuple[str, ...]) -> int | None:
    """The 1-based line that sets ``keypath`` (or its closest enclosing key or table)."""
    best_line, best_depth = None, 0
    table: tuple[str, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and not _ASSIGN.match(line):
            table = _split_key(header.group(1))
            candidate = table
        else:
            assign = _ASSIGN.match(line)
            if not assign:
                continue
            candidate = (*table, *_split_key(assign.group(1)))
            if len(candidate) < len(keypath) and _inline_has(line, keypath[len(candidate) :]):
                candidate = keypath
        depth = len(candidate)
        if candidate == keypath[:depth] and depth > best_depth:
            best_line, best_depth = number, depth
    return best_line


def _inline_has(line: str, rest: tuple[str, ...]) -> bool:
    """Whether an inline table or array on ``line`` mentions the remaining key parts."""
    value = line.split("=", 1)[1]
    return all(re.search(rf"(?<![\w-]){re.escape(part)}\s*=", value) for part in rest)
