"""The click commands lock, unlock, actions and fail2ban-hook, on a runner given as click's obj."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from conftest import require_program

from postwatch import cli as cli_module
from postwatch.actions.banlog import BanLog
from postwatch.actions.commands import (
    CommandContext,
    actions_command,
    fail2ban_hook_command,
    lock_command,
    unlock_command,
)
from postwatch.actions.journal import MemoryJournal
from postwatch.actions.lockmap import PostfixSaslMap
from postwatch.actions.notify import Notifier, RecordingSender
from postwatch.actions.policy import Policy
from postwatch.actions.runner import ActionRunner
from postwatch.clock import SteppedClock
from postwatch.errors import ActionError, UnsafeSubjectError

pytestmark = pytest.mark.system  # the lock map is compiled by the real postmap

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class Setup:
    """A runner with a real postfix map, a ban log and a recording sender."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = SteppedClock(START)
        self.journal = MemoryJournal(self.clock)
        self.map = PostfixSaslMap(
            tmp_path / "sasl_access", postmap=require_program("postmap", "/usr/sbin/postmap")
        )
        self.ban_log = BanLog(tmp_path / "ban.log", clock=self.clock, pid=7)
        self.sender = RecordingSender()
        self.notifier = Notifier(self.sender, clock=self.clock, burst=2)
        self.runners: list[bool] = []

    def make_runner(self, dry_run: bool) -> ActionRunner:
        self.runners.append(dry_run)
        return ActionRunner(
            policy=Policy(
                allow=["postmaster@example.com"], lock_backends=["postfix-map"], can_ban=True
            ),
            journal=self.journal,
            clock=self.clock,
            locks=[self.map],
            ban_log=self.ban_log,
            notifier=self.notifier,
            dry_run=dry_run,
        )

    def invoke(self, command: object, *args: str) -> Result:
        return CliRunner().invoke(
            command,
            list(args),  # type: ignore[arg-type]
            obj=CommandContext(self.make_runner),
        )


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    return Setup(tmp_path)


def test_every_command_is_reached_under_its_cli_name() -> None:
    """Each command the CLI lists loads, under the name it is listed with, and shows its help."""
    group = cli_module.cli
    with click.Context(group) as ctx:
        names = group.list_commands(ctx)
        assert {"lock", "unlock", "queue", "fail2ban-hook", "actions", "watch", "report"} <= set(
            names
        )
        for name in names:
            command = group.get_command(ctx, name)
            assert command is not None and command.name == name
            result = CliRunner().invoke(group, [name, "--help"])
            assert result.exit_code == 0, result.output


def test_lock_and_unlock_by_hand(setup: Setup) -> None:
    """lock writes the map and prints each step; unlock reverses it; both are journaled."""
    locked = setup.invoke(lock_command, "alice@example.com", "--reason", "phished")
    assert locked.exit_code == 0, locked.output
    assert "lock:postfix-map" in locked.output and "done" in locked.output
    assert setup.map.is_locked("alice@example.com")
    [entry] = setup.journal.entries(action="lock:postfix-map")
    assert entry.reason == "phished" and "(postwatch lock)" in entry.actor
    unlocked = setup.invoke(unlock_command, "alice@example.com")
    assert unlocked.exit_code == 0, unlocked.output
    assert not setup.map.is_locked("alice@example.com")
    titles = [title for _t, title, _b, _s in setup.sender.sent]
    assert titles[0].startswith("postwatch: alice@example.com locked by")
    assert titles[1].startswith("postwatch: alice@example.com unlocked by")


def test_lock_refuses_a_hostile_name_and_leaves_the_map_alone(setup: Setup) -> None:
    """A username with a newline fails with UnsafeSubjectError and the map is unchanged."""
    setup.invoke(lock_command, "bob@example.com")
    before = setup.map.path.read_bytes()
    result = setup.invoke(lock_command, "a@b.example\nroot OK")
    assert isinstance(result.exception, UnsafeSubjectError)
    assert setup.map.path.read_bytes() == before


