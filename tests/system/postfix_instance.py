"""A private Postfix instance for real-component tests: own config, queue and log, loopback only.

The instance lives in a fresh directory: ``conf/`` (main.cf, master.cf), ``queue/``, ``data/``
and ``maillog`` (written by postlogd).  smtpd listens on 127.0.0.1 at a free high port and
nothing ever leaves: ``defer_transports = smtp`` keeps every remote message in the deferred
queue, and ``relayhost`` points at a closed loopback port in case a message is flushed.

Use it as a context manager; :meth:`PostfixInstance.stop` runs even when the test fails::

    with PostfixInstance.create(postfix="/usr/sbin/postfix") as instance:
        queue_id = instance.submit("alice@example.com", ["victim@example.net"])
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar

T = TypeVar("T")

# The services a plain Postfix needs, from Debian's master.cf.dist, none of them chrooted
# (a chroot would need copies of /etc files inside the private queue directory).
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(check: Callable[[], T], *, timeout: float = 10.0, what: str = "condition") -> T:
    """Poll a real daemon until ``check()`` returns something true; fail after ``timeout``.

    Only for waiting on another process (a queue manager, a config re-read); logic under
    test never waits, it is given a clock.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class Service:
    """A test service as a context manager: ``start()`` on entry, ``stop()`` on exit, and
    ``stop()`` also when starting fails half way (each ``stop`` copes with a partial start)."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class PostfixInstance(Service):
    """One private Postfix: its directories, its programs, and start/stop."""

    def __init__(
        self,
        root: Path,
        *,
        sbin: Path,
        port: int,
        main: Mapping[str, str] | None = None,
        master_extra: str = "",
    ) -> None:
        self.root = root
        self.sbin = sbin
        self.port = port
        self.config_dir = root / "conf"
        self.queue_dir = root / "queue"
        self.data_dir = root / "data"
        self.maillog = root / "maillog"
        self.main_extra = dict(main or {})
        self.master_extra = master_extra
        self.started = False

    @classmethod
    def create(
        cls,
        *,
        postfix: str,
        main: Mapping[str, str] | None = None,
        master_extra: str = "",
        root: Path | None = None,
    ) -> PostfixInstance:
        """Write a fresh instance (not started) in ``root`` or a new temporary directory.

        The directory must be reachable by the ``postfix`` user, so it is made under the
        system temporary directory with mode 0755 rather than under pytest's private one.
        """
        if os.geteuid() != 0:
            raise RuntimeError("a private Postfix instance needs root (postfix start)")
        root = root or Path(tempfile.mkdtemp(prefix="postwatch-postfix-"))
        root.chmod(0o755)
        instance = cls(
            root,
            sbin=Path(postfix).resolve().parent,
            port=free_port(),
            main=main,
            master_extra=master_extra,
        )
        instance._write_config()
        return instance

    # --- configuration --------------------------------------------------------------

    def _write_config(self) -> None:
        for directory in (self.config_dir, self.queue_dir, self.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.data_dir, user="postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "myhostname": "postwatch-test.localdomain",
            "mydestination": "",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{free_port()}",
            "defer_transports": "smtp",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtputf8_enable": "no",
            "maillog_file": str(self.maillog),
            "maillog_file_prefixes": str(self.root),
            "syslog_name": "postfix-postwatch-test",
            **self.main_extra,
        }
        (self.config_dir / "main.cf").write_text(
            "".join(f"{key} = {value}\n" for key, value in main.items())
        )
        (self.config_dir / "master.cf").write_text(
            f"127.0.0.1:{self.port} inet n - n - - smtpd\n" + MASTER_SERVICES + self.master_extra
        )

    # --- programs -------------------------------------------------------------------

    def program(self, name: str) -> str:
        return str(self.sbin / name)

    def run(
        self, name: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the Postfix programs against this instance (``-c conf``)."""
        return subprocess.run(
            [self.program(name), "-c", str(self.config_dir), *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def postconf(self, *settings: str) -> None:
        """Change main.cf (``name=value`` items) and make a running instance reload it."""
        self.run("postconf", "-e", *settings)
        if self.started:
            self.run("postfix", "reload")

    # --- start and stop -------------------------------------------------------------

    def start(self) -> None:
        self.run("postfix", "check")
        self.run("postfix", "start")
        self.started = True
        wait_for(self._accepting, what=f"smtpd on 127.0.0.1:{self.port}")

    def _accepting(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def master_pid(self) -> int | None:
        try:
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the instance (``postfix stop``, then SIGKILL if needed) and delete it."""
        pid = self.master_pid()
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            self.run("postfix", "stop", check=False)
        if pid is not None:
            try:
                wait_for(lambda: not _alive(pid), timeout=10, what="postfix master to exit")
            except AssertionError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(os.getpgid(pid), signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    # --- mail -----------------------------------------------------------------------

    def submit(
        self,
        sender: str,
        recipients: Sequence[str],
        subject: str = "test",
        *,
        login: tuple[str, str] | None = None,
    ) -> str:
        """Send one message to smtpd over SMTP on 127.0.0.1; return its queue ID."""
        body = f"From: <{sender}>\r\nSubject: {subject}\r\n\r\ntest message\r\n"
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("client.example")
            if login:
                client.login(*login)
            client.mail(sender)
            for recipient in recipients:
                code, reply = client.rcpt(recipient)
                if code >= 400:
                    raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
            code, reply = client.data(body.encode())
        match = _QUEUED.search(reply.decode())
        if code != 250 or not match:
            raise AssertionError(f"message not queued: {code} {reply!r}")
        return match.group(1)

    def queue(self) -> list[dict[str, Any]]:
        """``postqueue -j``: one JSON object per queued message."""
        output = self.run("postqueue", "-j").stdout
        return [json.loads(line) for line in output.splitlines() if line.strip()]

    def queue_names(self) -> dict[str, str]:
        """Queue ID -> queue name (deferred, hold, active ...)."""
        return {item["queue_id"]: item["queue_name"] for item in self.queue()}

    def wait_until_queued(self, queue_ids: Sequence[str], queue_name: str = "deferred") -> None:
        """Wait until every message in ``queue_ids`` sits in ``queue_name``."""
        wanted = set(queue_ids)
        wait_for(
            lambda: all(self.queue_names().get(qid) == queue_name for qid in wanted),
            what=f"{sorted(wanted)} in the {queue_name} queue",
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def running_postfix(postfix: str, **kwargs: Any) -> Iterator[PostfixInstance]:
    """A started private instance, stopped and removed on exit."""
    with PostfixInstance.create(postfix=postfix, **kwargs) as instance:
        yield instance
