"""The ``postwatch audit`` click command.

Exit status: 0 when no finding reaches ``--fail-on``, 1 when one does (or postconf
failed), 2 for bad usage or an unreadable configuration file.
"""

from __future__ import annotations

import sys

import click

from postwatch.audit.checks import run_checks
from postwatch.audit.findings import Severity
from postwatch.audit.postconf import load_live, load_saved
from postwatch.audit.render import render_json, render_text
from postwatch.audit.settings import PostfixConfig
from postwatch.errors import PostwatchError, UsageError

SEVERITY_NAMES = [level.label for level in Severity]


def _load(
    config_dir: str | None,
    postconf_n: str | None,
    postconf_m: str | None,
    postconf_program: str | None,
) -> PostfixConfig:
    if postconf_m and not postconf_n:
        raise UsageError("--postconf-M needs --postconf-n (the main.cf settings) as well")
    if postconf_n:
        if config_dir:
            raise UsageError("give either -c DIR or --postconf-n FILE, not both")
        if postconf_program:
            raise UsageError("--postconf runs postconf; saved output needs no program")
        return load_saved(postconf_n, postconf_m)
    return load_live(config_dir, postconf_program)


@click.command("audit")
@click.option(
    "-c",
    "--config-dir",
    "config_dir",
    metavar="DIR",
    help="Audit the configuration in DIR (postconf -c DIR).",
)
@click.option(
    "--postconf-n",
    "postconf_n",
    metavar="FILE",
    help="Saved 'postconf -n' output to audit instead of running postconf.",
)
@click.option(
    "--postconf-M",
    "--postconf-m",
    "postconf_m",
    metavar="FILE",
    help="Saved 'postconf -M' output (master.cf services) to go with --postconf-n.",
)
@click.option(
    "--postconf",
    "postconf_program",
    metavar="PATH",
    help="The postconf program to run (default: from PATH or /usr/sbin).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option(
    "--fail-on",
    type=click.Choice(SEVERITY_NAMES, case_sensitive=False),
    default="high",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity.",
)
def audit_command(
    config_dir: str | None,
    postconf_n: str | None,
    postconf_m: str | None,
    postconf_program: str | None,
    as_json: bool,
    fail_on: str,
) -> None:
    """Find the Postfix settings that let spam out: open relays, unchecked logins, no brakes."""
    try:
        config = _load(config_dir, postconf_n, postconf_m, postconf_program)
        report = run_checks(config)
    except PostwatchError as exc:
        click.echo(f"postwatch: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    click.echo(render_json(report) if as_json else render_text(report))
    if report.at_or_above(Severity.parse(fail_on)):
        sys.exit(1)
