"""The policy and the runner: what an alert leads to, the safety rules, dry runs, recovery."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from postwatch.actions.banlog import BanLog
from postwatch.actions.hold import QueueChange, QueuedMessage, QueueHold
from postwatch.actions.journal import MemoryJournal
from postwatch.actions.lock import RecordingLock
from postwatch.actions.notify import Notifier, RecordingSender
from postwatch.actions.policy import ActionRequest, Policy
from postwatch.actions.runner import ActionRunner
from postwatch.clock import SteppedClock
from postwatch.errors import ActionError

START = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


class RecordingHold(QueueHold):
    """A queue in memory: holds and releases recorded instead of run."""

    def __init__(self, queued: Sequence[QueuedMessage] = ()) -> None:
        super().__init__()
        self.queued = {m.queue_id: m for m in queued}
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def messages(self) -> list[QueuedMessage]:
        return list(self.queued.values())

    def _postsuper(self, flag: str, queue_ids: Sequence[str], verb: str) -> QueueChange:
        self.calls.append((flag, tuple(queue_ids)))
        for qid in queue_ids:
            name = "hold" if flag == "-h" else "deferred"
            self.queued[qid] = self.queued[qid]._replace(queue_name=name)
        return QueueChange(tuple(queue_ids), len(queue_ids), f"{len(queue_ids)} {verb}")


def queued(queue_id: str, sender: str, queue_name: str = "deferred") -> QueuedMessage:
    return QueuedMessage(queue_id, queue_name, sender, START, 900, ("victim@example.net",))


class World:
    """A runner with recording backends, a ban log in a temp dir and a recording sender."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        dry_run: bool = False,
        max_locks: int = 5,
        allow: Sequence[str] = ("postmaster@example.com",),
    ) -> None:
        self.clock = SteppedClock(START)
        self.journal = MemoryJournal(self.clock)
        self.maps = RecordingLock("postfix-map")
        self.dovecot = RecordingLock("dovecot")
        self.hold = RecordingHold(
            [
                queued("4F2A81C0D3", "alice@example.com"),
                queued("5B3C92D1E4", "forged@example.org"),
                queued("6C4DA3E2F5", "bob@example.com"),
            ]
        )
        self.ban_log = BanLog(tmp_path / "ban.log", clock=self.clock, pid=1)
        self.sender = RecordingSender()
        self.notifier = Notifier(self.sender, clock=self.clock)
        self.policy = Policy(
            allow=allow,
            trusted_networks=[ipaddress.ip_network("192.0.2.0/24")],
            max_locks_per_hour=max_locks,
            lock_backends=["postfix-map", "dovecot"],
            can_hold=True,
            can_ban=True,
        )
        self.dry_run = dry_run
        self.runner = self._runner()

    def _runner(self) -> ActionRunner:
        return ActionRunner(
            policy=self.policy,
            journal=self.journal,
            clock=self.clock,
            locks=[self.maps, self.dovecot],
            hold=self.hold,
            ban_log=self.ban_log,
            notifier=self.notifier,
            dry_run=self.dry_run,
        )

    def restart(self) -> None:
        """A new process: the same journal and backends, a notifier that has told nothing."""
        self.notifier = Notifier(self.sender, clock=self.clock)
        self.runner = self._runner()
        self.runner.recover()

    def states(self) -> list[tuple[str, str, str]]:
        return [(e.action, e.subject, e.state) for e in reversed(self.journal.entries())]


def request(
    subject: str = "alice@example.com",
    *,
    severity: str = "critical",
    lockable: bool = True,
    kind: str = "account",
    incident: str = "12",
    ips: Sequence[str] = ("203.0.113.5", "192.0.2.10"),
    queue_ids: Sequence[str] = ("5B3C92D1E4",),
) -> ActionRequest:
    return ActionRequest(
        subject=subject,
        subject_kind=kind,
        severity=severity,
        incident=incident,
        lockable=lockable,
        score=130,
        rule="volume",
        reasons=(("volume", "450 messages in 1h", 60),),
        ips=tuple(ips),
        queue_ids=tuple(queue_ids),
        ts=START,
    )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_critical_lockable_alert_locks_holds_bans_and_notifies(world: World) -> None:
    """Critical with own-session evidence: every lock backend, hold, ban, then one message."""
    world.runner.handle(request())
    assert world.maps.locked == {"alice@example.com"} == world.dovecot.locked
    assert world.hold.calls == [("-h", ("4F2A81C0D3", "5B3C92D1E4"))]
    assert [r.ip for r in world.ban_log.records()] == ["203.0.113.5"]
    assert world.states() == [
        ("ban", "alice@example.com", "skipped"),  # 192.0.2.10 is trusted
        ("lock:postfix-map", "alice@example.com", "done"),
        ("lock:dovecot", "alice@example.com", "done"),
        ("hold", "alice@example.com", "done"),
        ("ban", "203.0.113.5", "done"),
        ("notify", "alice@example.com", "done"),
    ]
    [(_target, title, body, severity)] = world.sender.sent
    assert severity == "critical" and "incident 12" in title
    assert "192.0.2.10 is in a trusted network" in body and 'hold "alice@example.com": done' in body
    hold_entry = world.journal.entries(action="hold")[0]
    assert hold_entry.detail["held"] == ["4F2A81C0D3", "5B3C92D1E4"]
    assert hold_entry.incident == "12" and hold_entry.actor == "postwatch"


