"""The mail server of the end-to-end harness: a real Postfix and Dovecot on loopback.

::

    test client --XCLIENT--> Postfix :25 / :submission --SASL--> Dovecot (auth socket only)
                                  |   check_sasl_access map        deny passdb
                                  |   relayhost [127.0.0.1]:sink
                                  v
                             maillog ------> postwatch watch --> map, deny file, hold,
                                                                 ban log, json:// receiver

:class:`MailSystem` starts Dovecot, Postfix, the relay sink and the notification receiver
together, stops them together (each daemon by its own pid), writes postwatch's config for
them and answers what an admin would ask: ``postmap -q``, the deny list, ``postqueue -j``,
``fail2ban-regex`` on the ban log.  Postfix trusts XCLIENT from 127.0.0.1
(``smtpd_authorized_xclient_hosts``), so a test on loopback can present any client.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from system.dovecot_instance import DovecotInstance
from system.mail_traffic import Attempt, Client, submit
from system.postfix_instance import PostfixInstance, Service, free_port
from system.receivers import NotificationReceiver, SmtpSink

from postwatch.actions.lockmap import PostfixSaslMap

REPO = Path(__file__).resolve().parents[2]
FAIL2BAN_FILTER = REPO / "contrib" / "fail2ban" / "filter.d" / "postwatch.conf"
DOMAIN = "example.com"
MY_HOSTNAME = f"mail.{DOMAIN}"
USERS = {
    f"alice@{DOMAIN}": "alice-Correct-Horse-7",
    f"bob@{DOMAIN}": "bob-Battery-Staple-3",
    f"carol@{DOMAIN}": "carol-Tr0ub4dor-9",
}


@dataclass(frozen=True)
class Programs:
    """Paths of the real programs the harness runs."""

    postfix: str
    dovecot: str
    doveadm: str
    fail2ban_regex: str
    logrotate: str

    @classmethod
    def find(cls, locate: Callable[..., str]) -> Programs:
        """Find every program with ``locate(name, *fallback_paths)`` (conftest's
        ``require_program`` in tests: a missing one fails the test)."""
        return cls(
            postfix=locate("postfix", "/usr/sbin/postfix"),
            dovecot=locate("dovecot", "/usr/sbin/dovecot"),
            doveadm=locate("doveadm", "/usr/bin/doveadm"),
            fail2ban_regex=locate("fail2ban-regex", "/usr/bin/fail2ban-regex"),
            logrotate=locate("logrotate", "/usr/sbin/logrotate"),
        )


def submission_service(port: int) -> str:
    """The master.cf submission entry: SASL through Dovecot, the postwatch map first."""
    return (
        f"127.0.0.1:{port} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_sasl_auth_enable=yes\n"
        "  -o smtpd_tls_auth_only=no\n"
        "  -o smtpd_relay_restrictions=$postwatch_sasl_access,permit_sasl_authenticated,reject\n"
    )


class MailSystem(Service):
    """Dovecot, Postfix, the sink and the receiver, started together and stopped together."""

    def __init__(
        self,
        programs: Programs,
        users: Mapping[str, str] = USERS,
        *,
        dovecot_submission: bool = False,
    ) -> None:
        """``dovecot_submission``: the users submit to Dovecot's submission service, which
        relays through Postfix's smtpd without naming them (no XCLIENT), instead of to
        Postfix's submission service."""
        self.programs = programs
        self.users = dict(users)
        self.submission_port = free_port()
        # one world-readable folder: smtpd reads the lock map as the postfix user
        self.root = Path(tempfile.mkdtemp(prefix="postwatch-e2e-"))
        self.root.chmod(0o755)
        (self.root / "postfix").mkdir()
        self.lock_map = self.root / "postwatch_sasl_access"
        self.ban_log = self.root / "ban.log"
        self.sink = SmtpSink()
        self.receiver = NotificationReceiver()
        self.dovecot = DovecotInstance(programs.dovecot, programs.doveadm, users=self.users)
        try:
            self.postfix = self._postfix()
        except BaseException:
            shutil.rmtree(self.dovecot.root, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)
            self.receiver.stop()
            raise
        self.maillog = self.postfix.maillog
        self.dovecot_submission_port = free_port() if dovecot_submission else 0
        if dovecot_submission:
            self.dovecot.serve_submission(
                self.dovecot_submission_port,
                self.postfix.port,
                hostname=MY_HOSTNAME,
                log=self.maillog,
            )

    def _postfix(self) -> PostfixInstance:
        """Postfix on 127.0.0.1 (smtpd and submission), SASL through Dovecot, the postwatch
        map before permit_sasl_authenticated, everything relayed to the sink."""
        return PostfixInstance.create(
            postfix=self.programs.postfix,
            root=self.root / "postfix",
            master_extra=submission_service(self.submission_port),
            main={
                "syslog_name": "postfix",
                "myhostname": MY_HOSTNAME,
                "mydomain": DOMAIN,
                "relayhost": f"[127.0.0.1]:{self.sink.port}",
                "defer_transports": "",
                "smtp_tls_security_level": "none",
                "smtpd_authorized_xclient_hosts": "127.0.0.1",
                # helo=<...> of accepted mail reaches the log only through a logged permit
                "smtpd_log_access_permit_actions": "static:all",
                "smtpd_sasl_type": "dovecot",
                "smtpd_sasl_path": str(self.dovecot.auth_socket),
                "postwatch_sasl_access": f"check_sasl_access hash:{self.lock_map}",
                # a deferred message waits: the test decides when the queue is run again
                "queue_run_delay": "3600s",
                "minimal_backoff_time": "3600s",
                "maximal_backoff_time": "7200s",
            },
        )

    def start(self) -> None:
        self.lock_map.write_text("")
        self.postfix.run("postmap", f"hash:{self.lock_map}")
        self.dovecot.start()
        self.sink.start()
        self.receiver.start()
        try:
            self.postfix.start()
        except subprocess.CalledProcessError as exc:
            log = self.maillog.read_text()[-2000:] if self.maillog.exists() else ""
            raise AssertionError(f"postfix start failed: {exc.stderr}{exc.stdout}\n{log}") from exc

    def reset(self) -> None:
        """Back to the state after :meth:`start`: no lock, empty queue, nothing received."""
        self.postfix.run("postsuper", "-d", "ALL", check=False)
        # through the lock backends: they make sure running daemons notice the change
        lock_map = PostfixSaslMap(
            self.lock_map,
            postmap=self.postfix.program("postmap"),
            config_dir=self.postfix.config_dir,
        )
        for user in self.users:
            lock_map.unlock(user)
            self.dovecot.backend().unlock(user)
        self.ban_log.unlink(missing_ok=True)
        self.sink.received.clear()
        self.sink.greylisted.clear()
        self.receiver.notifications.clear()

    def stop(self) -> None:
        """Stop every daemon started here, each by its own pid; remove their folders."""
        for stop in (self.postfix.stop, self.dovecot.stop, self.sink.stop, self.receiver.stop):
            with contextlib.suppress(Exception):
                stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- what postwatch is told ---------------------------------------------------------

    def config(self, state_dir: Path, *, store_url: str = "", min_history: float = 5.0) -> str:
        """postwatch's TOML config for this system.

        ``min_history`` is how long an account must have been watched before a new origin
        means something (and before volume is judged against what was learned); a test
        server has seconds of history, so it is seconds here.
        """
        postfix, dovecot = self.postfix, self.dovecot
        return f"""\
[store]
url = {json.dumps(store_url)}
state_dir = {json.dumps(str(state_dir))}

[geo]
builtin = true

[detect]
hostnames = [{json.dumps(MY_HOSTNAME)}]
min_history = {min_history:g}

[actions]
max_locks_per_hour = 5

[actions.severity]
notice = []
warning = []
critical = ["notify", "lock", "hold", "ban"]

[actions.notify]
urls = [{json.dumps(self.receiver.url)}]
retry = ["1s", "2s", "5s"]  # a post the receiver missed is sent again within a test's wait

[actions.postfix_map]
path = {json.dumps(str(self.lock_map))}
type = "hash"
postmap = {json.dumps(postfix.program("postmap"))}
config_dir = {json.dumps(str(postfix.config_dir))}

[actions.dovecot]
deny_file = {json.dumps(str(dovecot.deny))}
doveadm = {json.dumps(dovecot.doveadm)}
config = {json.dumps(str(dovecot.config))}

[actions.hold]
postqueue = {json.dumps(postfix.program("postqueue"))}
postsuper = {json.dumps(postfix.program("postsuper"))}
config_dir = {json.dumps(str(postfix.config_dir))}

[actions.ban]
log = {json.dumps(str(self.ban_log))}
"""

    # --- mail ---------------------------------------------------------------------------

    def send(
        self,
        user: str,
        client: Client,
        recipients: Sequence[str],
        *,
        subject: str,
        before_data: Callable[[], object] | None = None,
    ) -> Attempt:
        """One submission as ``user`` with its password, from ``client`` (by XCLIENT);
        ``before_data`` runs while the session waits after its last RCPT."""
        return submit(
            self.dovecot_submission_port or self.submission_port,
            user,
            self.users[user],
            client,
            recipients,
            subject=subject,
            before_data=before_data,
            proxied=bool(self.dovecot_submission_port),
        )

    def postfix_lock(self, user: str) -> str:
        """What Postfix finds for ``user`` in the postwatch map (``postmap -q``); "" if none."""
        result = self.postfix.run("postmap", "-q", user, f"hash:{self.lock_map}", check=False)
        return result.stdout.strip()

    def dovecot_denied(self) -> list[str]:
        """The names in Dovecot's deny passdb."""
        lines = self.dovecot.deny.read_text().splitlines()
        return [line.strip() for line in lines if line.strip() and not line.startswith("#")]

    def queue(self) -> dict[str, str]:
        """Queue ID -> queue name, as ``postqueue -j`` shows it."""
        return self.postfix.queue_names()

    def flush(self) -> None:
        """``postqueue -f``: try every deferred message again now."""
        self.postfix.run("postqueue", "-f")

    def fail2ban_ips(self) -> list[str]:
        """The IPs fail2ban-regex finds in the ban log with the shipped filter."""
        result = subprocess.run(
            [self.programs.fail2ban_regex, "-o", "ip", str(self.ban_log), str(FAIL2BAN_FILTER)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return [line.strip() for line in result.stdout.splitlines() if line.strip()]
