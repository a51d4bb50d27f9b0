"""The ``[actions]`` config section, and building a runner from it.

::

    [actions]
    dry_run = false
    journal = ""                     # SQLAlchemy URL; "" = the store's database
    max_locks_per_hour = 5
    allow = ["postmaster@example.com", "@partner.example"]   # never locked
    trusted_networks = ["192.0.2.0/24"]                      # never banned

    [actions.severity]               # what each severity does
    warning = ["notify"]
    critical = ["notify", "lock", "hold", "ban"]

    [actions.notify]
    urls = ["mailtos://user:pass@smtp.example.com?to=postmaster@example.com"]
    burst = 5                        # messages per window; more become one digest
    window = "1h"
    retry = ["1m", "5m", "30m", "2h"]
    [actions.notify.severity]
    critical = ["ntfys://ntfy.example.com/mail-alerts"]      # in addition to urls

    [actions.postfix_map]            # check_sasl_access map
    path = "/etc/postfix/postwatch_sasl_access"
    type = "hash"

    [actions.dovecot]                # deny passdb
    deny_file = "/etc/dovecot/postwatch-deny"

    [actions.sql]
    url = "mysql+pymysql://postwatch:secret@localhost/postfixadmin"
    lock = "UPDATE mailbox SET active = 0 WHERE username = :user"
    unlock = "UPDATE mailbox SET active = 1 WHERE username = :user"

    [actions.command]
    lock = ["/usr/local/sbin/mail-account", "disable", "{user}"]
    unlock = ["/usr/local/sbin/mail-account", "enable", "{user}"]

    [actions.hold]
    enabled = true

    [actions.ban]
    log = "/var/log/postwatch/ban.log"

:func:`parse_actions` reads the table with the config module's reader (register it in
``SECTION_PARSERS`` as ``"actions"``); :func:`build_runner` makes the objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postwatch.actions.banlog import BanLog
from postwatch.actions.command import CommandLock
from postwatch.actions.dovecot import DovecotDeny
from postwatch.actions.hold import QueueHold
from postwatch.actions.lock import LockBackend
from postwatch.actions.lockmap import DEFAULT_REJECT, PostfixSaslMap
from postwatch.actions.notify import SEVERITY_RANK, AppriseSender, Notifier, Sender
from postwatch.actions.policy import ACTIONS, DEFAULT_SEVERITIES, Policy
from postwatch.clock import Clock
from postwatch.configfile import IPNetwork, TableReader, parse_duration

if TYPE_CHECKING:  # SQLAlchemy is imported only when a runner or an SQL lock is built
    from postwatch.actions.journal import Journal
    from postwatch.actions.runner import ActionRunner


@dataclass(frozen=True, slots=True)
class NotifySettings:
    urls: tuple[str, ...] = ()
    per_severity: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    burst: int = 5
    window: float = 3600.0
    retry: tuple[float, ...] = (60.0, 300.0, 1800.0, 7200.0)


@dataclass(frozen=True, slots=True)
class PostfixMapSettings:
    path: Path
    map_type: str = "hash"
    reject: str = DEFAULT_REJECT
    postmap: str = "postmap"
    config_dir: str = ""


@dataclass(frozen=True, slots=True)
class DovecotSettings:
    deny_file: Path
    doveadm: str = "doveadm"
    config: str = ""
    kick: bool = True
    flush_cache: bool = True


@dataclass(frozen=True, slots=True)
class SqlSettings:
    url: str
    lock: str
    unlock: str
    check: str = ""


@dataclass(frozen=True, slots=True)
class CommandSettings:
    lock: tuple[str, ...]
    unlock: tuple[str, ...]
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class HoldSettings:
    postqueue: str = "postqueue"
    postsuper: str = "postsuper"
    config_dir: str = ""


@dataclass(frozen=True, slots=True)
class ActionsSettings:
    """The ``[actions]`` table."""

    dry_run: bool = False
    journal: str = ""
    max_locks_per_hour: int = 5
    allow: tuple[str, ...] = ()
    trusted_networks: tuple[IPNetwork, ...] = ()
    severities: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITIES)
    )
    notify: NotifySettings | None = None
    postfix_map: PostfixMapSettings | None = None
    dovecot: DovecotSettings | None = None
    sql: SqlSettings | None = None
    command: CommandSettings | None = None
    hold: HoldSettings | None = None
    ban_log: Path | None = None
    ban_repeat_after: float = 600.0


def parse_actions(reader: TableReader) -> ActionsSettings:
    """The ``[actions]`` table, every key checked."""
    severity = reader.sub("severity")
    severities = dict(DEFAULT_SEVERITIES)
    for name in severity.data:
        if name not in SEVERITY_RANK:
            raise severity.fail("unknown severity (notice, warning, critical)", name)
        chosen = severity.strings(name)
        bad = [action for action in chosen if action not in ACTIONS]
        if bad:
            raise severity.fail(f"unknown action {bad[0]!r} (one of {', '.join(ACTIONS)})", name)
        severities[name] = tuple(chosen)
    settings = ActionsSettings(
        dry_run=reader.boolean("dry_run", False),
        journal=_string(reader, "journal", ""),
        max_locks_per_hour=reader.integer("max_locks_per_hour", 5),
        allow=tuple(item.lower() for item in reader.strings("allow")),
        trusted_networks=reader.networks("trusted_networks"),
        severities=severities,
        notify=_notify(reader.sub("notify")) if reader.has("notify") else None,
        postfix_map=_postfix_map(reader.sub("postfix_map")) if reader.has("postfix_map") else None,
        dovecot=_dovecot(reader.sub("dovecot")) if reader.has("dovecot") else None,
        sql=_sql(reader.sub("sql")) if reader.has("sql") else None,
        command=_command(reader.sub("command")) if reader.has("command") else None,
        hold=_hold(reader.sub("hold")) if reader.has("hold") else None,
        **_ban(reader.sub("ban")),
    )
    severity.check_unknown()
    reader.check_unknown()
    return settings


def _string(reader: TableReader, key: str, default: str | None = None) -> str:
    value = reader.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise reader.fail(
            "must be a non-empty string" if default is None else "must be a string", key
        )
    return value


def _notify(reader: TableReader) -> NotifySettings:
    per = reader.sub("severity")
    for name in per.data:
        if name not in SEVERITY_RANK:
            raise per.fail("unknown severity (notice, warning, critical)", name)
    retry = reader.get("retry", None)
    delays = NotifySettings().retry
    if retry is not None:
        if not isinstance(retry, list):
            raise reader.fail("must be a list of durations", "retry")
        delays = tuple(_duration_item(reader, item) for item in retry)
    settings = NotifySettings(
        urls=reader.strings("urls"),
        per_severity={name: per.strings(name) for name in per.data},
        burst=reader.integer("burst", 5, minimum=1),
        window=reader.duration("window", 3600.0),
        retry=delays,
    )
    if not settings.urls and not any(settings.per_severity.values()):
        raise reader.fail("needs at least one Apprise URL", "urls")
    per.check_unknown()
    reader.check_unknown()
    return settings


def _duration_item(reader: TableReader, item: object) -> float:
    seconds = parse_duration(item)
    if seconds is None:
        raise reader.fail(f"not a duration: {item!r}", "retry")
    return seconds


def _postfix_map(reader: TableReader) -> PostfixMapSettings:
    settings = PostfixMapSettings(
        path=Path(_string(reader, "path")),
        map_type=_string(reader, "type", "hash"),
        reject=_string(reader, "reject", DEFAULT_REJECT),
        postmap=_string(reader, "postmap", "postmap"),
        config_dir=_string(reader, "config_dir", ""),
    )
    reader.check_unknown()
    return settings


def _dovecot(reader: TableReader) -> DovecotSettings:
    settings = DovecotSettings(
        deny_file=Path(_string(reader, "deny_file")),
        doveadm=_string(reader, "doveadm", "doveadm"),
        config=_string(reader, "config", ""),
        kick=reader.boolean("kick", True),
        flush_cache=reader.boolean("flush_cache", True),
    )
    reader.check_unknown()
    return settings


def _sql(reader: TableReader) -> SqlSettings:
    settings = SqlSettings(
        url=_string(reader, "url"),
        lock=_string(reader, "lock"),
        unlock=_string(reader, "unlock"),
        check=_string(reader, "check", ""),
    )
    reader.check_unknown()
    return settings


def _command(reader: TableReader) -> CommandSettings:
    lock, unlock = reader.strings("lock"), reader.strings("unlock")
    for key, argv in (("lock", lock), ("unlock", unlock)):
        if not argv:
            raise reader.fail("must be a non-empty list: the program and its arguments", key)
    settings = CommandSettings(lock=lock, unlock=unlock, timeout=reader.duration("timeout", 30.0))
    reader.check_unknown()
    return settings


def _hold(reader: TableReader) -> HoldSettings | None:
    enabled = reader.boolean("enabled", True)
    settings = HoldSettings(
        postqueue=_string(reader, "postqueue", "postqueue"),
        postsuper=_string(reader, "postsuper", "postsuper"),
        config_dir=_string(reader, "config_dir", ""),
    )
    reader.check_unknown()
    return settings if enabled else None


def _ban(reader: TableReader) -> dict[str, Any]:
    log = _string(reader, "log", "")
    repeat = reader.duration("repeat_after", 600.0)
    reader.check_unknown()
    return {"ban_log": Path(log) if log else None, "ban_repeat_after": repeat}


# --- building ------------------------------------------------------------------------


def build_locks(settings: ActionsSettings) -> list[LockBackend]:
    """The configured lock backends, in a fixed order."""
    locks: list[LockBackend] = []
    if settings.postfix_map:
        pm = settings.postfix_map
        locks.append(
            PostfixSaslMap(
                pm.path,
                map_type=pm.map_type,
                reject=pm.reject,
                postmap=pm.postmap,
                config_dir=pm.config_dir or None,
            )
        )
    if settings.dovecot:
        dv = settings.dovecot
        locks.append(
            DovecotDeny(
                dv.deny_file,
                doveadm=dv.doveadm,
                config=dv.config or None,
                kick=dv.kick,
                flush_cache=dv.flush_cache,
            )
        )
    if settings.sql:
        from postwatch.actions.sqllock import SqlLock

        locks.append(
            SqlLock(
                settings.sql.url,
                lock=settings.sql.lock,
                unlock=settings.sql.unlock,
                check=settings.sql.check,
            )
        )
    if settings.command:
        locks.append(
            CommandLock(
                settings.command.lock, settings.command.unlock, timeout=settings.command.timeout
            )
        )
    return locks


def build_runner(
    settings: ActionsSettings,
    *,
    clock: Clock,
    journal: Journal | None = None,
    journal_url: str = "",
    dry_run: bool | None = None,
    allow: Iterable[str] = (),
    trusted_networks: Iterable[IPNetwork] = (),
    aliases: Mapping[str, Iterable[str]] | None = None,
    sender: Sender | None = None,
) -> ActionRunner:
    """An :class:`ActionRunner` for ``settings``.

    ``allow``, ``trusted_networks`` and ``aliases`` add the ``[detect]`` section's lists;
    ``journal_url`` is the fallback database (the store's) when ``[actions] journal`` is
    empty; with neither, the journal lives in memory.  ``sender`` replaces Apprise (tests).
    """
    from postwatch.actions.journal import MemoryJournal, SqlJournal
    from postwatch.actions.runner import ActionRunner

    url = settings.journal or journal_url
    if journal is None:
        journal = SqlJournal(url, clock) if url else MemoryJournal(clock)
    locks = build_locks(settings)
    hold = None
    if settings.hold:
        hold = QueueHold(
            postqueue=settings.hold.postqueue,
            postsuper=settings.hold.postsuper,
            config_dir=settings.hold.config_dir or None,
        )
    ban_log = (
        BanLog(settings.ban_log, clock=clock, repeat_after=settings.ban_repeat_after)
        if settings.ban_log
        else None
    )
    notifier = None
    if settings.notify or sender is not None:
        notify = settings.notify or NotifySettings()
        notifier = Notifier(
            sender or AppriseSender(notify.urls, notify.per_severity),
            clock=clock,
            burst=notify.burst,
            window=notify.window,
            retry_delays=notify.retry,
        )
    policy = Policy(
        severities=settings.severities,
        allow=(*settings.allow, *allow),
        trusted_networks=(*settings.trusted_networks, *trusted_networks),
        max_locks_per_hour=settings.max_locks_per_hour,
        lock_backends=[lock.name for lock in locks],
        can_hold=hold is not None,
        can_ban=ban_log is not None,
    )
    return ActionRunner(
        policy=policy,
        journal=journal,
        clock=clock,
        locks=locks,
        hold=hold,
        ban_log=ban_log,
        notifier=notifier,
        dry_run=settings.dry_run if dry_run is None else dry_run,
        aliases=aliases,
    )
