"""``postwatch config check``: validate a config file and print the settings in effect.

The file is read by the same section parsers that ``watch``, ``report`` and the action
commands use, through a reader that notes every key a parser asks for and the value it gets
(the file's, or the default).  So the printed settings are exactly what postwatch runs with,
in the file's own key names; ``# default`` marks the keys the file leaves out.  Optional
tables the file does not have (``[actions.sql]`` ...) are not printed: they are off.

After parsing, the objects a running postwatch would build are built too (without running
anything): Apprise must understand every notification URL, MaxMind files must open, lock
backends must accept their settings.  The first problem is one line, ``file:line: key:
message``, on stderr, with exit status 2.  Passwords in database URLs and every Apprise URL
(tokens live anywhere in them) are hidden in the output.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import click

from postwatch.actions.commands import DEFAULT_CONFIG
from postwatch.actions.settings import ActionsSettings, build_locks
from postwatch.config import SECTION_PARSERS, Settings
from postwatch.configfile import TableReader, find_key_line, parse_toml, read_text
from postwatch.errors import ConfigError, PostwatchError
from postwatch.geo import Geo

KeyPath = tuple[str, ...]
SECRET_URL_KEYS = {("store", "url"), ("actions", "journal"), ("actions", "sql", "url")}
APPRISE_KEYS = ("urls",)  # under actions.notify and actions.notify.severity
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


class Read(NamedTuple):
    """One key a parser read: its value and whether the file set it."""

    value: Any
    given: bool


class CheckedConfig(NamedTuple):
    settings: Settings
    actions: ActionsSettings
    effective: dict[KeyPath, Read]


class _NotingReader(TableReader):
    """The config reader, noting every key read into ``effective``."""

    def __init__(
        self,
        path: str,
        text: str,
        data: Mapping[str, Any],
        where: tuple[str, ...],
        effective: dict[KeyPath, Read],
    ) -> None:
        super().__init__(path, text, data, where)
        self.effective = effective

    def sub(self, key: str) -> _NotingReader:
        value = self.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail("must be a table", key)
        return _NotingReader(self.path, self.text, value, (*self.where, key), self.effective)

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        if not isinstance(value, Mapping):
            self.effective[(*self.where, key)] = Read(value, key in self.data)
        return value


def section_parsers() -> dict[str, Callable[[Any], Any]]:
    """Every top-level table's parser (``[actions]`` included)."""
    return dict(SECTION_PARSERS)


def check_config(path: str | Path, *, build: bool = True) -> CheckedConfig:
    """Parse ``path`` noting every key, then (``build``) build what a run would build."""
    name = str(path)
    text = read_text(path)
    data = parse_toml(text, name)
    effective: dict[KeyPath, Read] = {}
    root = _NotingReader(name, text, data, (), effective)
    sections = {key: parser(root.sub(key)) for key, parser in section_parsers().items()}
    root.check_unknown()
    known = {field for field in Settings.__dataclass_fields__ if field != "path"}
    settings = Settings(path=name, **{k: v for k, v in sections.items() if k in known})
    checked = CheckedConfig(settings, sections["actions"], effective)
    if build:
        _build(checked, text, name)
    return checked


def load_config(path: str | Path | None) -> tuple[Settings, ActionsSettings]:
    """Settings and ``[actions]`` of ``path`` (None: the defaults), checked like ``check``."""
    if path is None:
        return Settings(), ActionsSettings()
    checked = check_config(path)
    return checked.settings, checked.actions


def _build(checked: CheckedConfig, text: str, name: str) -> None:
    """Build the notifier, the geography and the lock backends; locate any complaint."""
    from postwatch.actions.notify import AppriseSender

    actions = checked.actions
    try:
        if actions.notify is not None:
            AppriseSender(actions.notify.urls, actions.notify.per_severity)
        for lock in build_locks(actions):
            engine = getattr(lock, "engine", None)
            if engine is not None:
                engine.dispose()
    except ConfigError as exc:
        raise _located(exc, checked.effective, text, name) from exc
    geo = Geo.from_settings(checked.settings.geo, checked.settings.detect)
    try:
        geo.open()
    except ConfigError as exc:
        keypath = ("geo", "mmdb")
        raise ConfigError(
            _bare(exc), path=name, line=find_key_line(text, keypath), key=".".join(keypath)
        ) from exc
    finally:
        geo.close()


