"""Notifications: one message per incident when it opens or escalates, rate-limited, retried.

A :class:`Notice` says what to tell whom (``key`` is the incident).  The :class:`Notifier`
drops a notice for an incident already told at the same or a higher severity, queues the
rest, and sends on :meth:`Notifier.tick`:

- at most ``burst`` messages per ``window`` seconds; when more notices wait than the budget
  allows, they go out together as one digest as soon as a slot frees;
- a failed message is retried after each of ``retry_delays`` and then given up (logged and
  reported through the notice's callback); a failure never raises into detection.

:class:`AppriseSender` delivers through Apprise (mail, Slack, Matrix, Telegram, ntfy,
webhooks ...), optionally with other URLs per severity.  Bodies are plain text
(``NotifyFormat.TEXT``): Apprise escapes them for HTML and Markdown targets, and the text
itself is built with :func:`postwatch.actions.subject.shown` for every attacker string.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple, Protocol

from postwatch.clock import Clock, SystemClock
from postwatch.errors import ActionError, ConfigError

log = logging.getLogger(__name__)

SEVERITY_RANK = {"notice": 1, "warning": 2, "critical": 3}
MAX_BODY = 30_000  # characters; long digests are cut (Telegram's limit is 4096, Apprise splits)

Callback = Callable[[bool, str], None]


class Notice(NamedTuple):
    """One incident's news."""

    key: str  # the incident: one message per key and severity
    severity: str
    title: str
    body: str


class Sender(Protocol):
    def targets(self, severity: str) -> Sequence[str]:
        """The destinations (named for logs, never with credentials) for a severity."""
        ...

    def send(self, target: str, title: str, body: str, severity: str) -> None:
        """Deliver one message to one target; raise :class:`ActionError` if it failed."""
        ...


class _Outgoing:
    """A message waiting to be sent (or re-sent): one notice or a digest of several.

    ``targets`` are the destinations it has not reached yet: a retry goes only to them.
    """

    __slots__ = ("attempts", "body", "callbacks", "due", "severity", "targets", "title")

    def __init__(self, severity: str, title: str, body: str, callbacks: list[Callback]) -> None:
        self.severity, self.title, self.body, self.callbacks = severity, title, body, callbacks
        self.attempts = 0
        self.due = 0.0
        self.targets: list[str] | None = None


class Notifier:
    """De-duplicates, rate-limits, digests and retries notices."""

    def __init__(
        self,
        sender: Sender,
        *,
        clock: Clock | None = None,
        burst: int = 5,
        window: float = 3600.0,
        retry_delays: Sequence[float] = (60, 300, 1800, 7200),
        remember: float = 7 * 86400.0,
    ) -> None:
        if burst < 1:
            raise ConfigError("must be at least 1", key="burst")
        self.sender = sender
        self.clock = clock or SystemClock()
        self.burst = burst
        self.window = window
        self.retry_delays = tuple(retry_delays)
        self.remember = remember
        self._told: dict[str, tuple[int, float]] = {}  # key -> (severity rank, when told)
        self._waiting: list[tuple[Notice, Callback | None]] = []
        self._retries: list[_Outgoing] = []
        self._sent_at: deque[float] = deque()

    # --- intake -----------------------------------------------------------------------

    def submit(self, notice: Notice, on_result: Callback | None = None) -> bool:
        """Queue ``notice`` unless its incident was already told at this severity or higher.

        ``on_result(ok, detail)`` is called once, when the message is delivered or given up.
        Returns whether the notice was queued.
        """
        now = self.clock.monotonic()
        self._expire(now)
        rank = SEVERITY_RANK.get(notice.severity, 0)
        told = self._told.get(notice.key)
        if told is not None and told[0] >= rank:
            return False
        self._told[notice.key] = (rank, now)
        # An unsent notice of the same incident is replaced by the escalated one.
        kept = []
        for queued, callback in self._waiting:
            if queued.key != notice.key:
                kept.append((queued, callback))
            elif callback is not None:
                callback(True, "superseded by a later notice of the same incident")
        self._waiting = [*kept, (notice, on_result)]
        return True

    def _expire(self, now: float) -> None:
        for key in [k for k, (_rank, when) in self._told.items() if now - when >= self.remember]:
            del self._told[key]
        while self._sent_at and now - self._sent_at[0] >= self.window:
            self._sent_at.popleft()

    # --- delivery ---------------------------------------------------------------------

    def tick(self) -> int:
        """Send what is due within the rate budget; returns how many messages went out."""
        now = self.clock.monotonic()
        self._expire(now)
        delivered = 0
        for outgoing in [item for item in self._retries if item.due <= now]:
            self._retries.remove(outgoing)
            delivered += self._attempt(outgoing, now)
        for severity in sorted(
            {n.severity for n, _cb in self._waiting}, key=lambda s: -SEVERITY_RANK.get(s, 0)
        ):
            budget = self.burst - len(self._sent_at)
            if budget <= 0:
                break
            batch = [(n, cb) for n, cb in self._waiting if n.severity == severity]
            self._waiting = [(n, cb) for n, cb in self._waiting if n.severity != severity]
            if len(batch) <= budget:
                for item in batch:
                    delivered += self._attempt(self._compose(severity, [item]), now)
            else:
                delivered += self._attempt(self._compose(severity, batch), now)
        return delivered

    def _compose(self, severity: str, batch: list[tuple[Notice, Callback | None]]) -> _Outgoing:
        callbacks = [cb for _n, cb in batch if cb is not None]
        if len(batch) == 1:
            notice = batch[0][0]
            return _Outgoing(severity, notice.title, _cut(notice.body), callbacks)
        title = f"postwatch: {len(batch)} {severity} incidents"
        body = (
            f"{len(batch)} incidents reached {severity} while notifications were "
            f"rate-limited ({self.burst} per {self.window:g}s).\n"
        )
        body += "".join(f"\n{'=' * 60}\n{n.title}\n\n{n.body}\n" for n, _cb in batch)
        return _Outgoing(severity, title, _cut(body), callbacks)

    def _attempt(self, outgoing: _Outgoing, now: float) -> int:
        outgoing.attempts += 1
        if outgoing.targets is None:
            outgoing.targets = list(self.sender.targets(outgoing.severity))
        failures = []
        for target in list(outgoing.targets):
            try:
                self.sender.send(target, outgoing.title, outgoing.body, outgoing.severity)
            except Exception as exc:  # a notification failure never stops detection
                failures.append(f"{target}: {type(exc).__name__}: {exc}")
            else:
                outgoing.targets.remove(target)
        if not failures:
            self._sent_at.append(now)
            self._report(outgoing, True, f"sent (attempt {outgoing.attempts})")
            return 1
        detail = "; ".join(failures)
        if outgoing.attempts <= len(self.retry_delays):
            delay = self.retry_delays[outgoing.attempts - 1]
            outgoing.due = now + delay
            self._retries.append(outgoing)
            log.warning(
                "notification %r failed (attempt %d), retrying in %gs: %s",
                outgoing.title,
                outgoing.attempts,
                delay,
                detail,
            )
        else:
            log.error(
                "notification %r given up after %d attempts: %s",
                outgoing.title,
                outgoing.attempts,
                detail,
            )
            self._report(outgoing, False, f"given up after {outgoing.attempts} attempts: {detail}")
        return 0

    def _report(self, outgoing: _Outgoing, ok: bool, detail: str) -> None:
        for callback in outgoing.callbacks:
            try:
                callback(ok, detail)
            except Exception:  # the journal failing must not lose the other callbacks
                log.exception("notification callback failed")

    def pending(self) -> int:
        """Notices waiting for the rate budget plus messages waiting for a retry."""
        return len(self._waiting) + len(self._retries)

    def remembered(self) -> int:
        """Incidents remembered as already told."""
        return len(self._told)


