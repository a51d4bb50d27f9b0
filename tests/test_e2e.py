"""End to end: a stolen password used against a real Postfix + Dovecot, stopped by postwatch.

One mail system (Postfix, Dovecot, a relay sink, a notification receiver: all on loopback,
see ``system/e2e.py``) serves the module; each test runs its own ``postwatch watch`` with a
fresh state directory and leaves the system as it found it (map, deny list, queue).
Each test asserts what an admin would check: ``postqueue -j``, ``postmap -q``, ``doveadm
auth test``, the notification received, ``fail2ban-regex`` on the ban log, and whether
a real submission is accepted or refused.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import pytest
from conftest import require_program
from pg import postgres_server, postgres_url  # noqa: F401  (fixtures)
from system.e2e import (
    SPAM_DOMAINS,
    Attempt,
    Burst,
    Client,
    MailSystem,
    Postwatch,
    Programs,
    attack,
    attacker_clients,
    home_client,
    ordinary_mail,
    spam_recipients,
)
from system.postfix_instance import wait_for

pytestmark = pytest.mark.system

VICTIM = "alice@example.com"
REFUSED_AT = {"auth": 535, "rcpt": 554}  # Dovecot's deny passdb; the postwatch map
# Dovecot's submission: its deny passdb, or the session in progress kicked (421 "Shutting down")
KICKED_AT = {"auth": 535, "mail": 421, "rcpt": 421, "data": 421}
MIN_HISTORY = 3  # seconds an account is watched before its habits count (see MailSystem.config)
ORDINARY_ROUNDS = MIN_HISTORY + 2  # one second apart: the accounts' history
MAX_SPAM = 300  # the attacker gives up here: a test that reaches it has failed


@pytest.fixture(scope="module")
def mail() -> Iterator[MailSystem]:
    with MailSystem(Programs.find(require_program)) as system:
        yield system


@pytest.fixture
def system(mail: MailSystem) -> Iterator[MailSystem]:
    """The module's mail system, put back as it was after each test."""
    mail.sink.greylisted.update(SPAM_DOMAINS)
    try:
        yield mail
    finally:
        mail.reset()


@pytest.fixture
def watch(system: MailSystem) -> Iterator[Callable[..., Postwatch]]:
    """Start ``postwatch watch`` on the system (fresh state); stopped after the test."""
    started: list[Postwatch] = []

    def start(store_url: str = "") -> Postwatch:
        postwatch = Postwatch(system, store_url=store_url, min_history=MIN_HISTORY)
        started.append(postwatch)
        postwatch.start()
        return postwatch

    yield start
    for postwatch in started:
        postwatch.stop()


def ordinary_history(system: MailSystem, rng: random.Random) -> dict[str, Client]:
    """Every user mails colleagues from home for a few seconds; all of it is delivered."""
    homes = {user: home_client(rng, user) for user in system.users}
    attempts = ordinary_mail(system, homes, rng, rounds=ORDINARY_ROUNDS)
    assert all(attempt.accepted for attempt in attempts)
    wait_for(lambda: len(system.sink.received) >= len(attempts), what="ordinary mail delivered")
    return homes


def until_accepted(send: Callable[[], Attempt]) -> Attempt:
    """Submit again until the server accepts (Dovecot re-reads its deny list each second)."""

    def accepted() -> Attempt | None:
        attempt = send()
        return attempt if attempt.accepted else None

    attempt = wait_for(accepted, what="a submission accepted")
    assert attempt is not None
    return attempt


def wait_on_hold(system: MailSystem, attempts: Iterable[Attempt], *, what: str) -> None:
    """Wait until every accepted message of ``attempts`` is in the hold queue."""
    queue_ids = {attempt.queue_id for attempt in attempts}
    wait_for(lambda: {system.queue().get(qid) for qid in queue_ids} == {"hold"}, what=what)


def assert_stopped(
    system: MailSystem,
    postwatch: Postwatch,
    spam: list[Attempt],
    refused: Attempt | None,
    refused_at: Mapping[str, int] = REFUSED_AT,
) -> dict[str, Any]:
    """The critical alert, the locks, the held spam and the refusals after an attack."""
    assert refused is not None, f"{len(spam)} spam messages accepted and none refused"
    assert refused_at.get(refused.stage) == refused.code, refused
    alert = postwatch.wait_for_alert(VICTIM, "critical")
    # Locked where Postfix and Dovecot look.
    assert system.postfix_lock(VICTIM).startswith("REJECT")
    wait_for(lambda: system.dovecot_denied() == [VICTIM], what="the Dovecot deny list")
    wait_for(lambda: not system.dovecot.auth_ok(VICTIM), what="Dovecot to refuse the victim")
    wait_on_hold(system, spam, what="the spam on hold")  # all accepted before the lock
    # The attacker's next try is refused by the real Postfix.
    again = attack(system, VICTIM, random.Random(99), messages=1)
    assert again.refused is not None and again.refused.stage == "auth", again
    return alert


