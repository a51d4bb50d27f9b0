"""End-to-end harness: a real Postfix and Dovecot on loopback, and postwatch watching them.

::

    test client --XCLIENT--> Postfix :25 / :submission --SASL--> Dovecot (auth socket only)
                                  |   check_sasl_access map        deny passdb
                                  |   relayhost [127.0.0.1]:sink
                                  v
                             maillog ------> postwatch watch --> map, deny file, hold,
                                                                 ban log, json:// receiver

Everything listens on 127.0.0.1 only and nothing leaves the machine: every message Postfix
relays goes to :class:`SmtpSink`, an aiosmtpd server the harness runs, which can
greylist (450) chosen destination domains so that mail to them stays in the deferred
queue as it does when big providers push back.  Clients from the internet are
presented with Postfix XCLIENT (``smtpd_authorized_xclient_hosts = 127.0.0.1``): the
test connects from loopback and Postfix logs the address, name and HELO it was given;
no lookup is made and nothing is ever sent to those addresses.

:class:`MailSystem` starts and stops the daemons (each by its own pid) and writes
postwatch's config; :class:`Postwatch` runs ``postwatch watch`` as a subprocess and reads
its alerts.  The same pieces serve the tests and ``bench/e2e_latency.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

from aiosmtpd.controller import Controller
from system.dovecot_instance import DovecotInstance
from system.postfix_instance import PostfixInstance, free_port, wait_for

from bench.networks import Network, network
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
# Where the users live and where the attacker's machines are (bench/networks.py: ranges
# checked against geoip2fast's database).
HOME = network("DE", "Deutsche Telekom AG")
ATTACKER_NETWORKS = (
    network("BR", "TELEFONICA BRASIL S.A"),
    network("VN", "VNPT Corp"),
    network("IN", "Bharti Airtel Ltd., Telemedia Services"),
    network("CN", "Chinanet"),
    network("EG", "TE Data"),
    network("AR", "Telecom Argentina S.A."),
)
# Destinations of the spam: the sink greylists them, so the spam waits in the queue.
SPAM_DOMAINS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "mail.ru")
GREYLIST_REPLY = "450 4.7.1 Greylisted, please try again later"


class Client(NamedTuple):
    """Who Postfix believes is connecting (XCLIENT): address, reverse name, HELO."""

    ip: str
    name: str  # "[UNAVAILABLE]": no reverse name, Postfix logs "unknown"
    helo: str


class Attempt(NamedTuple):
    """One SMTP transaction: accepted (with its queue ID) or refused at ``stage``."""

    accepted: bool
    stage: str  # "auth", "mail", "rcpt", "data"; "" when accepted
    code: int
    reply: str
    queue_id: str = ""
    started: float = 0.0  # time.monotonic() when the client connected
    at: float = 0.0  # ... and when the server gave its last answer


class Received(NamedTuple):
    """One message the sink took."""

    sender: str
    recipients: tuple[str, ...]
    subject: str


# --- the outside world: a relay sink and a notification receiver ------------------------


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


# --- the mail server --------------------------------------------------------------------


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


class MailSystem:
    """Dovecot, Postfix, the sink and the receiver, started together and stopped together."""

    def __init__(self, programs: Programs, users: Mapping[str, str] = USERS) -> None:
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

    def __enter__(self) -> MailSystem:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
    ) -> Attempt:
        """One submission as ``user`` with its password, from ``client`` (by XCLIENT)."""
        body = (
            f"From: <{user}>\r\nTo: <{recipients[0]}>\r\nSubject: {subject}\r\n\r\n"
            "Hello,\r\nplease see the attached document.\r\n"
        )
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", self.submission_port, timeout=30) as smtp:
            smtp.ehlo("localhost")
            code, reply = smtp.docmd(
                "XCLIENT", f"NAME={client.name} ADDR={client.ip} HELO={client.helo}"
            )
            if code != 220:
                raise AssertionError(f"XCLIENT refused: {code} {reply!r}")
            smtp.ehlo(client.helo)
            smtp.user, smtp.password = user, self.users[user]
            try:
                smtp.auth("PLAIN", smtp.auth_plain)  # one mechanism, one try
            except smtplib.SMTPAuthenticationError as exc:
                return _refused("auth", exc.smtp_code, exc.smtp_error, started)
            code, reply = smtp.mail(user)
            if code >= 400:
                return _refused("mail", code, reply, started)
            for recipient in recipients:
                code, reply = smtp.rcpt(recipient)
                if code >= 400:
                    return _refused("rcpt", code, reply, started)
            code, reply = smtp.data(body.encode())
            if code >= 400:
                return _refused("data", code, reply, started)
        text = reply.decode("utf-8", "replace")
        queue_id = text.rpartition("queued as ")[2].strip()
        return Attempt(True, "", code, text, queue_id, started, time.monotonic())

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


def _refused(stage: str, code: int, reply: bytes | str, started: float) -> Attempt:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return Attempt(False, stage, code, text, "", started, time.monotonic())


# --- clients --------------------------------------------------------------------------------


def home_client(rng: random.Random, user: str) -> Client:
    """A user's own machine at home: a German DSL line with its reverse name."""
    ip = HOME.address(rng)
    return Client(ip, HOME.hostname(ip) or "[UNAVAILABLE]", f"{user.partition('@')[0]}-pc.home")


