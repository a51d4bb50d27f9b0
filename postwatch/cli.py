"""The command line: parse options, build settings, call the library, map errors to exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad usage, config or input.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from postwatch import __version__
from postwatch.errors import PostwatchError, UsageError
from postwatch.pipeline import Pipeline
from postwatch.records import LogLine
from postwatch.tally import Tally


def _zone(name: str | None) -> tzinfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(f"--tz: unknown time zone {name!r}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="postwatch")
def cli() -> None:
    """Catch compromised Postfix/Dovecot accounts from the mail log, and stop them."""


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--year", type=int, help="Year of traditional syslog stamps (default: file mtime).")
@click.option(
    "--tz", "tz_name", metavar="ZONE", help="Zone of stamps without one (default: local)."
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines on stdout instead of a table.")
@click.option("--no-detect", is_flag=True, help="Parse and correlate only.")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: when stderr is a terminal).",
)
def replay(
    files: tuple[str, ...],
    year: int | None,
    tz_name: str | None,
    as_json: bool,
    no_detect: bool,
    progress: bool | None,
) -> None:
    """Read archived logs (plain, .gz, .bz2, .xz, - for stdin), oldest first, and summarise."""
    from postwatch.sources.files import read_lines

    tz = _zone(tz_name)
    tally = Tally()
    emit = _json_out if as_json else None
    alerts: list[Any] = []
    pipeline = Pipeline(tally=tally, on_alert=emit or alerts.append)
    lines: Iterator[LogLine] = read_lines(list(files), tz=tz, year=year)
    if progress or (progress is None and sys.stderr.isatty()):
        lines = _with_progress(lines)
    pipeline.run(lines)
    pipeline.close()
    if as_json:
        for record in tally.account_records():
            _json_out(record)
        _json_out(tally.totals_record())
    else:
        click.echo(_render_summary(tally))


def _json_out(record: Any) -> None:
    data = record.to_json() if hasattr(record, "to_json") else record
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _with_progress(lines: Iterator[LogLine]) -> Iterator[LogLine]:
    count = 0
    for line in lines:
        count += 1
        if not count & 0xFFFF:
            sys.stderr.write(f"\r{count:,} lines  {line.ts:%Y-%m-%d %H:%M}  {line.origin}")
            sys.stderr.flush()
        yield line
    sys.stderr.write(f"\r{count:,} lines\n")


def _render_summary(tally: Tally) -> str:
    out = [f"lines read: {tally.lines:,}", "", "events by kind:"]
    for kind, count in sorted(tally.events.items(), key=lambda item: -item[1]):
        out.append(f"  {kind:<22} {count:>10,}")
    if tally.unparsed:
        out += ["", "unparsed lines by program (share of that program's lines):"]
        totals = tally.lines_by_program
        for program, count in tally.unparsed.most_common():
            share = f" ({count / totals[program]:.1%})" if program in totals else ""
            out.append(f"  {program:<30} {count:>10,}{share}")
    accounts = tally.account_records()
    out += ["", "SASL users:"]
    if not accounts:
        out.append("  (none)")
    else:
        out.append(
            f"  {'user':<40} {'messages':>9} {'rcpts':>7} {'IPs':>5} {'deferred':>9} {'bounced':>8}"
        )
        for acc in accounts:
            out.append(
                f"  {acc['subject']!s:<40.40} {acc['messages']:>9,} {acc['recipients']:>7,} "
                f"{acc['distinct_ips']:>5} {acc['deferred']:>9,} {acc['bounced']:>8,}"
            )
    return "\n".join(out)


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
