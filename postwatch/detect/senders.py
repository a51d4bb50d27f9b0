"""Envelope senders: logins sending as someone else, and local scripts forging senders.

- ``sender_mismatch`` (accounts): the envelope sender is neither the SASL login, nor one
  of its aliases (``[detect.aliases]``), nor owned by it in a Postfix
  ``smtpd_sender_login_maps``-style file; without a map, a sender in the login's own
  domain is fine.  Distinct mismatched senders in 1 h: 1: 10 points, 3: 20, 10: 30.
- ``invalid_sender`` (pickup): the sender is not in the list of real mailboxes (files of
  addresses or Postfix table sources, ``@domain`` lines allowed): 1 in 1 h: 10, 5: 20, 20: 30.
- ``many_senders`` (pickup): one uid used 5 distinct senders in 1 h: 15; 20: 25, when the
  senders barely repeat (at least one for every two messages).  A list manager's bounce
  addresses carry the recipient in an address extension (VERP:
  ``list-owner+anna=example.net@lists.example.org``); senders are counted without it,
  and a few list addresses sending thousands of messages are not many senders.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from postwatch.detect.alerts import Finding
from postwatch.detect.state import SubjectState
from postwatch.detect.subjects import MAX_ADDRESS, folded
from postwatch.detect.windows import Distinct, Windows
from postwatch.errors import ConfigError

SPAN = 3600.0


class SenderWindows:
    """Envelope senders of one subject in the last hour."""

    __slots__ = ("invalid", "mismatched", "used")

    def __init__(self) -> None:
        self.mismatched = Distinct(SPAN, 1000)  # senders an account does not own
        self.used = Distinct(SPAN, 1000)  # every sender of a uid
        self.invalid = Windows((SPAN,), 1, 10.0)  # messages from senders that are no mailbox


def read_table(path: Path) -> dict[str, frozenset[str]]:
    """A Postfix table source (``key value, value``) or a plain list (``key``), lower-cased."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc}", path=str(path)) from exc
    table: dict[str, frozenset[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, *rest = line.split(None, 1)
        values = frozenset(v.lower() for v in " ".join(rest).replace(",", " ").split())
        table[key.lower()] = table.get(key.lower(), frozenset()) | values
    return table


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def without_extension(address: str) -> str:
    """``address`` without its address extension (``list+anna=example.net@...`` ->
    ``list@...``): VERP return paths name one list, not one sender per recipient."""
    local, at, domain = address.rpartition("@")
    base = local.partition("+")[0]
    return f"{base}{at}{domain}" if base and base != local else address


class SenderSignal:
    """Judges envelope senders against logins and the list of real mailboxes."""

    def __init__(
        self,
        aliases: Mapping[str, frozenset[str]],
        login_maps: Iterable[Path],
        valid_senders: Iterable[Path],
    ) -> None:
        self.aliases = aliases
        self.owners: dict[str, frozenset[str]] = {}
        for path in login_maps:
            for key, values in read_table(path).items():
                self.owners[key] = self.owners.get(key, frozenset()) | values
        self.valid: set[str] | None = None
        for path in valid_senders:
            self.valid = (self.valid or set()) | set(read_table(path))

    def owns(self, login: str, sender: str) -> bool | None:
        """Whether ``login`` may send as ``sender``; None when nothing says."""
        if sender == login:
            return True
        allowed = self.aliases.get(login)
        if allowed and (sender in allowed or "@" + _domain(sender) in allowed):
            return True
        if self.owners:
            owners = self.owners.get(sender) or self.owners.get("@" + _domain(sender))
            return bool(owners and login in owners)
        if "@" in login:
            return _domain(login) == _domain(sender)
        if sender.partition("@")[0] == login:
            return True
        return False if allowed else None

    def on_account_message(
        self, now: float, state: SubjectState, sender: str, out: list[Finding]
    ) -> None:
        if not sender:
            return
        address = sender.lower()
        if self.owns(state.subject.name, address) is not False:
            return
        windows = state.senders
        if windows is None:
            windows = state.senders = SenderWindows()
        windows.mismatched.add(now, address[:MAX_ADDRESS])
        count = len(windows.mismatched)
        points = 30 if count >= 10 else 20 if count >= 3 else 10
        if state.due("sender_mismatch", points, now):
            out.append(
                Finding(
                    state.subject,
                    "sender_mismatch",
                    points,
                    f"sent as {count} address(es) the login does not own in 1h, "
                    f"e.g. {address[:80]!r}",
                )
            )

    def on_pickup_message(
        self, now: float, state: SubjectState, sender: str, messages: int, out: list[Finding]
    ) -> None:
        """One message of a uid from ``sender``; ``messages``: the uid's messages in 1 h."""
        address = folded(sender)
        if not address:
            return
        windows = state.senders
        if windows is None:
            windows = state.senders = SenderWindows()
        windows.used.add(now, without_extension(address))
        count = len(windows.used)
        if count >= 5 and 2 * count >= messages:
            points = 25 if count >= 20 else 15
            if state.due("many_senders", points, now):
                out.append(
                    Finding(
                        state.subject, "many_senders", points, f"{count} distinct senders in 1h"
                    )
                )
        if self.valid is None or address in self.valid or "@" + _domain(address) in self.valid:
            return
        bad = windows.invalid.add(now, 1)[0][0]
        points = 30 if bad >= 20 else 20 if bad >= 5 else 10
        if state.due("invalid_sender", points, now):
            out.append(
                Finding(
                    state.subject,
                    "invalid_sender",
                    points,
                    f"{bad} message(s) in 1h from senders that are no mailbox, "
                    f"e.g. {address[:80]!r}",
                )
            )