def attacker_clients(rng: random.Random) -> Iterator[Client]:
    """Machines of a botnet: foreign addresses, no reverse name, random HELO names."""
    while True:
        where: Network = rng.choice(ATTACKER_NETWORKS)
        # letters with a digit every third character, like EHZ5DZ3CU0EY...
        helo = "".join(
            rng.choice("0123456789" if n % 3 == 2 else "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            for n in range(rng.randint(15, 27))
        )
        yield Client(where.address(rng), "[UNAVAILABLE]", helo)


def spam_recipients(rng: random.Random, count: int) -> list[str]:
    """Recipients of one spam run: addresses at the big providers."""
    return [
        f"{rng.choice(('info', 'contact', 'sales', 'j.smith', 'm.garcia'))}{rng.randrange(10**6)}"
        f"@{rng.choice(SPAM_DOMAINS)}"
        for _ in range(count)
    ]


class Burst(NamedTuple):
    """What an attack achieved: messages accepted until the first refusal."""

    accepted: tuple[Attempt, ...]
    clients: tuple[Client, ...]  # the client of each accepted message
    refused: Attempt | None  # the first refused attempt; None if none was refused

    @property
    def seconds_to_lock(self) -> float:
        """From the first spam message accepted to the start of the first attempt refused
        (not to its answer: a refused login may be answered after a delay)."""
        if self.refused is None or not self.accepted:
            raise AssertionError("the attack was never refused")
        return self.refused.started - self.accepted[0].at


def ordinary_mail(
    system: MailSystem,
    homes: Mapping[str, Client],
    rng: random.Random,
    *,
    rounds: int,
    interval: float = 1.0,
) -> list[Attempt]:
    """Every user sends one message a round from home, to one or two colleagues.

    The rounds are paced in real time: the daemons stamp the log with the wall clock,
    and postwatch must see the accounts for a while before their habits mean something.
    """
    attempts = []
    for number in range(rounds):
        if number:
            time.sleep(interval)
        for user, client in homes.items():
            recipients = [
                f"{rng.choice(('anna', 'ben', 'chris', 'dana'))}@example.{rng.choice(('net', 'org'))}"
                for _ in range(rng.randint(1, 2))
            ]
            attempts.append(
                system.send(user, client, recipients, subject=f"minutes {number} from {user}")
            )
    return attempts


def attack(
    system: MailSystem,
    user: str,
    rng: random.Random,
    *,
    messages: int,
    recipients: int = 10,
    interval: float = 0.0,
) -> Burst:
    """Send spam as ``user`` with the stolen password, each message from another botnet
    machine, ``interval`` seconds apart (0: as fast as the server answers); stop at the
    first refusal."""
    accepted: list[Attempt] = []
    clients: list[Client] = []
    machines = attacker_clients(rng)
    for number in range(messages):
        if number and interval:
            time.sleep(interval)
        client = next(machines)
        attempt = system.send(
            user, client, spam_recipients(rng, recipients), subject=f"Invoice {number} overdue"
        )
        if not attempt.accepted:
            return Burst(tuple(accepted), tuple(clients), attempt)
        accepted.append(attempt)
        clients.append(client)
    return Burst(tuple(accepted), tuple(clients), None)


# --- postwatch -------------------------------------------------------------------------------


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
