"""The action runner: policy decisions carried out, each one journaled before and after.

:meth:`ActionRunner.on_alert` is the pipeline's alert sink: it never raises, so an action
failing (a lock backend down, a notification refused) never stops detection.  The same
runner serves ``postwatch lock``, ``unlock`` and ``queue`` by hand.

Idempotence: every step can run twice with the effect of once (a lock backend checks what
is already locked, a hold skips held messages, a ban line is de-duplicated), so
:meth:`ActionRunner.recover` can simply run again what the journal shows as interrupted.
A notification interrupted between "started" and "done" is sent again: it may arrive twice,
it is never lost.  An interrupted automatic lock of an account that has since been
allowlisted is rolled back instead.  An alert raised again after a restart (the watch
loop's alerts are at least once) finds in the journal what it already had done, and does
only the rest.

A lock stops new sessions, not one already past RCPT when the map changed: its message is
queued a moment after the hold looked.  So an automatic hold of a locked account looks
again ``HOLD_SWEEPS`` seconds later (from :meth:`ActionRunner.tick`), as long as the
account is still locked.

With ``dry_run`` every step is journaled as ``dry-run`` with what it would have done, and
nothing else happens (no lock, no hold, no ban line, no notification).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from postwatch.actions import subject as subjects
from postwatch.actions.banlog import BanLog
from postwatch.actions.hold import QueuedMessage, QueueHold
from postwatch.actions.journal import Journal, JournalEntry
from postwatch.actions.lock import LockBackend
from postwatch.actions.notice import incident_notice, text_notice
from postwatch.actions.notify import Notice, Notifier
from postwatch.actions.policy import ActionRequest, Outcome, Policy, Step
from postwatch.clock import Clock, SystemClock
from postwatch.errors import ActionError

log = logging.getLogger(__name__)

AUTOMATIC = "postwatch"
HOLD_SWEEPS = (2.0, 30.0)
"""Seconds after an automatic lock and hold when the account's queue is looked at again."""
REPEATED_WITHIN = timedelta(days=1)
"""How long the journal is searched for what an alert raised again already had done."""


class Sweep(NamedTuple):
    """A hold to look at again: ``step`` once more at ``due``, then after ``later`` seconds."""

    due: datetime
    later: tuple[float, ...]
    step: Step
    incident: str
    reason: str