def test_failed_logins_alone_never_lock(world: World) -> None:
    """An alert without own-session evidence bans the IP but neither locks nor holds."""
    world.runner.handle(request(lockable=False))
    assert world.maps.calls == [] and world.dovecot.calls == [] and world.hold.calls == []
    skipped = {e.action: e.result for e in world.journal.entries() if e.state == "skipped"}
    assert "failed logins alone never lock" in skipped["lock"]
    assert [r.ip for r in world.ban_log.records()] == ["203.0.113.5"]


def test_allowlisted_account_is_never_locked(world: World) -> None:
    """An allowlisted account is notified about but never locked."""
    world.runner.handle(request("PostMaster@example.com"))
    assert world.maps.calls == []
    assert any(e.result == "the account is allowlisted" for e in world.journal.entries())


def test_unsafe_subject_is_refused_and_no_backend_is_called(world: World) -> None:
    """A username with a newline and map syntax reaches no lock backend; the refusal is journaled."""
    world.runner.handle(request("a@b.example\nroot OK"))
    assert world.maps.calls == [] and world.dovecot.calls == []
    [lock_skip] = world.journal.entries(action="lock")
    assert lock_skip.state == "skipped" and "refusing account name" in lock_skip.result


def test_lock_cap_stops_automatic_locks_and_notifies_instead(tmp_path: Path) -> None:
    """Past max_locks_per_hour an alert is notified with the lock command, and the cap resets."""
    world = World(tmp_path, max_locks=2)
    for number, name in enumerate(("a", "b", "c"), start=1):
        world.runner.handle(request(f"{name}@example.com", incident=str(number)))
    assert world.maps.locked == {"a@example.com", "b@example.com"}
    body = world.sender.sent[-1][2]
    assert "cap of 2 automatic locks per hour" in body and "postwatch lock c@example.com" in body
    world.clock.step(3600)
    world.runner.handle(request("d@example.com", incident="4"))
    assert "d@example.com" in world.maps.locked


def test_manual_locks_do_not_count_against_the_cap(tmp_path: Path) -> None:
    """Locks by hand are not automatic and leave the cap untouched."""
    world = World(tmp_path, max_locks=1)
    world.runner.lock("x@example.com", actor="root")
    world.runner.handle(request("y@example.com"))
    assert "y@example.com" in world.maps.locked


def test_warning_only_notifies(world: World) -> None:
    """With the default policy a warning sends a message and changes nothing."""
    world.runner.handle(request(severity="warning"))
    assert world.states() == [("notify", "alice@example.com", "done")]
    assert not world.ban_log.path.exists()


def test_dry_run_journals_what_would_be_done_and_does_nothing(tmp_path: Path) -> None:
    """--dry-run: every step is journaled as dry-run; no lock, hold, ban line or message."""
    world = World(tmp_path, dry_run=True)
    world.runner.handle(request())
    assert world.maps.calls == [] and world.hold.calls == [] and world.sender.sent == []
    assert not world.ban_log.path.exists()
    states = {state for _action, _subject, state in world.states()}
    assert states == {"dry-run", "skipped"}
    assert any(e.action == "notify" and e.state == "dry-run" for e in world.journal.entries())


def test_a_failing_backend_is_journaled_and_the_rest_still_runs(world: World) -> None:
    """One backend failing marks its step failed; the other steps and the message go on."""
    world.maps.fail = True
    world.runner.handle(request())
    assert ("lock:postfix-map", "alice@example.com", "failed") in world.states()
    assert world.dovecot.locked == {"alice@example.com"}
    assert 'lock:postfix-map "alice@example.com": failed' in world.sender.sent[0][2]


def test_on_alert_never_raises(world: World) -> None:
    """The pipeline sink logs and swallows even a broken journal."""

    def broken(**_kwargs: Any) -> int:
        raise RuntimeError("disk full")

    world.journal.start = broken  # type: ignore[method-assign]
    world.runner.on_alert(
        SimpleNamespace(
            subject="alice@example.com",
            subject_kind="account",
            severity="critical",
            incident="1",
            lockable=True,
        )
    )


