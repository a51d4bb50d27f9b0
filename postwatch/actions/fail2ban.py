"""What ``postwatch fail2ban-hook`` does when fail2ban bans or unbans an IP.

fail2ban's ``action.d/postwatch.conf`` runs ``postwatch fail2ban-hook ban|unban --ip IP
--jail NAME`` for every ban in the jails that use it.  postwatch never bans anything here
(fail2ban's firewall action did): it journals the event, links the IP to the accounts it
touched (from postwatch's own ban lines, and from a ``linked`` lookup the caller may give,
for example the store's sessions), and notifies.

The hook is a short-lived process, so its notifications are rate-limited through the
journal (at most the notifier's ``burst`` per ``window`` for actor ``fail2ban``) and not
retried: a failed delivery is journaled as failed and logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta

from postwatch.actions import subject as subjects
from postwatch.actions.notice import text_notice
from postwatch.actions.policy import Outcome
from postwatch.actions.runner import ActionRunner
from postwatch.errors import UnsafeSubjectError, UsageError

EVENTS = ("ban", "unban")
ACTOR = "fail2ban"
_JAIL = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\Z")
MAX_LINKED = 20


def record_event(
    runner: ActionRunner,
    event: str,
    ip: str,
    jail: str,
    *,
    linked: Callable[[str], Iterable[str]] | None = None,
) -> list[Outcome]:
    """Journal a fail2ban ban/unban, link it to accounts, and notify (rate-limited)."""
    if event not in EVENTS:
        raise UsageError(f"event must be ban or unban, not {subjects.shown(event)}")
    address = subjects.ip(ip)
    if not _JAIL.match(jail):
        raise UnsafeSubjectError(f"refusing jail name {subjects.shown(jail)}")
    accounts = _accounts(runner, address, linked)
    reason = f"fail2ban jail {jail}"
    entry_id = runner.journal.start(
        action=f"fail2ban-{event}",
        subject=address,
        actor=ACTOR,
        reason=reason,
        detail={"jail": jail, "accounts": accounts},
    )
    result = (
        f"{event} recorded; linked to {len(accounts)} account(s)"
        if accounts
        else f"{event} recorded; no account known for this IP"
    )
    runner.journal.finish(entry_id, "done", result)
    outcomes = [Outcome(f"fail2ban-{event}", address, "done", result, entry_id)]
    notifier = runner.notifier
    if notifier is None:
        return outcomes
    since = runner.clock.now() - timedelta(seconds=notifier.window)
    sent = [e for e in runner.journal.entries(action="notify", since=since) if e.actor == ACTOR]
    if len(sent) >= notifier.burst:
        entry = runner.journal.start(action="notify", subject=address, actor=ACTOR, reason=reason)
        why = f"rate limit: {notifier.burst} fail2ban notifications per {notifier.window:g}s"
        runner.journal.finish(entry, "skipped", why)
        return [*outcomes, Outcome("notify", address, "skipped", why, entry)]
    notifier.retry_delays = ()  # a one-shot process cannot wait to retry
    verb = "banned" if event == "ban" else "unbanned"
    lines = [f"fail2ban {verb} {address} in jail {jail}.", ""]
    if accounts:
        lines.append("Accounts this IP touched:")
        lines += [f"  {subjects.shown(account, 80)}" for account in accounts]
    else:
        lines.append("postwatch knows no account that this IP touched.")
    lines += ["", "Commands:", f"  postwatch actions --subject {address}"]
    lines += [f"  postwatch queue {account}" for account in accounts if _safe(account)][:5]
    notice = text_notice(
        f"fail2ban:{jail}:{address}:{event}:{runner.clock.now().isoformat()}",
        "warning" if event == "ban" and accounts else "notice",
        f"postwatch: fail2ban {verb} {address} ({jail})",
        lines,
    )
    outcomes.append(runner.notify(notice, address, "", reason, ACTOR))
    runner.tick()
    return outcomes


def _accounts(
    runner: ActionRunner, address: str, linked: Callable[[str], Iterable[str]] | None
) -> list[str]:
    found: list[str] = []
    if runner.ban_log is not None:
        found += [record.subject for record in runner.ban_log.lookup(address) if record.subject]
    if linked is not None:
        found += [str(name) for name in linked(address)]
    return [name for name in dict.fromkeys(found) if name != address][:MAX_LINKED]


def _safe(account: str) -> bool:
    try:
        subjects.account(account)
    except UnsafeSubjectError:
        return False
    return True