class ActionRunner:
    """Runs steps through the journal, for alerts and for the admin's commands."""

    def __init__(
        self,
        *,
        policy: Policy,
        journal: Journal,
        clock: Clock | None = None,
        locks: Sequence[LockBackend] = (),
        hold: QueueHold | None = None,
        ban_log: BanLog | None = None,
        notifier: Notifier | None = None,
        dry_run: bool = False,
        aliases: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.policy = policy
        self.journal = journal
        self.clock = clock or SystemClock()
        self.locks = {backend.name: backend for backend in locks}
        self.hold = hold
        self.ban_log = ban_log
        self.notifier = notifier
        self.dry_run = dry_run
        self.aliases = {k.lower(): tuple(v) for k, v in (aliases or {}).items()}
        self._sweeps: dict[str, Sweep] = {}  # account -> its next look; gone after the last

    # --- alerts -------------------------------------------------------------------------

    def on_alert(self, alert: Any) -> None:
        """Pipeline sink: act on one alert; log, never raise."""
        try:
            self.handle(ActionRequest.from_alert(alert))
        except Exception:
            log.exception("actions for an alert failed")

    def handle(self, request: ActionRequest) -> list[Outcome]:
        """Decide and run the steps an alert deserves, then notify with what was done."""
        decision = self.policy.decide(request, locks_last_hour=self.recent_locks())
        why = _reason(request)
        earlier = self._earlier(request.incident, why)
        outcomes = [
            self._skip(action, request.subject, request.incident, why, because)
            for action, because in decision.refused
            if (action, request.subject) not in earlier
        ]
        done = [
            earlier.get((step.action, step.subject))
            or self._run(step, incident=request.incident, reason=why, actor=AUTOMATIC)
            for step in decision.steps
        ]
        if decision.wants_notify and self.notifier is not None:
            told = earlier.get(("notify", request.subject))
            if told is None:
                notice = incident_notice(request, done, decision.refused, dry_run=self.dry_run)
                told = self.notify(notice, request.subject, request.incident, why, AUTOMATIC)
            done.append(told)
        self._plan_sweeps(decision.steps, done, request.incident, why)
        self.tick()
        return outcomes + done

    def _earlier(self, incident: str, reason: str) -> dict[tuple[str, str], Outcome]:
        """What this very alert (its incident, severity, score and signals) already had done,
        by (action, subject), but for what failed: an alert raised after the last commit is
        raised again when a restart reads on from that commit, and is not acted on twice."""
        if not incident:
            return {}
        return {
            (entry.action, entry.subject): Outcome(
                entry.action, entry.subject, entry.state, entry.result, entry.id
            )
            for entry in self.journal.entries(since=self.clock.now() - REPEATED_WITHIN)
            if entry.incident == incident
            and entry.reason == reason
            and entry.actor == AUTOMATIC
            and entry.state != "failed"
        }

    def _plan_sweeps(
        self, steps: Sequence[Step], done: Sequence[Outcome], incident: str, reason: str
    ) -> None:
        states = {outcome.action: outcome.state for outcome in done}
        if states.get("hold") != "done":
            return
        if any(action.startswith("lock:") and state == "done" for action, state in states.items()):
            step = next(step for step in steps if step.action == "hold")
            due = self.clock.now() + timedelta(seconds=HOLD_SWEEPS[0])
            self._sweeps[step.subject] = Sweep(due, HOLD_SWEEPS[1:], step, incident, reason)

    def _sweep(self) -> None:
        """Hold what reached the queue of a locked account since its hold, when due."""
        now, hold = self.clock.now(), self.hold
        for account, sweep in list(self._sweeps.items()):
            if sweep.due > now:
                continue
            locked = hold is not None and bool(self.locked_backends(account))
            if locked and sweep.later:
                due = sweep.due + timedelta(seconds=sweep.later[0])
                self._sweeps[account] = sweep._replace(due=due, later=sweep.later[1:])
            else:  # the last look, or unlocked meanwhile
                del self._sweeps[account]
            if hold is None or not locked:
                continue
            detail = sweep.step.detail
            waiting = hold.of_account(detail.get("senders", []), detail.get("queue_ids", []))
            if any(message.queue_name != "hold" for message in waiting):
                self._run(sweep.step, incident=sweep.incident, reason=sweep.reason, actor=AUTOMATIC)

    def recent_locks(self) -> int:
        """Accounts locked automatically in the last hour (the lock cap counts these)."""
        since = self.clock.now() - timedelta(hours=1)
        return len(
            {
                entry.subject
                for entry in self.journal.entries(action="lock:", since=since)
                if entry.actor == AUTOMATIC
                and entry.state in ("started", "done")
                and entry.started > since
            }
        )

    # --- by hand ------------------------------------------------------------------------

    def lock(
        self,
        account: str,
        *,
        actor: str,
        reason: str = "locked by hand",
        force: bool = False,
        hold: bool = True,
    ) -> list[Outcome]:
        """Lock ``account`` in every backend (and hold its mail), as ``postwatch lock`` does."""
        account = subjects.account(account)
        if self.policy.allowlisted(account) and not force:
            raise ActionError(f"{account} is allowlisted: not locking it without --force")
        if not self.locks:
            raise ActionError("no lock backend is configured")
        steps = [Step(f"lock:{name}", account, {}) for name in self.locks]
        if hold and self.hold is not None:
            steps.append(
                Step("hold", account, {"senders": self.senders_of(account), "queue_ids": []})
            )
        outcomes = [self._run(step, incident="", reason=reason, actor=actor) for step in steps]
        self._tell(
            f"manual:lock:{account}",
            f"postwatch: {account} locked by {actor}",
            outcomes,
            account,
            reason,
            actor,
        )
        return outcomes

    def unlock(
        self,
        account: str,
        *,
        actor: str,
        release: bool = False,
        reason: str = "unlocked by hand",
        every_backend: bool = False,
    ) -> list[Outcome]:
        """Undo every backend that locked ``account``; release its held mail if asked."""
        account = subjects.account(account)
        names = list(self.locks) if every_backend else self.locked_backends(account)
        steps = [Step(f"unlock:{name}", account, {}) for name in names]
        if release and self.hold is not None:
            steps.append(Step("release", account, {"queue_ids": self.held_ids(account)}))
        if not steps:
            raise ActionError(
                f"{account} is not locked by postwatch (use --every-backend to "
                "unlock it everywhere anyway)"
            )
        outcomes = [self._run(step, incident="", reason=reason, actor=actor) for step in steps]
        self._tell(
            f"manual:unlock:{account}",
            f"postwatch: {account} unlocked by {actor}",
            outcomes,
            account,
            reason,
            actor,
        )
        return outcomes

    def locked_backends(self, account: str) -> list[str]:
        """Backends whose last journaled lock/unlock of ``account`` was a lock, or that say
        they hold it locked now."""
        names = []
        history = self.journal.entries(subject=account)
        for name, backend in self.locks.items():
            last = next(
                (
                    e
                    for e in history
                    if e.action in (f"lock:{name}", f"unlock:{name}")
                    and e.state in ("started", "done")
                ),
                None,
            )
            if (last is not None and last.action.startswith("lock:")) or backend.is_locked(account):
                names.append(name)
        return names

    def senders_of(self, account: str) -> list[str]:
        """The envelope sender addresses of an account: its login if it is one, its aliases."""
        account = account.lower()
        own = [account] if "@" in account else []
        return list(dict.fromkeys(own + [a.lower() for a in self.aliases.get(account, ())]))

    def held_ids(self, account: str) -> list[str]:
        """Queue IDs postwatch held for ``account`` and that sit in the hold queue now, plus
        held messages from its addresses."""
        if self.hold is None:
            return []
        journaled = [
            qid
            for entry in self.journal.entries(subject=account, action="hold")
            if entry.state == "done"
            for qid in entry.detail.get("held", [])
        ]
        return [
            m.queue_id
            for m in self.hold.of_account(self.senders_of(account), journaled)
            if m.queue_name == "hold"
        ]

    def queue(self, account: str) -> list[QueuedMessage]:
        """The account's queued mail (``postwatch queue``)."""
        account = subjects.account(account)
        if self.hold is None:
            raise ActionError("no queue access is configured ([actions.hold])")
        journaled = [
            qid
            for entry in self.journal.entries(subject=account, action="hold")
            for qid in entry.detail.get("held", [])
        ]
        return self.hold.of_account(self.senders_of(account), journaled)

    # --- recovery and time --------------------------------------------------------------

    def recover(self) -> list[Outcome]:
        """Finish (or roll back) every step a previous run left ``started``."""
        outcomes = []
        for entry in self.journal.unfinished():
            try:
                outcomes.append(self._recover(entry))
            except Exception as exc:
                log.exception("recovering journal entry %d failed", entry.id)
                self.journal.finish(entry.id, "failed", f"interrupted; recovery failed: {exc}")
                outcomes.append(Outcome(entry.action, entry.subject, "failed", str(exc), entry.id))
        return outcomes

    def _recover(self, entry: JournalEntry) -> Outcome:
        if entry.action == "notify":
            if self.notifier is None or self.dry_run:
                return self._end(entry, "failed", "interrupted; no notifier to send it again")
            notice = Notice(
                f"recovered:{entry.id}",
                str(entry.detail.get("severity", "")),
                str(entry.detail.get("title", "")),
                str(entry.detail.get("body", "")),
            )
            self.notifier.submit(
                notice, self._finisher(entry.id, "sent again after an interruption: ")
            )
            self.notifier.tick()
            return Outcome(entry.action, entry.subject, "started", "queued again", entry.id)
        if (
            entry.action.startswith("lock:")
            and entry.actor == AUTOMATIC
            and self.policy.allowlisted(entry.subject)
        ):
            backend = self.locks.get(entry.action.partition(":")[2])
            undone = backend.unlock(entry.subject) if backend else "backend gone"
            return self._end(
                entry, "failed", f"rolled back: the account is allowlisted now ({undone})"
            )
        result, detail = self._perform(
            Step(entry.action, entry.subject, entry.detail), entry.incident
        )
        return self._end(entry, "done", f"finished after an interruption: {result}", detail)

    def tick(self) -> None:
        """Look again at held queues and send notifications when due (call it now and
        then: the watch loop does)."""
        if self._sweeps:
            try:
                self._sweep()
            except Exception:
                log.exception("looking again at a held queue failed")
        if self.notifier is not None:
            try:
                self.notifier.tick()
            except Exception:
                log.exception("sending notifications failed")

    def close(self) -> None:
        """Release the journal's database connections."""
        self.journal.close()

    # --- steps --------------------------------------------------------------------------

    def _run(self, step: Step, *, incident: str, reason: str, actor: str) -> Outcome:
        entry_id = self.journal.start(
            action=step.action,
            subject=step.subject,
            incident=incident,
            actor=actor,
            reason=reason,
            detail=step.detail,
        )
        if self.dry_run:
            result = f"would run {step.action} for {step.subject}"
            self.journal.finish(entry_id, "dry-run", result)
            return Outcome(step.action, step.subject, "dry-run", result, entry_id)
        try:
            result, detail = self._perform(step, incident)
        except Exception as exc:
            text = str(exc) if isinstance(exc, ActionError) else f"{type(exc).__name__}: {exc}"
            log.error("%s %s failed: %s", step.action, subjects.shown(step.subject), text)
            self.journal.finish(entry_id, "failed", text)
            return Outcome(step.action, step.subject, "failed", text, entry_id)
        self.journal.finish(entry_id, "done", result, detail)
        return Outcome(step.action, step.subject, "done", result, entry_id)

    def _perform(self, step: Step, incident: str) -> tuple[str, dict[str, Any] | None]:
        kind, _sep, name = step.action.partition(":")
        if kind in ("lock", "unlock"):
            backend = self.locks.get(name)
            if backend is None:
                raise ActionError(f"lock backend {name!r} is not configured")
            return (backend.lock if kind == "lock" else backend.unlock)(step.subject), None
        if kind in ("hold", "release"):
            if self.hold is None:
                raise ActionError("no queue hold is configured")
            if kind == "hold":
                change = self.hold.hold(
                    step.detail.get("senders", []), step.detail.get("queue_ids", [])
                )
                return change.text, {**step.detail, "held": list(change.queue_ids)}
            change = self.hold.release(step.detail.get("queue_ids", []))
            return change.text, {**step.detail, "released": list(change.queue_ids)}
        if kind == "ban":
            if self.ban_log is None:
                raise ActionError("no ban log is configured")
            return self.ban_log.ban(
                step.subject,
                reason=str(step.detail.get("reason", "")),
                subject_name=str(step.detail.get("for", "")),
                incident=incident,
            ), None
        raise ActionError(f"unknown action {step.action!r}")

    def _skip(self, action: str, subject: str, incident: str, reason: str, because: str) -> Outcome:
        entry_id = self.journal.start(
            action=action, subject=subject, incident=incident, actor=AUTOMATIC, reason=reason
        )
        self.journal.finish(entry_id, "skipped", because)
        return Outcome(action, subject, "skipped", because, entry_id)

    def notify(
        self, notice: Notice, subject: str, incident: str, reason: str, actor: str
    ) -> Outcome:
        """Journal and queue a notification (the journal entry ends when it is delivered)."""
        if self.notifier is None:
            raise ActionError("no notifier is configured")
        entry_id = self.journal.start(
            action="notify",
            subject=subject,
            incident=incident,
            actor=actor,
            reason=reason,
            detail={"severity": notice.severity, "title": notice.title, "body": notice.body},
        )
        if self.dry_run:
            self.journal.finish(entry_id, "dry-run", f"would notify: {notice.title}")
            return Outcome("notify", subject, "dry-run", notice.title, entry_id)
        if not self.notifier.submit(notice, self._finisher(entry_id, "")):
            self.journal.finish(entry_id, "skipped", "already notified at this severity")
            return Outcome("notify", subject, "skipped", "already notified", entry_id)
        return Outcome("notify", subject, "started", "queued", entry_id)

    def _finisher(self, entry_id: int, prefix: str) -> Any:
        def finish(ok: bool, detail: str) -> None:
            self.journal.finish(entry_id, "done" if ok else "failed", prefix + detail)

        return finish

    def _end(
        self, entry: JournalEntry, state: str, result: str, detail: dict[str, Any] | None = None
    ) -> Outcome:
        self.journal.finish(entry.id, state, result, detail)
        return Outcome(entry.action, entry.subject, state, result, entry.id)

    def _tell(
        self, key: str, title: str, outcomes: list[Outcome], account: str, reason: str, actor: str
    ) -> None:
        if self.notifier is None:
            return
        lines = [f"{title}.", f"Reason: {subjects.printable(reason, 300)}", "", "Actions:"]
        lines += [
            f"  {o.action}: {o.state} - {subjects.printable(o.result, 300)}" for o in outcomes
        ]
        lines += [
            "",
            "Commands:",
            f"  postwatch queue {account}",
            f"  postwatch actions --subject {account}",
        ]
        notice = text_notice(f"{key}:{self.clock.now().isoformat()}", "warning", title, lines)
        outcomes.append(self.notify(notice, account, "", reason, actor))
        self.tick()


def _reason(request: ActionRequest) -> str:
    """One line for the journal's ``reason``: severity, score and signals."""
    signals = ", ".join(dict.fromkeys(signal for signal, _detail, _points in request.reasons))
    return subjects.printable(
        f"{request.severity} (score {request.score}): {signals or 'no signal named'}", 300
    )