def notified(system: MailSystem, postwatch: Postwatch, count: int = 1) -> list[dict[str, Any]]:
    """The notifications received, once there are ``count``; on a timeout, what postwatch
    said and journaled about them."""
    try:
        wait_for(
            lambda: len(system.receiver.notifications) >= count,
            timeout=30.0,
            what=f"{count} notification(s)",
        )
    except AssertionError as exc:
        tried = [
            (e["state"], e["result"])
            for e in journaled(postwatch, VICTIM)
            if e["action"] == "notify"
        ]
        raise AssertionError(f"{exc}; journal: {tried}; stderr: {postwatch.errors()}") from None
    return system.receiver.notifications


def journaled(postwatch: Postwatch, subject: str) -> list[dict[str, Any]]:
    """``postwatch actions --subject S --json``: the journal's entries, oldest first."""
    listed = postwatch.cli("actions", "--subject", subject, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    entries = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return entries[::-1]


def actions_done(postwatch: Postwatch, subject: str) -> list[str]:
    """The actions journaled as done, oldest first."""
    return [entry["action"] for entry in journaled(postwatch, subject) if entry["state"] == "done"]


def test_stolen_password_burst_is_stopped_and_undone(
    system: MailSystem, watch: Callable[..., Postwatch]
) -> None:
    """A spam burst with a stolen password is locked, held, notified and banned; unlock
    with --release restores the user and lets the held mail go."""
    rng = random.Random(1)
    postwatch = watch()
    homes = ordinary_history(system, rng)
    postwatch.wait_caught_up()
    assert postwatch.alerts() == []
    assert system.postfix_lock(VICTIM) == "" and system.dovecot_denied() == []
    assert system.receiver.notifications == []

    burst = attack(system, VICTIM, rng, messages=MAX_SPAM)
    alert = assert_stopped(system, postwatch, list(burst.accepted), burst.refused)
    signals = {reason["signal"] for reason in alert["reasons"]}
    assert "bogus_helo" in signals  # the botnet's random HELO names
    # Exactly one notification, naming the account and why.
    notice = notified(system, postwatch)[0]
    assert len(system.receiver.notifications) == 1
    assert "critical" in notice["title"] and VICTIM in notice["title"]
    assert all(signal in notice["message"] for signal in signals)
    # fail2ban bans the attacker's machines, and never the user's own home address.
    banned = set(system.fail2ban_ips())
    assert banned and banned <= {client.ip for client in burst.clients}
    assert homes[VICTIM].ip not in banned
    # The other users go on as before.
    bob = "bob@example.com"
    assert system.send(bob, homes[bob], ["anna@example.net"], subject="still here").accepted

    unlocked = postwatch.cli("unlock", VICTIM, "--release")
    assert unlocked.returncode == 0, unlocked.stdout + unlocked.stderr
    assert system.postfix_lock(VICTIM) == "" and system.dovecot_denied() == []
    until_accepted(lambda: system.send(VICTIM, homes[VICTIM], ["ben@example.org"], subject="back"))
    assert "hold" not in system.queue().values()
    # The released mail goes out when the remote side takes it.
    system.sink.greylisted.clear()
    system.flush()
    spam = len(burst.accepted)
    wait_for(
        lambda: sum(m.subject.startswith("Invoice") for m in system.sink.received) == spam,
        what="the released mail at the sink",
    )
    wait_for(lambda: not system.queue(), what="an empty queue")
    # The unlock is announced too, and nothing else was sent.
    notified(system, postwatch, 2)  # the unlock notice
    assert postwatch.stop() == 0, postwatch.errors()
    titles = [notice["title"] for notice in system.receiver.notifications]
    assert len(titles) == 2 and f"{VICTIM} unlocked" in titles[1], titles


@pytest.fixture(scope="module")
def dovecot_msa() -> Iterator[MailSystem]:
    """A second system: the users submit to Dovecot's submission service, which relays
    through Postfix's smtpd without naming them, and Dovecot logs into Postfix's log."""
    with MailSystem(Programs.find(require_program), dovecot_submission=True) as system:
        system.sink.greylisted.update(SPAM_DOMAINS)
        yield system


def test_a_stolen_password_used_through_dovecots_submission_is_stopped(
    dovecot_msa: MailSystem,
) -> None:
    """Postfix sees every message come from Dovecot on 127.0.0.1 without a login; postwatch
    takes the login and the client's address from Dovecot's own lines, and the burst is
    locked and held as on Postfix's submission.  Fails without that attribution: no
    message would have a sender account."""
    system = dovecot_msa
    postwatch = Postwatch(system, min_history=MIN_HISTORY)
    postwatch.start()
    try:
        rng = random.Random(3)
        homes = ordinary_history(system, rng)
        postwatch.wait_caught_up()
        assert postwatch.alerts() == []
        burst = attack(system, VICTIM, rng, messages=MAX_SPAM)
        alert = assert_stopped(
            system, postwatch, list(burst.accepted), burst.refused, refused_at=KICKED_AT
        )
        attackers = {client.ip for client in burst.clients}
        assert attackers & set(alert["evidence"]["ips"])  # the logins' own addresses
        banned = set(system.fail2ban_ips())  # never Dovecot's relay on 127.0.0.1
        assert banned and banned <= attackers and homes[VICTIM].ip not in banned
        assert postwatch.stop() == 0, postwatch.errors()
    finally:
        postwatch.stop()
        system.reset()


def test_kill_9_mid_burst_still_locks_once(
    system: MailSystem, watch: Callable[..., Postwatch]
) -> None:
    """postwatch killed with SIGKILL in the middle of a burst and restarted sees one
    incident, locks the account once and tells the admin once.

    The kill lands after the first alert; whether the lock came before it or comes after
    the restart, it comes once.  An alert raised after the last commit is printed again
    after the restart (alerts are at least once); its actions are not run again."""
    rng = random.Random(2)
    postwatch = watch()
    ordinary_history(system, rng)
    seen = attack(system, VICTIM, rng, messages=1)
    postwatch.wait_for_alert(VICTIM)  # it has taken in the start of the burst
    postwatch.kill()
    bursts = [seen, attack(system, VICTIM, rng, messages=4)]  # while nobody watches
    postwatch.start()
    if bursts[-1].refused is None:
        bursts.append(attack(system, VICTIM, rng, messages=MAX_SPAM))
    assert len(seen.accepted) == 1
    spam = [attempt for burst in bursts for attempt in burst.accepted]
    assert_stopped(system, postwatch, spam, bursts[-1].refused)
    alerts = postwatch.alerts()
    assert "critical" in {alert["severity"] for alert in alerts}
    assert len({alert["incident"] for alert in alerts}) == 1
    assert system.lock_map.read_text().count(VICTIM) == 1
    assert sorted(a for a in actions_done(postwatch, VICTIM) if a.startswith("lock:")) == [
        "lock:dovecot",
        "lock:postfix-map",
    ]
    notified(system, postwatch)
    assert postwatch.stop() == 0, postwatch.errors()
    assert len(system.receiver.notifications) == 1


def test_a_message_past_rcpt_when_the_lock_lands_is_held_too(
    system: MailSystem, watch: Callable[..., Postwatch]
) -> None:
    """A spam session already past RCPT when the account is locked still queues its
    message, after the hold looked at the queue: postwatch looks again and holds it."""
    rng = random.Random(4)
    postwatch = watch()
    ordinary_history(system, rng)
    postwatch.wait_caught_up()
    bursts: list[Burst] = []

    def burst_and_hold() -> None:
        bursts.append(attack(system, VICTIM, rng, messages=MAX_SPAM))
        wait_on_hold(system, bursts[0].accepted, what="the burst on hold")

    late = system.send(
        VICTIM,
        next(attacker_clients(rng)),
        spam_recipients(rng, 10),
        subject="Invoice late",
        before_data=burst_and_hold,
    )
    assert late.accepted, late  # RCPT passed before the lock: Postfix takes the message
    [burst] = bursts
    assert_stopped(system, postwatch, list(burst.accepted), burst.refused)
    wait_for(
        lambda: system.queue().get(late.queue_id) == "hold",
        timeout=40,
        what="the late message on hold",
    )
    holds = [entry for entry in journaled(postwatch, VICTIM) if entry["action"] == "hold"]
    assert [entry["state"] for entry in holds] == ["done", "done"]  # the hold, the look again
    assert holds[-1]["detail"]["held"] == [late.queue_id]
    assert postwatch.stop() == 0, postwatch.errors()


def test_postgresql_store_gives_the_same_outcome(
    system: MailSystem, watch: Callable[..., Postwatch], request: pytest.FixtureRequest
) -> None:
    """With its state in PostgreSQL, postwatch stops the same burst the same way."""
    rng = random.Random(3)
    postwatch = watch(store_url=request.getfixturevalue("postgres_url"))
    ordinary_history(system, rng)
    postwatch.wait_caught_up()
    assert postwatch.alerts() == []
    burst = attack(system, VICTIM, rng, messages=MAX_SPAM)
    assert_stopped(system, postwatch, list(burst.accepted), burst.refused)
    notified(system, postwatch)
    assert {"lock:postfix-map", "lock:dovecot", "hold"} <= set(actions_done(postwatch, VICTIM))
    assert postwatch.stop() == 0, postwatch.errors()
    assert len(system.receiver.notifications) == 1


# --- rotation ------------------------------------------------------------------------------


class MailFlow:
    """Ordinary mail sent from a thread until :meth:`stop`: traffic during a rotation."""

    def __init__(self, system: MailSystem, homes: Mapping[str, Client], pause: float) -> None:
        self.system, self.homes, self.pause = system, dict(homes), pause
        self.attempts: list[tuple[str, Attempt]] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MailFlow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        number = 0
        try:
            while not self._stop.is_set():
                for user, client in self.homes.items():
                    attempt = self.system.send(
                        user, client, ["team@example.org"], subject=f"flow {number}"
                    )
                    self.attempts.append((user, attempt))
                    number += 1
                self._stop.wait(self.pause)
        except BaseException as exc:  # reported by stop(): a thread must not die silently
            self.failure = exc

    def sent(self, user: str) -> list[str]:
        """The queue IDs of the messages of ``user`` that were accepted."""
        return [a.queue_id for who, a in self.attempts if who == user and a.accepted]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.failure is not None:
            raise AssertionError(f"mail flow failed: {self.failure!r}") from self.failure


def rotate(system: MailSystem, how: str) -> None:
    """Rotate the maillog with the real logrotate: ``rename`` (create a new file, then
    ``postfix reload`` so postlogd reopens it) or ``copytruncate``."""
    folder = system.root / "logrotate"
    folder.mkdir(exist_ok=True)
    if how == "rename":
        postfix = system.postfix
        action = (
            "    create\n    postrotate\n"
            f"        {postfix.program('postfix')} -c {postfix.config_dir} reload >/dev/null 2>&1\n"
            "    endscript\n"
        )
    elif how == "copytruncate":
        action = "    copytruncate\n"
    else:
        raise ValueError(how)
    config = folder / "maillog.conf"
    config.write_text(f"{system.maillog} {{\n    rotate 5\n    nocompress\n{action}}}\n")
    config.chmod(0o644)
    subprocess.run(
        [system.programs.logrotate, "-f", "-s", str(folder / "state"), str(config)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def logged(system: MailSystem, queue_ids: Iterable[str]) -> set[str]:
    """The queue IDs whose arrival (``client=``) and queueing (qmgr ``from=``) lines are
    in the maillog or one of its rotations: what a reader of the log can know of."""
    maillog = system.maillog
    text = "".join(
        path.read_text(errors="replace") for path in maillog.parent.glob(maillog.name + "*")
    )
    return {qid for qid in queue_ids if f" {qid}: client=" in text and f" {qid}: from=<" in text}


@pytest.mark.parametrize("how", ["rename", "copytruncate"])
def test_rotation_while_mail_flows_misses_nothing(
    system: MailSystem, watch: Callable[..., Postwatch], how: str
) -> None:
    """The maillog rotated by logrotate while mail flows: every message in the log is
    counted, and counted once."""
    rng = random.Random(4)
    homes = {user: home_client(rng, user) for user in ("bob@example.com", "carol@example.com")}
    postwatch = watch()
    with MailFlow(system, homes, pause=0.05) as flow:
        wait_for(lambda: len(flow.attempts) >= 20, what="mail flowing")
        rotate(system, how)
        wait_for(lambda: len(flow.attempts) >= 60, what="mail flowing after the rotation")
    rotated = system.maillog.with_name(system.maillog.name + ".1").read_text()
    assert "sasl_username=" in rotated and "sasl_username=" in system.maillog.read_text()
    sent = {user: flow.sent(user) for user in homes}
    total = sum(map(len, sent.values()))
    wait_for(  # relayed: Postfix has written all it will write about them
        lambda: sum(m.subject.startswith("flow ") for m in system.sink.received) == total,
        what="the flow's mail at the sink",
    )
    found = {user: logged(system, queue_ids) for user, queue_ids in sent.items()}
    if how == "rename":
        assert found == {user: set(queue_ids) for user, queue_ids in sent.items()}
    # copytruncate loses what Postfix writes between logrotate's copy and its truncation
    # (logrotate(8) says so): postwatch can only count what the log holds.
    expected = {user: len(queue_ids) for user, queue_ids in found.items()}
    wait_for(
        lambda: {u: postwatch.summary().get(u, {}).get("messages") for u in homes} == expected,
        what=f"postwatch to count {expected}",
    )
    assert postwatch.stop() == 0, postwatch.errors()
    # The last commit, written on the way out, counts the same.
    assert {u: postwatch.summary()[u]["messages"] for u in homes} == expected
    assert postwatch.alerts() == []
