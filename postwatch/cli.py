"""The command line: parse options, build settings, call the library, map errors to exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad usage, config or input.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import tzinfo
from typing import Any

import click

from postwatch import __version__
from postwatch.clock import SystemClock, zone
from postwatch.config import load_settings
from postwatch.errors import PostwatchError, UsageError
from postwatch.pipeline import build_pipeline
from postwatch.records import LogLine
from postwatch.render import render_alerts, render_summary
from postwatch.sources.files import ReadStats, batched, open_text, read_batches
from postwatch.sources.journal import read_journal_json, run_journal

# Commands defined beside what they drive, imported only when run (or listed by --help):
# a cron job or a replay does not pay for importing the others.
LAZY_COMMANDS = {
    "actions": "postwatch.actions.commands:actions_command",
    "audit": "postwatch.audit.command:audit_command",
    "config": "postwatch.configcheck:config_group",
    "fail2ban-hook": "postwatch.actions.commands:fail2ban_hook_command",
    "lock": "postwatch.actions.commands:lock_command",
    "queue": "postwatch.actions.commands:queue_command",
    "report": "postwatch.report:report_command",
    "status": "postwatch.status:status_command",
    "unlock": "postwatch.actions.commands:unlock_command",
    "watch": "postwatch.watch:watch_command",
}


class LazyGroup(click.Group):
    """A group that imports a command's module when the command is looked up."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, name = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), name)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postwatch")
def cli() -> None:
    """Catch compromised Postfix/Dovecot accounts from the mail log, and stop them."""


@cli.command()
@click.argument("files", nargs=-1)
@click.option("--year", type=int, help="Year of traditional syslog stamps (default: file mtime).")
@click.option("--tz", "tz_name", metavar="ZONE", help="Zone of unzoned stamps (default: local).")
@click.option("--journal", is_flag=True, help="Read the systemd journal through journalctl.")
@click.option("--unit", "units", multiple=True, metavar="UNIT", help="With --journal: a unit.")
@click.option(
    "--identifier", "identifiers", multiple=True, metavar="TAG", help="With --journal: a tag."
)
@click.option("--since", metavar="WHEN", help="With --journal: journalctl --since.")
@click.option(
    "--journal-json", is_flag=True, help="FILES are `journalctl -o json` output (- for stdin)."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout instead of a table.")
@click.option("--no-detect", is_flag=True, help="Parse and correlate only.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar="POSTWATCH_CONFIG",
    help="TOML config (thresholds, allowlists, store, actions).",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="State database: learn from it and record into it (default: none, all in memory).",
)
@click.option(
    "--learn",
    is_flag=True,
    help="Teach the baselines from these archives into the database; raise no alerts.",
)
@click.option("--act", is_flag=True, help="Carry out the configured actions (default: dry run).")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 2),
    help="Processes: 2 detects in a second process, or without detection reads a large file "
    "in two halves (default: 2 on two cores or more).",
)
def replay(
    files: tuple[str, ...],
    year: int | None,
    tz_name: str | None,
    journal: bool,
    units: tuple[str, ...],
    identifiers: tuple[str, ...],
    since: str | None,
    journal_json: bool,
    as_json: bool,
    no_detect: bool,
    config_path: str | None,
    db_url: str | None,
    learn: bool,
    act: bool,
    progress: bool | None,
    jobs: int | None,
) -> None:
    """Read archived logs (plain, .gz, .bz2, .xz, - for stdin), oldest first, and summarise."""
    stats = ReadStats()
    batches = _open_sources(
        files, year, zone(tz_name), journal, units, identifiers, since, journal_json, stats
    )
    settings = load_settings(config_path)
    db_url = db_url or os.environ.get("POSTWATCH_DB") or settings.store.url or None
    if learn and not db_url:
        raise UsageError("--learn needs a database to learn into: --db URL (or POSTWATCH_DB)")
    alerts: list[Any] = []
    stages = build_pipeline(
        settings,
        clock=SystemClock(),
        detect=not no_detect,
        store_url=db_url,
        use_store=db_url is not None,
        learn=learn,
        act=act,
        on_alert=_json_out if as_json else alerts.append,
        processes=jobs or 2,
    )
    shown = progress or (progress is None and sys.stderr.isatty())
    # What is loaded by now (code, the geography table) lives until exit: keep it out of the
    # collector's scans, and collect less often (records are short-lived, cycles rare).
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    pipeline = stages.pipeline
    seam = _seam(files, journal or journal_json or not no_detect or jobs == 1)
    try:
        if seam is None:
            pipeline.run_batches(_with_progress(batches, stats) if shown else batches)
        else:
            from postwatch import halves

            pipeline = halves.replay(
                files[0],
                seam,
                tz=zone(tz_name),
                year=year,
                clock=SystemClock(),
                stats=stats,
                progress=(lambda lines: _with_progress(lines, stats)) if shown else None,
            )
    finally:
        stages.close()  # what was read is recorded, even when a later file fails
    if shown:
        sys.stderr.write(f"\r{pipeline.tally.lines:,} lines{' ' * 40}\n")
    if stats.malformed or stats.skipped:
        click.echo(
            f"postwatch: skipped {stats.malformed} unreadable journal entries and "
            f"{stats.skipped} without a message",
            err=True,
        )
    tally = pipeline.tally
    if as_json:
        for record in tally.account_records():
            _json_out(record)
        _json_out(tally.totals_record())
    else:
        click.echo(render_summary(tally))
        if not no_detect and not learn:
            click.echo(render_alerts(alerts))