def _located(exc: ConfigError, effective: dict[KeyPath, Read], text: str, name: str) -> Exception:
    """A builder's error (``key="type"``) with the file, line and full key of the setting."""
    tail = tuple((exc.key or "").split("."))
    candidates = [
        keypath
        for keypath, read in effective.items()
        if keypath[0] == "actions" and keypath[-len(tail) :] == tail and read.given
    ]
    keypath = candidates[0] if candidates else ("actions",)
    return ConfigError(
        _bare(exc), path=name, line=find_key_line(text, keypath), key=".".join(keypath)
    )


def _bare(exc: ConfigError) -> str:
    """The message of ``exc`` without its ``file:line: key:`` prefix."""
    text = str(exc)
    where = ":".join(str(part) for part in (exc.path, exc.line) if part is not None)
    if where and text.startswith(f"{where}: "):
        text = text[len(where) + 2 :]
    if exc.key and text.startswith(f"{exc.key}: "):
        text = text[len(exc.key) + 2 :]
    return text


# --- showing -----------------------------------------------------------------------------


def hidden(keypath: KeyPath, value: Any) -> Any:
    """``value`` fit to print: database passwords and Apprise URLs hidden."""
    if keypath in SECRET_URL_KEYS and isinstance(value, str) and value:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(value).render_as_string(hide_password=True)
        except ArgumentError:
            return "(hidden)"
    if keypath[:2] == ("actions", "notify") and _urls(keypath):
        items = value if isinstance(value, list) else [value]
        return [_apprise_name(item) for item in items]
    return value


def _urls(keypath: KeyPath) -> bool:
    return keypath[-1] in APPRISE_KEYS or (len(keypath) == 4 and keypath[2] == "severity")


def _apprise_name(url: object) -> str:
    scheme, sep, _rest = str(url).partition("://")
    return f"{scheme}://(hidden)" if sep else "(hidden)"


def _toml_key(part: str) -> str:
    return part if _BARE_KEY.match(part) else json.dumps(part)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(str(k))} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(value), ensure_ascii=False)


def render_effective(checked: CheckedConfig) -> str:
    """The settings in effect as TOML, one table after the other, defaults marked."""
    tables: dict[KeyPath, list[tuple[str, Read]]] = {}
    for keypath, read in checked.effective.items():
        tables.setdefault(keypath[:-1], []).append((keypath[-1], read))
    out = [f"# settings in effect for {checked.settings.path}; '# default': not in the file"]
    for table in sorted(tables):
        out += ["", f"[{'.'.join(_toml_key(part) for part in table)}]"]
        for key, read in sorted(tables[table]):
            value = _toml_value(hidden((*table, key), read.value))
            out.append(f"{_toml_key(key)} = {value}" + ("" if read.given else "  # default"))
    return "\n".join(out) + "\n"


def effective_json(checked: CheckedConfig) -> dict[str, Any]:
    """The settings in effect as nested JSON objects (``--json``)."""
    root: dict[str, Any] = {}
    for keypath, read in sorted(checked.effective.items()):
        node = root
        for part in keypath[:-1]:
            node = node.setdefault(part, {})
        node[keypath[-1]] = hidden(keypath, read.value)
    return root


# --- the command ---------------------------------------------------------------------------


@click.group("config")
def config_group() -> None:
    """Check the configuration file."""


@config_group.command("check")
@click.option(
    "--config",
    "config_path",
    envvar="POSTWATCH_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help=f"Config file (default: $POSTWATCH_CONFIG, or {DEFAULT_CONFIG}).",
)
@click.option("--json", "as_json", is_flag=True, help="The settings as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing when the file is valid.")
def check_command(config_path: str | None, as_json: bool, quiet: bool) -> None:
    """Validate a config file and print the settings in effect (exit 2 if it is invalid)."""
    path = config_path or str(DEFAULT_CONFIG)
    try:
        checked = check_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(exc.exit_code)
    except PostwatchError as exc:  # a builder failing otherwise: still the config's fault
        click.echo(f"{path}: {exc}", err=True)
        sys.exit(2)
    if quiet:
        return
    if as_json:
        click.echo(json.dumps(effective_json(checked), indent=2, ensure_ascii=False))
    else:
        click.echo(render_effective(checked), nl=False)
