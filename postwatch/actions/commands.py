"""Click commands for actions: ``lock``, ``unlock``, ``queue``, ``fail2ban-hook``, ``actions``.

``postwatch.cli`` imports this module when one of them is run.
Each reads the config named by ``--config`` (or ``$POSTWATCH_CONFIG``, or
``/etc/postwatch/postwatch.toml`` when it exists) and builds an
:class:`~postwatch.actions.runner.ActionRunner`; tests give a :class:`CommandContext` as
click's ``obj`` instead.  None of them recovers interrupted journal entries: that is the
long-running ``watch``'s job (a command run beside it must not redo its work).
"""

from __future__ import annotations

import getpass
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from postwatch.actions import subject as subjects
from postwatch.actions.fail2ban import EVENTS, record_event
from postwatch.actions.policy import Outcome
from postwatch.actions.runner import ActionRunner
from postwatch.clock import SystemClock
from postwatch.errors import ActionError

DEFAULT_CONFIG = Path("/etc/postwatch/postwatch.toml")
_STATE_WIDTH = 8


@dataclass
class CommandContext:
    """How the commands get their runner: ``make_runner(dry_run)``."""

    make_runner: Callable[[bool], ActionRunner]


def load_runner(config_path: str | None, dry_run: bool) -> ActionRunner:
    """A runner for the config file (its ``[actions]``, ``[detect]`` and ``[store]``)."""
    from postwatch.actions.settings import ActionsSettings, build_runner
    from postwatch.config import load_settings
    from postwatch.store.database import resolve_url

    path = config_path or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    settings = load_settings(path)
    actions = getattr(settings, "actions", None) or ActionsSettings()
    detect, store = settings.detect, settings.store
    allowed = [o.pattern for o in detect.overrides if o.allow]
    networks = [net for net in map(_network, allowed) if net is not None]
    journal_url = resolve_url(None, store)  # the same database watch journals into
    return build_runner(
        actions,
        clock=SystemClock(),
        journal_url=journal_url,
        dry_run=dry_run or actions.dry_run,
        allow=[*detect.allow, *allowed],
        trusted_networks=[*detect.trusted_networks, *networks],
        aliases=detect.aliases,
    )


