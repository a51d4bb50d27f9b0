"""Ban lines for fail2ban: one stable format in postwatch's own log file.

::

    2026-11-23T10:00:00+00:00 postwatch[123]: BAN ip=203.0.113.5 reason=sasl-brute-force \
        subject="alice@example.com" incident="12"

(one line, cut here to fit the page).

The IP comes first, straight after the fixed ``BAN ip=`` that the shipped filter
(``contrib/fail2ban/filter.d/postwatch.conf``) anchors on, and it has passed
:func:`postwatch.actions.subject.ip`.  Everything after it is either a slug postwatch chose
(``reason``) or a JSON string (``subject``, ``incident``): quotes, backslashes, control
characters and every non-ASCII character are escaped, so attacker text can never end the
line or put a second ``ip=`` where the filter would look.

The same IP and reason are written at most once per ``repeat_after`` seconds (fail2ban has
already banned it); that memory expires with the window.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from postwatch.actions import subject
from postwatch.clock import Clock, SystemClock
from postwatch.errors import ActionError

TAG = "postwatch"
FILE_MODE = 0o640
_LINE = re.compile(
    r"^(?P<ts>\S+) postwatch\[\d+\]: BAN ip=(?P<ip>[0-9A-Fa-f:.]+) reason=(?P<reason>\S+)"
    r" subject=(?P<subject>\"(?:[^\"\\]|\\.)*\") incident=(?P<incident>\"(?:[^\"\\]|\\.)*\")$"
)
LOOKUP_TAIL = 4 * 1024 * 1024  # bytes of the file's end that a lookup reads


class BanRecord(NamedTuple):
    """One ban line read back."""

    ts: str
    ip: str
    reason: str
    subject: str
    incident: str


class BanLog:
    """Appends ban lines to postwatch's ban log."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock | None = None,
        pid: int | None = None,
        repeat_after: float = 600.0,
    ) -> None:
        self.path = Path(path)
        self.clock = clock or SystemClock()
        self.pid = os.getpid() if pid is None else pid
        self.repeat_after = repeat_after
        self._written: dict[tuple[str, str], float] = {}  # (ip, reason) -> monotonic time

    def format(
        self,
        ip: str,
        *,
        reason: str,
        subject_name: str = "",
        incident: str = "",
        when: datetime | None = None,
    ) -> str:
        """The ban line (without newline) for a checked IP."""
        address = subject.ip(ip)
        stamp = (when or self.clock.now()).isoformat(timespec="seconds")
        return (
            f"{stamp} {TAG}[{self.pid}]: BAN ip={address} reason={subject.slug(reason)}"
            f" subject={_quoted(subject_name)} incident={_quoted(incident)}"
        )

    def ban(self, ip: str, *, reason: str, subject_name: str = "", incident: str = "") -> str:
        """Write a ban line for ``ip``; returns what was done (written or already recent)."""
        address = subject.ip(ip)
        key = (address, subject.slug(reason))
        now = self.clock.monotonic()
        self._expire(now)
        if key in self._written:
            return f"{address} was written to {self.path} less than {self.repeat_after:g}s ago"
        line = self.format(address, reason=reason, subject_name=subject_name, incident=incident)
        self._append(line + "\n")
        self._written[key] = now
        return f"ban line for {address} written to {self.path}"

    def _expire(self, now: float) -> None:
        for key in [
            k for k, written in self._written.items() if now - written >= self.repeat_after
        ]:
            del self._written[key]

    def remembered(self) -> int:
        """How many (ip, reason) pairs are remembered for de-duplication."""
        return len(self._written)

    def _append(self, text: str) -> None:
        data = text.encode("ascii")  # _quoted() leaves nothing else
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        except OSError as exc:
            raise ActionError(f"{self.path}: cannot open the ban log: {exc}") from exc
        try:
            os.write(fd, data)  # one write: lines from concurrent writers never interleave
        except OSError as exc:
            raise ActionError(f"{self.path}: cannot write the ban log: {exc}") from exc
        finally:
            os.close(fd)

    def lookup(self, ip: str) -> list[BanRecord]:
        """The ban lines for ``ip`` in the end of the file (who it was banned for, and why)."""
        address = subject.ip(ip)
        return [record for record in self.records() if record.ip == address]

    def records(self) -> Iterator[BanRecord]:
        """Every well-formed ban line in the last :data:`LOOKUP_TAIL` bytes, oldest first."""
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - LOOKUP_TAIL))
                data = handle.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ActionError(f"{self.path}: cannot read the ban log: {exc}") from exc
        lines = data.decode("ascii", "replace").split("\n")
        if size > LOOKUP_TAIL:
            lines = lines[1:]  # the first one is probably cut
        for line in lines:
            match = _LINE.match(line)
            if match:
                yield BanRecord(
                    match["ts"],
                    match["ip"],
                    match["reason"],
                    json.loads(match["subject"]),
                    json.loads(match["incident"]),
                )


def _quoted(text: object) -> str:
    """A JSON string: ASCII only, quotes, backslashes and control characters escaped."""
    return json.dumps(str(text), ensure_ascii=True)