def _open_sources(
    files: tuple[str, ...],
    year: int | None,
    tz: tzinfo | None,
    journal: bool,
    units: tuple[str, ...],
    identifiers: tuple[str, ...],
    since: str | None,
    journal_json: bool,
    stats: ReadStats,
) -> Iterator[list[LogLine]]:
    """The LogLines of the sources the options name, in batches (see ``Pipeline``)."""
    if journal:
        if files:
            raise UsageError("--journal reads the journal; give no FILES with it")
        return batched(run_journal(units=units, identifiers=identifiers, since=since, stats=stats))
    if units or identifiers or since:
        raise UsageError("--unit, --identifier and --since go with --journal")
    if not files:
        raise UsageError("give log FILES to replay (- for stdin), or --journal")
    if journal_json:
        return batched(_journal_files(files, stats))
    return read_batches(list(files), tz=tz, year=year, stats=stats)


def _seam(files: tuple[str, ...], serial: bool) -> int | None:
    """Where a replay without detection splits its one file in two processes, if it does
    (:mod:`postwatch.halves`): a large plain file, on a machine with two cores or more."""
    if serial or len(files) != 1 or files[0] == "-":
        return None
    from postwatch import halves
    from postwatch.detect.worker import usable

    return halves.seam_of(files[0]) if usable() else None


def _journal_files(files: tuple[str, ...], stats: ReadStats) -> Iterator[LogLine]:
    for name in files:
        with open_text(name) as stream:
            yield from read_journal_json(stream, origin=name, stats=stats)


def _json_out(record: Any) -> None:
    data = record.to_json() if hasattr(record, "to_json") else record
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _with_progress(batches: Iterator[list[LogLine]], stats: ReadStats) -> Iterator[list[LogLine]]:
    """Pass batches through, drawing a progress line on stderr every 64k lines or so (the
    total is drawn by the caller, once everything is counted)."""
    count = 0
    for batch in batches:
        before, count = count, count + len(batch)
        if count >> 16 != before >> 16:
            line = batch[-1]
            done = f"{stats.bytes_read / stats.total_bytes:4.0%}  " if stats.total_bytes else ""
            sys.stderr.write(f"\r{done}{count:,} lines  {line.ts:%Y-%m-%d %H:%M}  {line.origin}")
            sys.stderr.flush()
        yield batch


def main() -> None:
    """Console entry point: run the CLI and map postwatch errors to one line and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.stderr.write("postwatch: aborted\n")
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PostwatchError as exc:
        sys.stderr.write(f"postwatch: error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(1)
