"""A private Dovecot for real-component tests: auth only, its own config and sockets.

Dovecot runs from a fresh directory with no network listener at all (``protocols =``):
doveadm and Postfix talk to it over the unix sockets in its ``base_dir``.  Users and their
passwords are a passwd-file; a ``deny = yes`` passwd-file passdb comes first, as the
postwatch documentation configures it, so a name listed there is refused whatever its
password::

    with DovecotInstance(dovecot, doveadm, users={"alice@example.com": "secret"}) as dovecot:
        assert dovecot.auth_ok("alice@example.com")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from system.postfix_instance import Service, wait_for

from postwatch.actions.dovecot import DovecotDeny


class DovecotInstance(Service):
    """A private Dovecot: auth only, deny passdb first, sockets in its own base_dir."""

    def __init__(self, dovecot: str, doveadm: str, *, users: Mapping[str, str]) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="postwatch-dovecot-"))
        self.root.chmod(0o755)
        self.dovecot, self.doveadm = dovecot, doveadm
        self.users = dict(users)
        self.config = self.root / "dovecot.conf"
        self.deny = self.root / "deny"
        self.auth_socket = self.root / "auth-postfix"
        self.log = self.root / "dovecot.log"
        self.deny.write_text("")
        (self.root / "users").write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in self.users.items())
        )
        self.config.write_text(f"""\
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = postwatch-test-{os.getpid()}-{self.root.name}
protocols =
listen = 127.0.0.1
log_path = {self.log}
ssl = no
# clients are presented from the internet (XCLIENT) over plain SMTP on loopback
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# a refused login is answered at once (the default waits 2 s): tests wait for refusals
auth_failure_delay = 0
auth_cache_size = 1M
passdb {{
  driver = passwd-file
  args = {self.deny}
  deny = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.root}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={self.root}/home/%u
}}
service auth {{
  unix_listener {self.auth_socket} {{
    mode = 0666
  }}
}}
""")

    def serve_submission(self, port: int, relay_port: int, *, hostname: str, log: Path) -> None:
        """Also be the submission server (MSA) on 127.0.0.1:``port``, relaying through the
        MTA's smtpd on ``relay_port`` without XCLIENT (``submission_relay_trusted = no``, the
        default), and log into ``log`` (the MTA's log, as syslog would merge them).

        The listener takes the HAProxy protocol from loopback, so a test client can present
        any address; call before :meth:`start`."""
        mail = self.root / "mail"
        mail.mkdir()
        mail.chmod(0o777)  # the submission process runs as nobody (mkdir's mode is umasked)
        text = self.config.read_text().replace("protocols =\n", "protocols = submission\n")
        text = text.replace(f"log_path = {self.log}\n", f"log_path = {log}\n")
        self.log = log
        self.config.write_text(f"""{text}
hostname = {hostname}
postmaster_address = postmaster@{hostname}
mail_location = maildir:{self.root}/mail/%u
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
haproxy_trusted_networks = 127.0.0.1
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
    haproxy = yes
  }}
}}
""")

    def start(self) -> None:
        # Dovecot forks into the background: give it no pipe to hold open.
        with (self.root / "startup.err").open("w") as errors:
            subprocess.run(
                [self.dovecot, "-c", str(self.config)],
                check=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        wait_for(lambda: (self.root / "run" / "auth-master").exists(), what="dovecot auth")

    def master_pid(self) -> int | None:
        try:
            return int((self.root / "run" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """``doveadm stop``, then SIGKILL of the master if it lingers; delete the folder."""
        pid = self.master_pid()
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                [self.doveadm, "-c", str(self.config), "stop"], timeout=60, capture_output=True
            )
        if pid is not None:
            try:
                wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="dovecot to exit")
            except AssertionError:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)

    def auth_ok(self, user: str, password: str | None = None) -> bool:
        """``doveadm auth test``: whether Dovecot accepts the user's password now."""
        result = subprocess.run(
            [
                self.doveadm,
                "-c",
                str(self.config),
                "auth",
                "test",
                user,
                self.users[user] if password is None else password,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.returncode == 0

    def backend(self) -> DovecotDeny:
        return DovecotDeny(self.deny, doveadm=self.doveadm, config=self.config)