def test_from_alert_reads_the_detector_alert() -> None:
    """An alert's reasons and evidence become the request; a missing lockable reads False."""
    alert = SimpleNamespace(
        ts=START,
        subject="alice@example.com",
        subject_kind="account",
        severity="critical",
        score=130,
        incident="12",
        host="mx1",
        reasons=(
            SimpleNamespace(signal="new_origin", detail="first login from VN", points=40),
            SimpleNamespace(signal="volume", detail="450 messages", points=60),
        ),
        evidence={
            "client_ips": {"203.0.113.5": 12},
            "countries": ["VN"],
            "messages": 450,
            "helos": "ylmf-pc",
            "sample_queue_ids": ["4F2A81C0D3"],
            "lockable": "no",
        },
    )
    parsed = ActionRequest.from_alert(alert)
    assert parsed.rule == "volume" and parsed.lockable is False
    assert parsed.ips == ("203.0.113.5",) and parsed.helos == ("ylmf-pc",)
    assert parsed.counts == (("messages", 450),) and parsed.queue_ids == ("4F2A81C0D3",)
    assert ActionRequest.from_alert(SimpleNamespace(**vars(alert), lockable=True)).lockable


# --- recovery -----------------------------------------------------------------------------


def test_an_alert_raised_again_after_a_restart_is_acted_on_once(world: World) -> None:
    """A restart reads on from the last commit, so an alert raised after it is raised
    again: the new process finds its steps in the journal and runs none of them twice."""
    world.runner.handle(request())
    world.clock.step(5)
    world.restart()
    outcomes = world.runner.handle(request())
    assert world.maps.calls == [("lock", "alice@example.com")] == world.dovecot.calls
    assert len(world.hold.calls) == 1 and len(list(world.ban_log.records())) == 1
    assert len(world.sender.sent) == 1
    assert len(world.journal.entries()) == 6  # nothing journaled again
    assert [(o.action, o.state) for o in outcomes] == [
        ("lock:postfix-map", "done"),
        ("lock:dovecot", "done"),
        ("hold", "done"),
        ("ban", "done"),
        ("notify", "done"),
    ]


def test_an_alert_cut_short_by_a_crash_does_the_rest_when_raised_again(world: World) -> None:
    """Killed after its first lock, the alert raised again runs only the steps it had not
    reached, and the message tells what was done before the crash too."""
    entry = world.journal.start(
        action="lock:postfix-map",
        subject="alice@example.com",
        incident="12",
        actor="postwatch",
        reason="critical (score 130): volume",
    )
    world.journal.finish(entry, "done", "alice@example.com added to hash:/etc/postfix/x")
    world.restart()
    world.runner.handle(request())
    assert world.maps.calls == [] and world.dovecot.calls == [("lock", "alice@example.com")]
    assert len(world.hold.calls) == 1 and len(list(world.ban_log.records())) == 1
    [(_target, _title, body, _severity)] = world.sender.sent
    assert 'lock:postfix-map "alice@example.com": done - alice@example.com added' in body


def test_an_escalation_of_the_same_incident_is_acted_on(world: World) -> None:
    """Warning then critical: another alert of the incident, not the same one again."""
    world.runner.handle(request(severity="warning"))
    world.runner.handle(request())
    assert world.maps.calls == [("lock", "alice@example.com")]
    assert [severity for *_rest, severity in world.sender.sent] == ["warning", "critical"]


def test_interrupted_lock_is_finished_once_at_the_next_start(world: World) -> None:
    """A lock left started is run again (idempotent) and marked done; nothing is left started."""
    world.maps.locked.add("alice@example.com")  # the crash came after the map was written
    entry = world.journal.start(
        action="lock:postfix-map", subject="alice@example.com", incident="12"
    )
    [outcome] = world.runner.recover()
    assert outcome.state == "done" and "already locked" in outcome.result
    assert world.journal.unfinished() == []
    assert world.journal.entries()[0].id == entry and world.maps.calls == [
        ("lock", "alice@example.com")
    ]


def test_interrupted_notification_is_sent_again(world: World) -> None:
    """A notification left started is delivered at the next start and its entry closed."""
    world.journal.start(
        action="notify",
        subject="alice@example.com",
        incident="12",
        detail={"severity": "critical", "title": "t", "body": "b"},
    )
    world.runner.recover()
    assert [(title, body) for _t, title, body, _s in world.sender.sent] == [("t", "b")]
    assert world.journal.entries()[0].state == "done"


def test_interrupted_lock_of_a_now_allowlisted_account_is_rolled_back(world: World) -> None:
    """If the account was allowlisted since, the half-done lock is undone, not finished."""
    world.maps.locked.add("postmaster@example.com")
    world.journal.start(action="lock:postfix-map", subject="postmaster@example.com")
    [outcome] = world.runner.recover()
    assert outcome.state == "failed" and outcome.result.startswith("rolled back")
    assert world.maps.locked == set()