def _network(pattern: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An allowlisted ``[detect.overrides]`` pattern that is an IP or network, else None."""
    try:
        return ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return None


def _runner(ctx: click.Context, config_path: str | None, dry_run: bool = False) -> ActionRunner:
    if isinstance(ctx.obj, CommandContext):
        return ctx.obj.make_runner(dry_run)
    return load_runner(config_path, dry_run)


def _actor(command: str) -> str:
    """Who ran the command, for the journal: the login behind sudo when there is one."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} via sudo" if sudo and sudo != user else f"{user} (postwatch {command})"


config_option = click.option(
    "--config",
    "config_path",
    envvar="POSTWATCH_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help=f"Config file (default: $POSTWATCH_CONFIG, or {DEFAULT_CONFIG} when it exists).",
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Journal what would be done, and do nothing."
)


def _report(outcomes: Sequence[Outcome]) -> None:
    """Print one line per step; exit 1 (via ActionError) if any step failed."""
    for outcome in outcomes:
        click.echo(
            f"{outcome.action:<20} {outcome.state:<{_STATE_WIDTH}} "
            f"{subjects.printable(outcome.result, 400)}"
        )
    failed = [o for o in outcomes if o.state == "failed"]
    if failed:
        raise ActionError(f"{len(failed)} of {len(outcomes)} actions failed")


@click.command("lock")
@click.argument("user")
@click.option(
    "--reason",
    default="locked by hand",
    show_default=True,
    help="Why, for the journal and the notification.",
)
@click.option("--force", is_flag=True, help="Lock even an allowlisted account.")
@click.option("--no-hold", is_flag=True, help="Do not put the account's queued mail on hold.")
@dry_run_option
@config_option
@click.pass_context
def lock_command(
    ctx: click.Context,
    user: str,
    reason: str,
    force: bool,
    no_hold: bool,
    dry_run: bool,
    config_path: str | None,
) -> None:
    """Lock USER in every configured backend and hold its queued mail."""
    runner = _runner(ctx, config_path, dry_run)
    _report(runner.lock(user, actor=_actor("lock"), reason=reason, force=force, hold=not no_hold))


@click.command("unlock")
@click.argument("user")
@click.option("--release", is_flag=True, help="Also release the mail held for USER.")
@click.option(
    "--reason",
    default="unlocked by hand",
    show_default=True,
    help="Why, for the journal and the notification.",
)
@click.option(
    "--every-backend",
    is_flag=True,
    help="Unlock in every configured backend, not only those that locked USER.",
)
@dry_run_option
@config_option
@click.pass_context
def unlock_command(
    ctx: click.Context,
    user: str,
    release: bool,
    reason: str,
    every_backend: bool,
    dry_run: bool,
    config_path: str | None,
) -> None:
    """Undo every backend that locked USER; with --release, release its held mail."""
    runner = _runner(ctx, config_path, dry_run)
    _report(
        runner.unlock(
            user,
            actor=_actor("unlock"),
            release=release,
            reason=reason,
            every_backend=every_backend,
        )
    )


@click.command("queue")
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@config_option
@click.pass_context
def queue_command(ctx: click.Context, user: str, as_json: bool, config_path: str | None) -> None:
    """Show USER's mail in the Postfix queue (by sender, and by queue IDs postwatch held)."""
    messages = _runner(ctx, config_path).queue(user)
    if as_json:
        for message in messages:
            data = message._asdict()
            data["arrival"] = message.arrival.isoformat()
            sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")
        return
    if not messages:
        click.echo(f"no queued mail for {subjects.account(user)}")
        return
    click.echo(
        f"{'queue id':<16} {'queue':<9} {'arrival (UTC)':<19} {'size':>8} "
        f"{'rcpts':>5}  sender / reason"
    )
    for m in messages:
        click.echo(
            f"{m.queue_id:<16} {m.queue_name:<9} {m.arrival:%Y-%m-%d %H:%M:%S} "
            f"{m.size:>8} {len(m.recipients):>5}  {subjects.shown(m.sender, 60)}"
            + (f" / {subjects.printable(m.delay_reason, 60)}" if m.delay_reason else "")
        )
    click.echo(
        f"{len(messages)} message(s), {sum(m.queue_name == 'hold' for m in messages)} on hold"
    )


@click.command("fail2ban-hook")
@click.argument("event", type=click.Choice(EVENTS))
@click.option("--ip", required=True, help="The address fail2ban banned or unbanned.")
@click.option("--jail", required=True, help="The fail2ban jail's name.")
@config_option
@click.pass_context
def fail2ban_hook_command(
    ctx: click.Context, event: str, ip: str, jail: str, config_path: str | None
) -> None:
    """Record a fail2ban ban/unban, link it to the IP's accounts, and notify."""
    _report(record_event(_runner(ctx, config_path), event, ip, jail))


@click.command("actions")
@click.option("--subject", help="Only this account or IP.")
@click.option("--incident", help="Only this incident.")
@click.option("--unfinished", is_flag=True, help="Only entries still marked started.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
@config_option
@click.pass_context
def actions_command(
    ctx: click.Context,
    subject: str | None,
    incident: str | None,
    unfinished: bool,
    limit: int,
    as_json: bool,
    config_path: str | None,
) -> None:
    """List the action journal, newest first."""
    journal = _runner(ctx, config_path).journal
    if unfinished:
        entries = list(reversed(journal.unfinished()))
        if subject is not None:
            entries = [e for e in entries if e.subject == subject]
    else:
        entries = journal.entries(subject=subject, limit=None if incident else limit)
    if incident is not None:
        entries = [e for e in entries if e.incident == incident]
    entries = entries[:limit]
    if as_json:
        for entry in entries:
            sys.stdout.write(json.dumps(entry.to_json(), separators=(",", ":")) + "\n")
        return
    if not entries:
        click.echo("no journal entries")
        return
    for entry in entries:
        click.echo(_entry_line(entry))


def _entry_line(entry: Any) -> str:
    when = entry.started.strftime("%Y-%m-%d %H:%M:%S")
    incident = f" incident={subjects.printable(entry.incident, 40)}" if entry.incident else ""
    return (
        f"{entry.id:>6} {when} {entry.action:<18} {entry.state:<{_STATE_WIDTH}} "
        f"{subjects.shown(entry.subject, 60)} by {subjects.printable(entry.actor, 40)}"
        f"{incident}: {subjects.printable(entry.result or entry.reason, 200)}"
    )
