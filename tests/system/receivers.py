"""The outside world of the end-to-end harness, on 127.0.0.1: a relay sink and a receiver.

:class:`SmtpSink` is where Postfix relays every message (its ``relayhost``): an aiosmtpd
server that records what it takes and greylists (450) chosen destination domains, so that
mail to them stays in the deferred queue as it does when big providers push back.
:class:`NotificationReceiver` is the HTTP server Apprise's ``json://`` URL posts alerts to.
"""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

from aiosmtpd.controller import Controller
from system.postfix_instance import free_port

GREYLIST_REPLY = "450 4.7.1 Greylisted, please try again later"


class Received(NamedTuple):
    """One message the sink took."""

    sender: str
    recipients: tuple[str, ...]
    subject: str


class SmtpSink:
    """aiosmtpd on 127.0.0.1 that records what Postfix relays; greylists chosen domains."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.greylisted: set[str] = set()
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._controller.stop()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.rpartition("@")[2].lower() in self.greylisted:
            return GREYLIST_REPLY
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content.decode("utf-8", "replace")
        subject = next(
            (line[9:] for line in content.splitlines() if line.startswith("Subject: ")), ""
        )
        with self._lock:
            self.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), subject))
        return "250 2.0.0 Ok: queued"


class NotificationReceiver:
    """An HTTP server on 127.0.0.1 that keeps what Apprise's ``json://`` posts to it."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    received.append(json.loads(self.rfile.read(length)))
                except ValueError:
                    received.append({"unreadable": True})
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads self.notifications

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()  # waits for serve_forever: only once it runs
        self._server.server_close()