def test_interrupted_step_of_a_removed_backend_is_marked_failed(world: World) -> None:
    """An entry whose backend is no longer configured is closed as failed, not forgotten."""
    world.journal.start(action="lock:sql", subject="alice@example.com")
    [outcome] = world.runner.recover()
    assert outcome.state == "failed" and "not configured" in outcome.result
    assert world.journal.unfinished() == []


# --- by hand ------------------------------------------------------------------------------


def test_manual_lock_refuses_an_allowlisted_account_without_force(world: World) -> None:
    """postwatch lock on an allowlisted account needs --force."""
    with pytest.raises(ActionError, match="allowlisted"):
        world.runner.lock("postmaster@example.com", actor="root")
    world.runner.lock("postmaster@example.com", actor="root", force=True)
    assert "postmaster@example.com" in world.maps.locked
    assert world.journal.entries(action="lock:dovecot")[0].actor == "root"


def test_unlock_reverses_only_the_backends_that_locked(world: World) -> None:
    """unlock undoes the backends whose last journaled action was a lock, and no other."""
    world.runner.lock("alice@example.com", actor="root", hold=False)
    world.runner.unlock("alice@example.com", actor="root")
    world.dovecot.locked.clear()
    world.runner.lock("alice@example.com", actor="root", hold=False)
    world.dovecot.locked.discard("alice@example.com")
    entry = world.journal.start(action="unlock:dovecot", subject="alice@example.com")
    world.journal.finish(entry, "done", "unlocked elsewhere")
    world.maps.calls.clear()
    world.dovecot.calls.clear()
    world.runner.unlock("alice@example.com", actor="root")
    assert world.maps.calls == [("unlock", "alice@example.com")] and world.dovecot.calls == []


def test_unlock_with_release_releases_the_held_mail(world: World) -> None:
    """unlock --release takes the account's held messages out of hold."""
    world.runner.handle(request())
    world.runner.unlock("alice@example.com", actor="root", release=True)
    assert world.maps.locked == set() == world.dovecot.locked
    assert world.hold.calls[-1] == ("-H", ("4F2A81C0D3", "5B3C92D1E4"))
    assert {m.queue_name for m in world.hold.messages()} == {"deferred"}


def test_mail_queued_just_after_the_lock_is_held_by_the_next_look(world: World) -> None:
    """A session past RCPT when the map changed queues its message after the hold looked:
    the runner looks again 2 s later, holds it, and stops looking after 30 s more."""
    world.runner.handle(request())
    world.hold.queued["7D5EB4F3A6"] = queued("7D5EB4F3A6", "alice@example.com")
    world.runner.tick()
    assert world.hold.queued["7D5EB4F3A6"].queue_name == "deferred"  # not due yet
    world.clock.step(2)
    world.runner.tick()
    assert world.hold.calls[-1] == ("-h", ("7D5EB4F3A6",))
    held = world.journal.entries(action="hold")
    assert len(held) == 2 and held[0].detail["held"] == ["7D5EB4F3A6"]
    assert held[0].incident == "12" and held[0].actor == "postwatch"
    world.clock.step(30)
    world.runner.tick()  # the last look: nothing new, nothing journaled
    world.hold.queued["8E6FC5A4B7"] = queued("8E6FC5A4B7", "alice@example.com")
    world.clock.step(3600)
    world.runner.tick()
    assert len(world.journal.entries(action="hold")) == 2
    assert world.hold.queued["8E6FC5A4B7"].queue_name == "deferred"


def test_no_second_look_after_an_unlock(world: World) -> None:
    """Mail released by an unlock before the next look stays released."""
    world.runner.handle(request())
    world.runner.unlock("alice@example.com", actor="root", release=True)
    world.clock.step(2)
    world.runner.tick()
    assert {m.queue_name for m in world.hold.messages()} == {"deferred"}
    assert world.hold.calls[-1][0] == "-H"


def test_unlock_of_an_account_never_locked_is_an_error(world: World) -> None:
    """Unlocking an account postwatch never locked says so instead of touching backends."""
    with pytest.raises(ActionError, match="not locked by postwatch"):
        world.runner.unlock("carol@example.com", actor="root")
    assert world.maps.calls == []


def test_the_account_owners_own_addresses_are_never_banned(world: World) -> None:
    """An IP the stolen account confirmed as its own (its home line) is not banned with the
    attacker's."""
    home, attacker = "198.51.100.23", "203.0.113.5"
    req = request(ips=(home, attacker))._replace(known_ips=(home,))
    world.runner.handle(req)
    assert [r.ip for r in world.ban_log.records()] == [attacker]
