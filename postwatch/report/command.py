"""``postwatch report``: one report for a cron job, from the state store or from log files.

::

    postwatch report --since 24h                         # the state store (what watch keeps)
    postwatch report --since 24h /var/log/mail.log*      # straight from the logs
    postwatch report --since 2025-11-25 --until 2025-11-26 --format html -o day.html FILES
    postwatch report --since 24h --send                  # through [actions.notify]'s URLs

With FILES the logs are replayed (oldest first, compressed or not); without, the store is
read (``--db``, ``$POSTWATCH_DB``, the config's ``[store]``).  ``--send`` delivers the text
report to the configured Apprise URLs, and those of the worst incident's severity.
Exit status: 0, 1 when sending failed or the store could not be read, 2 for bad usage.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click

from postwatch.actions.commands import DEFAULT_CONFIG
from postwatch.actions.notify import Sender
from postwatch.actions.settings import ActionsSettings
from postwatch.actions.subject import printable
from postwatch.clock import Clock, SystemClock, zone
from postwatch.config import Settings
from postwatch.configcheck import load_config
from postwatch.errors import ActionError, UsageError
from postwatch.geo import Geo
from postwatch.report.build import report_from_logs
from postwatch.report.html import render_html
from postwatch.report.locks import journal_url, read_locks
from postwatch.report.model import Report
from postwatch.report.stored import report_from_store
from postwatch.report.text import render_text
from postwatch.report.window import parse_window
from postwatch.sources.files import read_lines
from postwatch.store import Store, resolve_url

STORE_WINDOW = 86400.0  # the store's default window: the last day
FORMATS = ("text", "html", "json")


@dataclass
class ReportContext:
    """What tests give as click's ``obj``: the clock, and a sender instead of Apprise."""

    clock: Clock = field(default_factory=SystemClock)
    sender: Sender | None = None
    geo: Geo | None = None


def render(report: Report, output_format: str) -> str:
    if output_format == "html":
        return render_html(report)
    if output_format == "json":
        return json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"
    return render_text(report)


def send_report(report: Report, sender: Sender) -> int:
    """Deliver the text report to every target; raise ActionError if any failed."""
    severity = report.worst_severity or "notice"
    hosts = ", ".join(printable(host, 60) for host in report.hosts[:3]) or "mail"
    opened = sum(1 for row in report.incidents if row.state == "open")
    title = f"postwatch report for {hosts}: {len(report.incidents)} incidents ({opened} open)" + (
        f", worst {severity}" if report.worst_severity else ""
    )
    body = render_text(report)
    failures = []
    targets = list(sender.targets(severity))
    for target in targets:
        try:
            sender.send(target, title, body, severity)
        except Exception as exc:  # one target failing must not keep the report from the rest
            failures.append(f"{target}: {exc}")
    if failures:
        raise ActionError(f"report not delivered to {'; '.join(failures)}")
    return len(targets)


@click.command("report")
@click.argument("files", nargs=-1)
@click.option("--since", metavar="WHEN", help='Start: "24h", "7d" back, or a date/time.')
@click.option("--until", metavar="WHEN", help="End (excluded): a date/time (default: now).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Terminal text, self-contained HTML, or JSON.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here, not stdout.")
@click.option("--send", is_flag=True, help="Also deliver the text report through Apprise.")
@click.option(
    "--top",
    type=click.IntRange(1, 10_000),
    default=20,
    show_default=True,
    help="Logins and IPs listed (those with an incident or a lock always are).",
)
@click.option("--db", metavar="URL", help="State database (without FILES).")
@click.option(
    "--config",
    "config_path",
    envvar="POSTWATCH_CONFIG",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    help=f"Config file (default: $POSTWATCH_CONFIG, or {DEFAULT_CONFIG} when it exists).",
)
@click.option("--year", type=int, help="Year of traditional syslog stamps (default: file mtime).")
@click.option("--tz", "tz_name", metavar="ZONE", help="Zone of unzoned stamps and dates.")
@click.pass_context
def report_command(
    ctx: click.Context,
    files: tuple[str, ...],
    since: str | None,
    until: str | None,
    output_format: str,
    output: str | None,
    send: bool,
    top: int,
    db: str | None,
    config_path: str | None,
    year: int | None,
    tz_name: str | None,
) -> None:
    """Report on a day (or any span): top SASL senders, incidents, locks, attackers, uids."""
    context = ctx.obj if isinstance(ctx.obj, ReportContext) else ReportContext()
    path = config_path or (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    settings, actions = load_config(path)
    if files and db:
        raise UsageError("--db reads the state store; give no FILES with it")
    if send and context.sender is None and actions.notify is None:
        raise UsageError("--send needs [actions.notify] urls in the config")
    tz = zone(tz_name)
    window = parse_window(
        since,
        until,
        now=context.clock.now(),
        tz=tz,
        default_since=None if files else STORE_WINDOW,
    )
    locks, note = read_locks(journal_url(settings.store, actions, db))
    notes = [note] if note and path else []
    if files:
        geo = context.geo or Geo.from_settings(settings.geo, settings.detect)
        report = report_from_logs(
            read_lines(list(files), tz=tz, year=year, clock=context.clock),
            settings=settings,
            window=window,
            clock=context.clock,
            geo=geo,
            locks=locks,
            top=top,
            notes=notes,
        )
    else:
        store = _open_store(db, settings)
        try:
            report = report_from_store(
                store,
                settings=settings,
                window=window,
                clock=context.clock,
                locks=locks,
                top=top,
                notes=notes,
            )
        finally:
            store.close()
    text = render(report, output_format)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from exc
    else:
        sys.stdout.write(text)
    if send:
        count = send_report(report, context.sender or _apprise(actions))
        click.echo(f"report sent to {count} target(s)", err=True)


def _apprise(actions: ActionsSettings) -> Sender:
    from postwatch.actions.notify import AppriseSender

    if actions.notify is None:
        raise UsageError("--send needs [actions.notify] urls in the config")
    return AppriseSender(actions.notify.urls, actions.notify.per_severity)


def _open_store(db: str | None, settings: Settings) -> Store:
    url = resolve_url(db, settings.store)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        database = Path(url[len("sqlite:///") :])
        if not database.is_file():
            raise UsageError(
                f"no state database at {database}: run `postwatch watch` first, give --db, "
                "or give the log FILES to report on"
            )
    return Store(url, retention=settings.store.retention, upgrade=False)
