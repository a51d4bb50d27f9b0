"""Holding and releasing an account's mail in a real private Postfix (postqueue, postsuper)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import require_program
from system.postfix_instance import PostfixInstance, running_postfix

from postwatch.actions.commands import CommandContext, queue_command, unlock_command
from postwatch.actions.hold import QueueHold
from postwatch.actions.journal import MemoryJournal
from postwatch.actions.lock import RecordingLock
from postwatch.actions.policy import ActionRequest, Policy
from postwatch.actions.runner import ActionRunner
from postwatch.clock import SteppedClock
from postwatch.errors import UnsafeSubjectError

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def postfix() -> Iterator[PostfixInstance]:
    with running_postfix(require_program("postfix", "/usr/sbin/postfix")) as instance:
        yield instance


class Queue:
    """Messages submitted for one test: three from alice, one forged, one from bob."""

    def __init__(self, instance: PostfixInstance) -> None:
        self.instance = instance
        self.alice = [
            instance.submit("alice@example.com", ["victim@example.net"], f"spam {n}")
            for n in range(3)
        ]
        self.forged = instance.submit("ceo@bank.example", ["victim@example.net"], "forged")
        self.bob = instance.submit("bob@example.com", ["friend@example.net"], "hello")
        instance.wait_until_queued([*self.alice, self.forged, self.bob])
        self.hold = QueueHold(
            postqueue=instance.program("postqueue"),
            postsuper=instance.program("postsuper"),
            config_dir=instance.config_dir,
        )


@pytest.fixture
def queue(postfix: PostfixInstance) -> Iterator[Queue]:
    state = Queue(postfix)
    try:
        yield state
    finally:
        postfix.run("postsuper", "-d", "ALL")


def test_postqueue_json_is_read_into_messages(queue: Queue) -> None:
    """Every queued message is listed with its queue, sender and recipients."""
    by_id = {m.queue_id: m for m in queue.hold.messages()}
    assert set(by_id) == {*queue.alice, queue.forged, queue.bob}
    assert by_id[queue.bob].sender == "bob@example.com"
    assert by_id[queue.bob].recipients == ("friend@example.net",)
    assert by_id[queue.bob].queue_name == "deferred"
    assert by_id[queue.bob].delay_reason == "deferred transport"


def test_hold_takes_the_accounts_mail_by_sender_and_queue_id(queue: Queue) -> None:
    """The account's messages and the ones attributed to it go on hold; others stay."""
    change = queue.hold.hold(["Alice@Example.com"], [queue.forged])
    assert set(change.queue_ids) == {*queue.alice, queue.forged} and change.changed == 4
    names = queue.instance.queue_names()
    assert {names[qid] for qid in [*queue.alice, queue.forged]} == {"hold"}
    assert names[queue.bob] == "deferred"
    again = queue.hold.hold(["alice@example.com"], [queue.forged])
    assert again.queue_ids == () and again.text == "no message to put on hold"


def test_release_puts_held_mail_back_in_the_queue(queue: Queue) -> None:
    """postsuper -H releases exactly the named held messages."""
    queue.hold.hold(["alice@example.com"], [queue.forged])
    change = queue.hold.release([*queue.alice, queue.bob])
    assert set(change.queue_ids) == set(queue.alice) and change.changed == 3
    names = queue.instance.queue_names()
    assert {names[qid] for qid in queue.alice} == {"deferred"}
    assert names[queue.forged] == "hold"


def test_hostile_queue_id_never_reaches_postsuper(queue: Queue) -> None:
    """A queue ID that is not one is refused before postsuper runs."""
    with pytest.raises(UnsafeSubjectError):
        queue.hold._postsuper("-h", ["4F2A 81C0D3\nALL"], "on hold")
    assert {queue.instance.queue_names()[qid] for qid in queue.alice} == {"deferred"}


def test_alert_holds_and_unlock_release_frees_through_the_runner(
    queue: Queue, tmp_path: Path
) -> None:
    """A critical alert holds the account's mail; `postwatch queue` shows it and `unlock
    --release` frees it."""
    clock = SteppedClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    runner = ActionRunner(
        policy=Policy(lock_backends=["recording"], can_hold=True),
        journal=MemoryJournal(clock),
        clock=clock,
        locks=[RecordingLock()],
        hold=queue.hold,
    )
    runner.handle(
        ActionRequest(
            subject="alice@example.com",
            subject_kind="account",
            severity="critical",
            incident="3",
            lockable=True,
            queue_ids=(queue.forged,),
        )
    )
    names = queue.instance.queue_names()
    assert {names[qid] for qid in [*queue.alice, queue.forged]} == {"hold"}
    context = CommandContext(lambda dry_run: runner)
    shown = CliRunner().invoke(queue_command, ["alice@example.com"], obj=context)
    assert shown.exit_code == 0, shown.output
    assert all(qid in shown.output for qid in [*queue.alice, queue.forged])
    assert queue.bob not in shown.output and "4 message(s), 4 on hold" in shown.output
    freed = CliRunner().invoke(unlock_command, ["alice@example.com", "--release"], obj=context)
    assert freed.exit_code == 0, freed.output
    names = queue.instance.queue_names()
    assert {names[qid] for qid in [*queue.alice, queue.forged]} == {"deferred"}
