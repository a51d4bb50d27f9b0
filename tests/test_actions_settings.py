"""The [actions] config table, building a runner from it, and the shipped fail2ban files."""

from __future__ import annotations

import configparser
import shlex
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

from postwatch.actions.banlog import BanLog
from postwatch.actions.command import CommandLock
from postwatch.actions.commands import CommandContext, fail2ban_hook_command
from postwatch.actions.dovecot import DovecotDeny
from postwatch.actions.journal import MemoryJournal, SqlJournal
from postwatch.actions.lockmap import PostfixSaslMap
from postwatch.actions.notify import RecordingSender
from postwatch.actions.settings import ActionsSettings, build_runner, parse_actions
from postwatch.actions.sqllock import SqlLock
from postwatch.clock import SteppedClock
from postwatch.configfile import TableReader
from postwatch.errors import ConfigError

FULL = """\
[actions]
dry_run = true
journal = "sqlite:///{tmp}/journal.sqlite"
max_locks_per_hour = 3
allow = ["PostMaster@example.com", "@partner.example"]
trusted_networks = ["192.0.2.0/24"]

[actions.severity]
warning = ["notify", "ban"]

[actions.notify]
urls = ["json://127.0.0.1:9/hook"]
burst = 3
window = "30m"
retry = ["1m", 600]
[actions.notify.severity]
critical = ["json://127.0.0.1:9/pager"]

[actions.postfix_map]
path = "{tmp}/postwatch_sasl_access"
type = "texthash"

[actions.dovecot]
deny_file = "{tmp}/deny"
kick = false

[actions.sql]
url = "sqlite:///{tmp}/accounts.sqlite"
lock = "UPDATE mailbox SET active = 0 WHERE username = :user"
unlock = "UPDATE mailbox SET active = 1 WHERE username = :user"

[actions.command]
lock = ["/usr/local/sbin/mail-account", "disable", "{{user}}"]
unlock = ["/usr/local/sbin/mail-account", "enable", "{{user}}"]

[actions.hold]
config_dir = "/etc/postfix"

[actions.ban]
log = "{tmp}/ban.log"
repeat_after = "5m"
"""


def parse(text: str) -> ActionsSettings:
    reader = TableReader("postwatch.toml", text, tomllib.loads(text), ())
    return parse_actions(reader.sub("actions"))


def test_full_table_is_read(tmp_path: Path) -> None:
    """Every key of a complete [actions] table lands in its record."""
    settings = parse(FULL.format(tmp=tmp_path))
    assert settings.dry_run and settings.max_locks_per_hour == 3
    assert settings.allow == ("postmaster@example.com", "@partner.example")
    assert settings.severities["warning"] == ("notify", "ban")
    assert settings.severities["critical"] == ("notify", "lock", "hold", "ban")
    assert settings.notify is not None and settings.notify.retry == (60.0, 600.0)
    assert settings.notify.window == 1800.0
    assert settings.postfix_map is not None and settings.postfix_map.map_type == "texthash"
    assert settings.hold is not None and settings.hold.config_dir == "/etc/postfix"
    assert settings.ban_repeat_after == 300.0


def test_runner_is_built_with_every_backend(tmp_path: Path) -> None:
    """build_runner makes the journal, each lock backend, the hold, the ban log and the notifier."""
    runner = build_runner(
        parse(FULL.format(tmp=tmp_path)), clock=SteppedClock(), allow=["root@example.com"]
    )
    assert [type(lock) for lock in runner.locks.values()] == [
        PostfixSaslMap,
        DovecotDeny,
        SqlLock,
        CommandLock,
    ]
    assert isinstance(runner.journal, SqlJournal) and runner.dry_run
    assert isinstance(runner.ban_log, BanLog) and runner.hold is not None
    assert runner.policy.allowlisted("root@example.com")
    assert runner.policy.allowlisted("anyone@partner.example")
    assert runner.policy.trusted("192.0.2.7") and not runner.policy.trusted("203.0.113.5")
    runner.journal.entries()  # opens a pooled connection to the journal's database
    assert runner.journal.engine.pool.checkedin() == 1
    runner.close()
    assert runner.journal.engine.pool.checkedin() == 0  # released: nothing left open


def test_empty_table_builds_a_notify_free_runner_with_a_memory_journal() -> None:
    """No [actions] at all: defaults, no backend, journal in memory."""
    runner = build_runner(parse(""), clock=SteppedClock())
    assert runner.locks == {} and runner.notifier is None
    assert isinstance(runner.journal, MemoryJournal)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[actions]\nmax_lock_per_hour = 3\n", "actions.max_lock_per_hour"),
        ('[actions.severity]\ncritical = ["nuke"]\n', "actions.severity.critical"),
        ('[actions.severity]\nsevere = ["lock"]\n', "actions.severity.severe"),
        ("[actions.notify]\nburst = 3\n", "actions.notify.urls"),
        ('[actions.postfix_map]\ntype = "hash"\n', "actions.postfix_map.path"),
        ('[actions.command]\nlock = []\nunlock = ["x"]\n', "actions.command.lock"),
        ('[actions.ban]\nlog = "/x"\nrepeat = 3\n', "actions.ban.repeat"),
    ],
)
def test_mistakes_name_the_key_and_line(text: str, key: str) -> None:
    """A wrong key or value raises ConfigError naming the file, the line and the key."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert caught.value.key == key and caught.value.line is not None


def test_fail2ban_action_runs_the_hook_command(tmp_path: Path) -> None:
    """The shipped action.d file's actionban line is a valid fail2ban-hook command line."""
    action = configparser.ConfigParser(interpolation=None)
    action.read(REPO / "contrib" / "fail2ban" / "action.d" / "postwatch.conf")
    line = action["Definition"]["actionban"]
    line = (
        line.replace("<postwatch>", action["Init"]["postwatch"])
        .replace("<postwatch_options>", action["Init"]["postwatch_options"])
        .replace("<ip>", "203.0.113.5")
        .replace("<name>", "postfix-sasl")
    )
    argv = shlex.split(line)
    assert argv[:2] == ["postwatch", "fail2ban-hook"]
    runner = build_runner(ActionsSettings(), clock=SteppedClock(), sender=RecordingSender())
    result = CliRunner().invoke(
        fail2ban_hook_command, argv[2:], obj=CommandContext(lambda dry_run: runner)
    )
    assert result.exit_code == 0, result.output
    assert runner.journal.entries(action="fail2ban-ban")[0].detail["jail"] == "postfix-sasl"


def test_fail2ban_jail_uses_the_filter_and_the_action() -> None:
    """The shipped jail bans on one line with the postwatch filter and calls the hook action."""
    jail = configparser.ConfigParser(interpolation=None)
    jail.read(REPO / "contrib" / "fail2ban" / "jail.d" / "postwatch.local")
    section = jail["postwatch"]
    assert (section["filter"], section["maxretry"], section["enabled"]) == (
        "postwatch",
        "1",
        "true",
    )
    assert "postwatch[name=%(__name__)s]" in section["action"]
