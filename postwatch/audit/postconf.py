"""Read a Postfix configuration: run postconf, or parse its saved output or the files.

Three ways in, one result (:class:`PostfixConfig`):

- the live configuration: ``postconf -n``, ``postconf -M`` and ``postconf -d`` (optionally
  with ``-c DIR``), run with an argv list, never a shell;
- saved ``postconf -n`` / ``postconf -M`` output (``--postconf-n``/``--postconf-M``), audited
  against the documented defaults; without the ``-M`` file only main.cf is audited;
- a config directory when postconf is not installed: ``main.cf`` and ``master.cf`` parsed
  directly (their syntax is a superset of the postconf output).

Bad input stops with a one-line :class:`~postwatch.errors.ConfigError` naming the file and
line; postconf failures raise :class:`~postwatch.errors.AuditError`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from postwatch.audit.defaults import DOCUMENTED_DEFAULTS, DOCUMENTED_VERSION
from postwatch.audit.expansion import unbrace
from postwatch.audit.settings import PostfixConfig, Service
from postwatch.errors import AuditError, ConfigError

SERVICE_TYPES = frozenset({"inet", "unix", "unix-dgram", "fifo", "pass"})
_PARAMETER_LINE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-]*)\s*=\s*(.*)\Z", re.DOTALL)
_FALLBACK_POSTCONF = "/usr/sbin/postconf"
_TIMEOUT_SECONDS = 60
_MAX_NOTED_WARNINGS = 10

# The stock services every master.cf has, for audits without a master.cf.
STOCK_MASTER = """\
smtp      inet  n       -       y       -       -       smtpd
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
"""


class _Logical(NamedTuple):
    line: int  # where the logical line starts
    text: str


def _logical_lines(text: str) -> Iterator[_Logical]:
    """Join continuation lines (leading whitespace) and drop comments and blank lines."""
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[0].isspace() and parts:
            parts.append(stripped)
            continue
        if parts:
            yield _Logical(start, " ".join(parts))
        start, parts = number, [stripped]
    if parts:
        yield _Logical(start, " ".join(parts))


def parse_main(text: str, origin: str) -> dict[str, str]:
    """Parameters from main.cf or ``postconf -n``/``-d`` output; the last setting wins."""
    params: dict[str, str] = {}
    for logical in _logical_lines(text):
        match = _PARAMETER_LINE.match(logical.text)
        if match is None:
            raise ConfigError(
                f"expected 'name = value', found {_shorten(logical.text)!r}",
                path=origin,
                line=logical.line,
            )
        params[match.group(1)] = match.group(2).strip()
    return params


def _fields(text: str) -> list[str]:
    """Whitespace-separated master.cf fields, keeping ``{ ... }`` groups whole."""
    fields: list[str] = []
    current: list[str] = []
    level = 0
    for char in text:
        if char == "{":
            level += 1
        elif char == "}" and level:
            level -= 1
        if char.isspace() and level == 0:
            if current:
                fields.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        fields.append("".join(current))
    return fields


def parse_master(text: str, origin: str) -> tuple[Service, ...]:
    """Services from master.cf or ``postconf -M`` output, with their ``-o`` overrides."""
    services: list[Service] = []
    for logical in _logical_lines(text):
        fields = _fields(logical.text)
        if len(fields) < 8:
            raise ConfigError(
                f"expected 8 master.cf fields (service type private unpriv chroot wakeup "
                f"maxproc command), found {_shorten(logical.text)!r}",
                path=origin,
                line=logical.line,
            )
        if fields[1] not in SERVICE_TYPES:
            raise ConfigError(
                f"unknown service type {_shorten(fields[1])!r} for service {_shorten(fields[0])!r}",
                path=origin,
                line=logical.line,
            )
        overrides, args = _daemon_options(fields[8:], origin, logical.line)
        name, type_, private, unpriv, chroot, wakeup, maxproc, command = fields[:8]
        services.append(
            Service(
                name,
                type_,
                private,
                unpriv,
                chroot,
                wakeup,
                maxproc,
                command,
                tuple(overrides),
                tuple(args),
                logical.line,
            )
        )
    return tuple(services)


def _daemon_options(
    args: list[str], origin: str, line: int
) -> tuple[list[tuple[str, str]], list[str]]:
    """Split ``-o name=value`` options from the command's own arguments (getopt style)."""
    overrides: list[tuple[str, str]] = []
    index = 0
    while index < len(args) and args[index].startswith("-") and args[index] != "-":
        option = args[index]
        if option == "-o":
            if index + 1 >= len(args):
                raise ConfigError("-o without name=value", path=origin, line=line)
            setting, index = args[index + 1], index + 2
        elif option.startswith("-o"):
            setting, index = option[2:], index + 1
        else:  # -v, -D, -S and the like
            index += 1
            continue
        name, equals, value = unbrace(setting).partition("=")
        if not equals or not name.strip():
            raise ConfigError(
                f"-o {_shorten(setting)!r}: expected name=value", path=origin, line=line
            )
        overrides.append((name.strip(), unbrace(value)))
    return overrides, args[index:]


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise AuditError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def find_postconf(program: str | None = None) -> str | None:
    """The postconf to run: ``program`` if given, else from PATH or /usr/sbin."""
    if program:
        return program
    found = shutil.which("postconf")
    if found:
        return found
    return _FALLBACK_POSTCONF if os.access(_FALLBACK_POSTCONF, os.X_OK) else None


