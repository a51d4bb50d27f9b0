"""postwatch under test: ``postwatch watch`` as a subprocess over a :class:`MailSystem`'s log.

:class:`Postwatch` writes the system's config into a fresh folder, starts ``watch`` on the
maillog, waits on what it writes (``status.json``, ``summary.jsonl``, alerts on stdout) and
runs its other commands (``unlock``, ``actions`` ...) with the same config.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from system.mail_system import REPO, MailSystem
from system.postfix_instance import wait_for


class Postwatch:
    """``postwatch watch`` as a subprocess; alerts are read from its stdout file."""

    def __init__(
        self, system: MailSystem, *, store_url: str = "", min_history: float = 5.0
    ) -> None:
        self.system = system
        self.folder = Path(tempfile.mkdtemp(prefix="postwatch-", dir=system.root))
        self.state_dir = self.folder / "state"
        self.config = self.folder / "postwatch.toml"
        self.config.write_text(
            system.config(self.state_dir, store_url=store_url, min_history=min_history)
        )
        self.stdout = self.folder / "stdout.jsonl"
        self.stderr = self.folder / "stderr.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "postwatch", *args]

    @staticmethod
    def environment() -> dict[str, str]:
        """This environment without what would steer postwatch elsewhere (a database, a
        config, systemd's notify socket)."""
        return {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("POSTWATCH_", "NOTIFY_SOCKET", "WATCHDOG_"))
        }

    def start(self) -> None:
        """Start ``postwatch watch`` and wait until it has committed its first position."""
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.process = subprocess.Popen(
                self.command(
                    "watch",
                    "--config",
                    str(self.config),
                    "--state-dir",
                    str(self.state_dir),
                    str(self.system.maillog),
                ),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=REPO,
                env=self.environment(),
            )
        wait_for(self._running, timeout=60, what="postwatch watch to start")

    def _running(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"postwatch watch exited: {self.errors()}")
        status = self.status()  # a killed run leaves its own status behind: check the pid
        return status.get("state") == "running" and status.get("pid") == self.process.pid

    def kill(self) -> None:
        """``kill -9``: no commit, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM (commit and exit), SIGKILL if it hangs; its exit status."""
        process = self.process
        if process is None:
            return 0
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        return int(process.returncode)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run another postwatch command (``unlock``, ``actions`` ...) with this config."""
        return subprocess.run(
            self.command(*args, "--config", str(self.config)),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env=self.environment(),
            check=False,
        )

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert printed so far, over every run."""
        alerts = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.stdout.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if isinstance(record, dict) and record.get("type") == "alert":
                        alerts.append(record)
        return alerts

    def wait_for_alert(
        self, subject: str, severity: str = "", *, timeout: float = 30.0
    ) -> dict[str, Any]:
        """The first alert about ``subject`` (at ``severity``, or any), once it is printed."""

        def found() -> dict[str, Any] | None:
            assert self.process is not None
            for alert in self.alerts():
                if alert["subject"] == subject and severity in ("", alert["severity"]):
                    return alert
            if self.process.poll() is not None:
                raise AssertionError(f"postwatch watch exited: {self.errors()}")
            return None

        alert = wait_for(found, timeout=timeout, what=f"a {severity} alert for {subject}")
        assert alert is not None
        return alert

    def status(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def wait_caught_up(self, *, timeout: float = 30.0) -> None:
        """Wait until postwatch has read the maillog as far as it reaches now."""
        size = self.system.maillog.stat().st_size
        name = str(self.system.maillog)

        def caught_up() -> bool:
            sources = self.status().get("sources") or []
            return any(s.get("name") == name and (s.get("offset") or 0) >= size for s in sources)

        wait_for(caught_up, timeout=timeout, what="postwatch to read the maillog to its end")

    def summary(self) -> dict[str, dict[str, Any]]:
        """The per-account records of the last commit (``summary.jsonl``)."""
        try:
            lines = (self.state_dir / "summary.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return {}
        records = [json.loads(line) for line in lines if line.strip()]
        return {str(r["subject"]): r for r in records if r.get("type") == "account"}

    def errors(self) -> str:
        try:
            return self.stderr.read_text()[-3000:]
        except FileNotFoundError:
            return ""