def _cut(body: str) -> str:
    return body if len(body) <= MAX_BODY else body[:MAX_BODY] + "\n[... cut]"


class AppriseSender:
    """Delivers through Apprise to every URL, plus the URLs configured for the severity."""

    def __init__(
        self, urls: Sequence[str], per_severity: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        import apprise  # imported here: only a configured notifier needs it

        self._apprise = apprise
        per_severity = dict(per_severity or {})
        unknown = set(per_severity) - set(SEVERITY_RANK)
        if unknown:
            raise ConfigError(f"unknown severity {sorted(unknown)[0]!r}", key="notify.severity")
        self._urls = list(urls)
        self._per_severity = {
            severity: list(per_severity.get(severity, ())) for severity in SEVERITY_RANK
        }
        self._names: dict[str, str] = {}  # url -> its name in logs: "#2 mailto://host"
        self._targets: dict[str, apprise.Apprise] = {}
        every = [*self._urls, *(u for group in self._per_severity.values() for u in group)]
        for url in dict.fromkeys(every):
            target = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
            if not target.add(url):
                raise ConfigError(
                    f"Apprise does not understand the URL {_redact(url)}", key="notify.urls"
                )
            name = f"#{len(self._names) + 1} {_redact(url)}"
            self._names[url] = name
            self._targets[name] = target
        if not self._targets:
            raise ConfigError("no notification URL configured", key="notify.urls")

    def targets(self, severity: str) -> list[str]:
        chosen = self._urls + self._per_severity.get(severity, [])
        return list(dict.fromkeys(self._names[url] for url in chosen))

    def send(self, target: str, title: str, body: str, severity: str) -> None:
        apprise = self._apprise
        notify_type = (
            apprise.NotifyType.FAILURE
            if severity == "critical"
            else apprise.NotifyType.WARNING
            if severity == "warning"
            else apprise.NotifyType.INFO
        )
        with apprise.LogCapture(level=logging.WARNING) as captured:
            ok = self._targets[target].notify(
                body=body,
                title=title,
                notify_type=notify_type,
                body_format=apprise.NotifyFormat.TEXT,
            )
        if not ok:
            said = " ".join(captured.getvalue().split())[-400:]
            raise ActionError(f"Apprise could not deliver: {said or 'no reason given'}")


def _redact(url: str) -> str:
    """A URL's name for logs and the journal: scheme, host and path, never credentials."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    return f"{scheme}://{rest.rpartition('@')[2].partition('?')[0][:80]}"


class RecordingSender:
    """A sender that remembers what it was given (unit tests); fails ``fail`` times first."""

    def __init__(self, fail: int = 0, targets: Sequence[str] = ("recording",)) -> None:
        self.fail = fail
        self._targets = list(targets)
        self.sent: list[tuple[str, str, str, str]] = []  # (target, title, body, severity)
        self.attempts = 0

    def targets(self, severity: str) -> list[str]:
        return list(self._targets)

    def send(self, target: str, title: str, body: str, severity: str) -> None:
        self.attempts += 1
        if self.fail > 0:
            self.fail -= 1
            raise ActionError("recording sender told to fail")
        self.sent.append((target, title, body, severity))
