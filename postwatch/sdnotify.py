"""systemd's service notification protocol (``sd_notify(3)``), for ``Type=notify`` units.

::

    READY=1            started: checkpoint loaded, sources open
    STATUS=text        one line for ``systemctl status``
    RELOADING=1        SIGHUP received (with MONOTONIC_USEC, as ``Type=notify-reload`` wants)
    STOPPING=1         SIGTERM received, committing the last batch
    WATCHDOG=1         alive; sent every half ``WATCHDOG_USEC`` while the loop turns

The messages go as datagrams to the unix socket named by ``$NOTIFY_SOCKET`` (a path, or
``@name`` for the abstract namespace).  Without it every call does nothing.  A send that
fails is logged once and never stops the service.

Written here rather than taken from the PyPI ``sdnotify`` package, which is as long as this
module but reads no ``WATCHDOG_USEC``/``WATCHDOG_PID``, keeps no watchdog timing and hides
every send error.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

from postwatch.clock import Clock, SystemClock

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock: and relative names are not supported


class Notifier:
    """Send notifications to systemd when ``NOTIFY_SOCKET`` is set; otherwise a no-op."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        clock: Clock | None = None,
        pid: int | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._clock = clock or SystemClock()
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        if env.get("NOTIFY_SOCKET") and self._address is None:
            log.warning(
                "NOTIFY_SOCKET %r is not a unix socket path: not notifying systemd",
                env["NOTIFY_SOCKET"],
            )
        self._socket: socket.socket | None = None
        self._failed = False
        self.watchdog_interval = _watchdog_interval(env, os.getpid() if pid is None else pid)
        self._last_watchdog: float | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True when it was sent."""
        if self._address is None:
            return False
        message = "\n".join(" ".join(field.split()) for field in fields).encode("utf-8")
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
                self._failed = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def reloading(self) -> bool:
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        """Send WATCHDOG=1 if half the watchdog timeout has passed since the last one."""
        if self.watchdog_interval is None or self._address is None:
            return False
        now = self._clock.monotonic()
        if self._last_watchdog is not None and now - self._last_watchdog < self.watchdog_interval:
            return False
        self._last_watchdog = now
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of ``WATCHDOG_USEC``, if it is meant for us."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != pid):
        return None
    return int(usec) / 2_000_000