class Postconf:
    """Runs the postconf program with an argv list and returns its output."""

    def __init__(self, program: str, config_dir: str | None = None) -> None:
        self.program = program
        self.config_dir = config_dir
        self.warnings: list[str] = []

    def run(self, *args: str) -> str:
        argv = [self.program]
        if self.config_dir is not None:
            argv += ["-c", self.config_dir]
        argv += list(args)
        shown = " ".join(argv)
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_TIMEOUT_SECONDS,
                check=False,
                env={**os.environ, "LC_ALL": "C"},
            )
        except FileNotFoundError as exc:
            raise AuditError(f"{self.program}: postconf not found") from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise AuditError(f"{shown}: {exc}") from exc
        messages = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        if done.returncode != 0:
            reason = messages[-1] if messages else f"exit status {done.returncode}"
            raise AuditError(f"{shown}: {reason}")
        for message in messages:
            if message not in self.warnings:
                self.warnings.append(message)
        return done.stdout


def load_saved(main_path: str, master_path: str | None, first_note: str = "") -> PostfixConfig:
    """A config from saved ``postconf -n`` (and ``-M``) output, on documented defaults."""
    main = parse_main(_read(main_path), main_path)
    notes = [first_note] if first_note else []
    notes.append(f"main.cf settings from {main_path}")
    if master_path is None:
        services = parse_master(STOCK_MASTER, "built-in master.cf")
        master_source = "none given: stock smtp, pickup and cleanup services assumed"
        notes.append(
            "no postconf -M output given: only main.cf was audited; per-service overrides "
            "(submission, smtps, pickup) were not checked"
        )
    else:
        services = parse_master(_read(master_path), master_path)
        master_source = master_path
    return PostfixConfig(
        main,
        DOCUMENTED_DEFAULTS,
        services,
        defaults_source=f"documented defaults of Postfix {DOCUMENTED_VERSION} (postconf not run)",
        master_source=master_source,
        master_given=master_path is not None,
        notes=tuple(notes),
    )


def load_live(config_dir: str | None = None, program: str | None = None) -> PostfixConfig:
    """The configuration postconf reports (``-c config_dir`` when given).

    Without postconf, a config directory is read directly; without either, AuditError.
    """
    if config_dir is not None and not Path(config_dir, "main.cf").is_file():
        raise AuditError(f"{config_dir}: no main.cf in this directory")
    found = find_postconf(program)
    if found is None:
        if config_dir is None:
            raise AuditError(
                "postconf not found: install Postfix, or give saved output with "
                "--postconf-n FILE --postconf-M FILE"
            )
        return _load_directory(config_dir)
    postconf = Postconf(found, config_dir)
    main = parse_main(postconf.run("-n"), f"{found} -n")
    defaults = parse_main(postconf.run("-d"), f"{found} -d")
    defaults.pop("mynetworks", None)  # computed from this machine's interfaces
    where = config_dir or "the default config directory"
    has_master = config_dir is None or Path(config_dir, "master.cf").is_file()
    if has_master:
        services = parse_master(postconf.run("-M"), f"{found} -M")
        master_source = f"postconf -M ({where})"
        notes: list[str] = []
    else:
        services = parse_master(STOCK_MASTER, "built-in master.cf")
        master_source = "none found: stock smtp, pickup and cleanup services assumed"
        notes = [f"no master.cf in {config_dir}: only main.cf was audited"]
    notes.insert(0, f"main.cf settings from postconf -n ({where})")
    notes += [f"postconf said: {warning}" for warning in postconf.warnings[:_MAX_NOTED_WARNINGS]]
    return PostfixConfig(
        main,
        defaults,
        services,
        defaults_source=f"postconf -d (Postfix {defaults.get('mail_version', '?')})",
        master_source=master_source,
        master_given=has_master,
        notes=tuple(notes),
    )


def _load_directory(config_dir: str) -> PostfixConfig:
    master_path = Path(config_dir, "master.cf")
    return load_saved(
        str(Path(config_dir, "main.cf")),
        str(master_path) if master_path.is_file() else None,
        first_note=f"postconf not found: read {config_dir} directly",
    )