def test_lock_of_an_allowlisted_account_needs_force(setup: Setup) -> None:
    """The allowlist holds by hand too unless --force is given."""
    refused = setup.invoke(lock_command, "postmaster@example.com")
    assert isinstance(refused.exception, ActionError)
    forced = setup.invoke(lock_command, "postmaster@example.com", "--force")
    assert forced.exit_code == 0 and setup.map.is_locked("postmaster@example.com")


def test_dry_run_lock_changes_nothing(setup: Setup) -> None:
    """lock --dry-run journals dry-run entries and leaves the map alone."""
    result = setup.invoke(lock_command, "carol@example.com", "--dry-run")
    assert result.exit_code == 0 and setup.runners == [True]
    assert not setup.map.path.exists()
    assert {e.state for e in setup.journal.entries()} == {"dry-run"}


def test_actions_lists_the_journal_as_text_and_json(setup: Setup) -> None:
    """actions prints entries newest first, filtered by subject, or as JSON lines."""
    setup.invoke(lock_command, "alice@example.com")
    setup.invoke(lock_command, "bob@example.com")
    text = setup.invoke(actions_command, "--subject", "bob@example.com")
    assert text.exit_code == 0 and "alice" not in text.output
    assert text.output.splitlines()[0].split()[3] == "notify"
    lines = setup.invoke(actions_command, "--json", "--limit", "3").output.splitlines()
    assert [json.loads(line)["subject"] for line in lines] == [
        "bob@example.com",
        "bob@example.com",
        "alice@example.com",
    ]
    setup.journal.start(action="hold", subject="dave@example.com")
    unfinished = setup.invoke(actions_command, "--unfinished").output
    assert "dave@example.com" in unfinished and "alice" not in unfinished


def test_fail2ban_hook_records_links_and_notifies(setup: Setup) -> None:
    """A ban is journaled, linked to the accounts postwatch banned the IP for, and notified."""
    setup.ban_log.ban(
        "203.0.113.5", reason="volume", subject_name="alice@example.com", incident="12"
    )
    result = setup.invoke(
        fail2ban_hook_command, "ban", "--ip", "203.0.113.5", "--jail", "postwatch"
    )
    assert result.exit_code == 0, result.output
    [entry] = setup.journal.entries(action="fail2ban-ban")
    assert entry.detail == {"jail": "postwatch", "accounts": ["alice@example.com"]}
    assert entry.actor == "fail2ban"
    [(_target, title, body, severity)] = setup.sender.sent
    assert title == "postwatch: fail2ban banned 203.0.113.5 (postwatch)"
    assert '"alice@example.com"' in body and severity == "warning"


def test_fail2ban_hook_notifications_are_rate_limited_through_the_journal(setup: Setup) -> None:
    """Past the burst within the window, a ban is journaled but no message is sent."""
    for number in range(4):
        setup.invoke(
            fail2ban_hook_command, "ban", "--ip", f"198.51.100.{number}", "--jail", "postfix-sasl"
        )
    assert len(setup.sender.sent) == 2
    assert len(setup.journal.entries(action="fail2ban-ban")) == 4
    assert [e.state for e in setup.journal.entries(action="notify")][:2] == ["skipped"] * 2


def test_fail2ban_hook_refuses_bad_input(setup: Setup) -> None:
    """A bad address or jail name is refused before anything is journaled."""
    bad_ip = setup.invoke(fail2ban_hook_command, "ban", "--ip", "203.0.113.5;reboot", "--jail", "x")
    assert isinstance(bad_ip.exception, UnsafeSubjectError)
    bad_jail = setup.invoke(fail2ban_hook_command, "unban", "--ip", "203.0.113.5", "--jail", "x y")
    assert isinstance(bad_jail.exception, UnsafeSubjectError)
    assert (
        setup.invoke(fail2ban_hook_command, "kick", "--ip", "203.0.113.5", "--jail", "x").exit_code
        == 2
    )
    assert setup.journal.entries() == []
