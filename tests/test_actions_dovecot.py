"""Dovecot deny passdb against a real private Dovecot, and a locked login refused by Postfix.

Dovecot runs with its own config in a temporary directory and no network listener: doveadm
talks to it over the unix sockets in its base_dir.  The last test also starts a private
Postfix whose submission service authenticates through that Dovecot and consults the
postwatch SASL access map, configured exactly as the documentation says.
"""

from __future__ import annotations

import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_program
from system.dovecot_instance import DovecotInstance
from system.postfix_instance import PostfixInstance, free_port, wait_for

from postwatch.actions.dovecot import DovecotDeny
from postwatch.actions.lockmap import PostfixSaslMap
from postwatch.errors import ActionError, UnsafeSubjectError

pytestmark = pytest.mark.system

USERS = {"alice@example.com": "alice-secret", "bob@example.com": "bob-secret"}


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotInstance]:
    instance = DovecotInstance(
        require_program("dovecot", "/usr/sbin/dovecot"),
        require_program("doveadm", "/usr/bin/doveadm"),
        users=USERS,
    )
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def clean_deny(dovecot: DovecotInstance) -> Iterator[DovecotInstance]:
    yield dovecot
    for user in USERS:
        dovecot.backend().unlock(user)


def test_locked_user_is_refused_by_dovecot_and_unlock_lets_it_back(
    clean_deny: DovecotInstance,
) -> None:
    """After lock Dovecot refuses the user's right password; after unlock it accepts it."""
    dovecot = clean_deny
    backend = dovecot.backend()
    result = backend.lock("alice@example.com")
    assert "added" in result and "kick" in result and "auth cache" in result
    # Dovecot re-reads a changed passwd-file at most once a second.
    wait_for(lambda: not dovecot.auth_ok("alice@example.com"), what="alice refused")
    assert dovecot.auth_ok("bob@example.com")
    assert (
        "user_disabled"
        in subprocess.run(
            [
                dovecot.doveadm,
                "-c",
                str(dovecot.config),
                "auth",
                "test",
                "alice@example.com",
                USERS["alice@example.com"],
            ],
            capture_output=True,
            text=True,
        ).stdout
    )
    assert backend.is_locked("alice@example.com") is True
    backend.unlock("alice@example.com")
    wait_for(lambda: dovecot.auth_ok("alice@example.com"), what="alice accepted again")


def test_lock_twice_lists_the_user_once(clean_deny: DovecotInstance) -> None:
    """Locking a locked user leaves one line in the deny file."""
    backend = clean_deny.backend()
    backend.lock("bob@example.com")
    assert "already" in backend.lock("bob@example.com")
    assert clean_deny.deny.read_text().splitlines().count("bob@example.com") == 1


def test_hostile_name_never_reaches_the_deny_file(clean_deny: DovecotInstance) -> None:
    """A username with a newline is refused and the deny file is unchanged."""
    before = clean_deny.deny.read_bytes()
    with pytest.raises(UnsafeSubjectError):
        clean_deny.backend().lock("a@b.example\n*")
    assert clean_deny.deny.read_bytes() == before


def test_unreachable_dovecot_is_reported_after_the_file_is_written(tmp_path: Path) -> None:
    """When doveadm cannot reach Dovecot the lock fails loudly but the deny file holds the user."""
    config = tmp_path / "dovecot.conf"
    config.write_text(f"base_dir = {tmp_path}/run\nprotocols =\n")
    backend = DovecotDeny(tmp_path / "deny", doveadm=require_program("doveadm"), config=config)
    with pytest.raises(ActionError, match="added"):
        backend.lock("alice@example.com")
    assert backend.is_locked("alice@example.com") is True


def test_postfix_submission_refuses_a_locked_login(dovecot: DovecotInstance) -> None:
    """With the documented main.cf/master.cf lines, smtpd refuses mail from a locked login."""
    submission_port = free_port()
    submission = (
        f"127.0.0.1:{submission_port} inet n - n - - smtpd\n"
        "  -o syslog_name=postfix/submission\n"
        "  -o smtpd_sasl_auth_enable=yes\n"
        "  -o smtpd_tls_auth_only=no\n"
        "  -o smtpd_relay_restrictions=$postwatch_sasl_access,permit_sasl_authenticated,reject\n"
    )
    instance = PostfixInstance.create(
        postfix=require_program("postfix", "/usr/sbin/postfix"), master_extra=submission
    )
    # smtpd reads the map as the postfix user: keep it in the instance's world-readable root.
    lock = PostfixSaslMap(
        instance.root / "postwatch_sasl_access",
        map_type="hash",
        postmap=require_program("postmap", "/usr/sbin/postmap"),
    )
    lock.unlock("nobody@example.com")  # creates the empty map and its index
    instance.postconf(
        "smtpd_sasl_type=dovecot",
        f"smtpd_sasl_path={dovecot.auth_socket}",
        f"postwatch_sasl_access=check_sasl_access {lock.map_name}",
    )

    def send(user: str) -> int:
        with smtplib.SMTP("127.0.0.1", submission_port, timeout=30) as client:
            client.ehlo("client.example")
            client.login(user, USERS[user])
            client.mail(user)
            code, _reply = client.rcpt("victim@example.net")
            return code

    with instance:
        assert send("alice@example.com") == 250
        lock.lock("alice@example.com")
        assert send("alice@example.com") == 554
        assert send("bob@example.com") == 250
        assert "Account disabled after suspected compromise" in instance.maillog.read_text()
        lock.unlock("alice@example.com")
        assert send("alice@example.com") == 250
