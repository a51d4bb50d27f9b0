"""Lock backends: subject checks, the Postfix SASL access map (real postmap), SQL and command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import sqlalchemy
from conftest import require_program

from postwatch.actions import subject
from postwatch.actions.command import CommandLock
from postwatch.actions.lockmap import PostfixSaslMap
from postwatch.actions.program import run_program
from postwatch.actions.sqllock import SqlLock
from postwatch.errors import ActionError, ConfigError, UnsafeSubjectError

HOSTILE_NAMES = [
    "a@b.example\nroot OK",  # a second map line
    "alice@example.com OK",  # a second field
    "alice@example.com\tOK",
    "-rf",  # an option to a command
    "#alice",  # a comment line
    "al:ice@example.com",  # a passwd-file field separator
    "*@example.com",  # a doveadm user mask
    "alice%example.com@relay.example",  # Postfix/Dovecot expansion
    "alice@example.com\x00",
    "alice\u202e@example.com",  # right-to-left override
    "",
    "a" * 300,
]


@pytest.fixture(scope="module")
def postmap() -> str:
    return require_program("postmap", "/usr/sbin/postmap")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_account_names_are_refused(name: str) -> None:
    """A username with whitespace, control characters or map syntax raises UnsafeSubjectError."""
    with pytest.raises(UnsafeSubjectError):
        subject.account(name)


@pytest.mark.parametrize(
    "name",
    [
        "alice@example.com",
        "j.doe+tag@mail.example.org",
        "webmaster",
        "first_last=x@sub-domain.example",
    ],
)
def test_ordinary_account_names_pass_lower_cased(name: str) -> None:
    """Ordinary login names pass unchanged apart from case."""
    assert subject.account(name.upper()) == name.lower()


def test_ip_is_canonical_and_mapped_addresses_become_ipv4() -> None:
    """IP addresses come back canonical; IPv4-mapped IPv6 becomes IPv4; junk is refused."""
    assert subject.ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert subject.ip("::ffff:203.0.113.5") == "203.0.113.5"
    for bad in ("203.0.113.5 ip=198.51.100.1", "unknown", "203.0.113.5\n"):
        with pytest.raises(UnsafeSubjectError):
            subject.ip(bad)


def test_shown_escapes_control_and_bidi_characters_and_caps_length() -> None:
    """Text shown to people is one quoted line with control and bidi characters escaped."""
    text = subject.shown('evil"\n\x1b[31m\u202eX' + "y" * 500)
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text
    assert text.startswith('"evil\\"\\x0a\\x1b[31m\\u202eX')
    assert text.endswith('..."') and len(text) < 200


@pytest.mark.system
def test_postfix_map_lock_is_seen_by_postmap_and_unlock_removes_it(
    tmp_path: Path, postmap: str
) -> None:
    """Lock writes `user REJECT text`, postmap -q answers REJECT; unlock makes it not found."""
    path = tmp_path / "sasl_access"
    lock = PostfixSaslMap(path, map_type="hash", postmap=postmap)
    assert "added" in lock.lock("Alice@Example.com")
    answer = run_program([postmap, "-q", "alice@example.com", f"hash:{path}"]).stdout.strip()
    assert answer == lock.reject
    assert lock.is_locked("alice@example.com") is True
    assert "already" in lock.lock("alice@example.com")
    assert "removed" in lock.unlock("alice@example.com")
    assert (
        run_program([postmap, "-q", "alice@example.com", f"hash:{path}"], ok=(0, 1)).returncode == 1
    )
    assert "was not" in lock.unlock("alice@example.com")


@pytest.mark.system
def test_texthash_map_needs_no_postmap_run(tmp_path: Path, postmap: str) -> None:
    """A texthash map is checked with postmap -q but never compiled."""
    path = tmp_path / "sasl_access"
    PostfixSaslMap(path, map_type="texthash", postmap=postmap).lock("bob@example.com")
    assert not (tmp_path / "sasl_access.db").exists()
    assert "bob@example.com REJECT" in path.read_text()


@pytest.mark.system
def test_postfix_map_keeps_mode_and_owner(tmp_path: Path, postmap: str) -> None:
    """The atomic rewrite keeps the old file's mode and owner."""
    path = tmp_path / "sasl_access"
    path.write_text("")
    path.chmod(0o640)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        # postmap runs as the map's owner, so keep root but give it another group.
        owner = (0, 1)
        os.chown(path, *owner)
    PostfixSaslMap(path, postmap=postmap).lock("carol@example.com")
    info = path.stat()
    assert (info.st_mode & 0o7777, info.st_uid, info.st_gid) == (0o640, *owner)


@pytest.mark.system
def test_postfix_map_recompiles_when_the_index_is_stale(tmp_path: Path, postmap: str) -> None:
    """A user listed in the text but missing from the index (crash before postmap) is fixed."""
    path = tmp_path / "sasl_access"
    lock = PostfixSaslMap(path, postmap=postmap)
    lock.lock("dave@example.com")
    path.write_text(path.read_text() + f"erin@example.com {lock.reject}\n")
    assert "already" in lock.lock("erin@example.com")
    answer = run_program([postmap, "-q", "erin@example.com", f"hash:{path}"]).stdout.strip()
    assert answer == lock.reject


@pytest.mark.system
def test_unsafe_subject_leaves_the_map_unchanged(tmp_path: Path, postmap: str) -> None:
    """A hostile username is refused and neither the map nor its index changes."""
    path = tmp_path / "sasl_access"
    lock = PostfixSaslMap(path, postmap=postmap)
    lock.lock("alice@example.com")
    before = (path.read_bytes(), (tmp_path / "sasl_access.db").read_bytes())
    for name in HOSTILE_NAMES:
        with pytest.raises(UnsafeSubjectError):
            lock.lock(name)
        with pytest.raises(UnsafeSubjectError):
            lock.unlock(name)
    assert (path.read_bytes(), (tmp_path / "sasl_access.db").read_bytes()) == before
    assert run_program([postmap, "-q", "root", f"hash:{path}"], ok=(0, 1)).returncode == 1


def test_postfix_map_refuses_a_multi_line_reject_text(tmp_path: Path) -> None:
    """The configured reject text must be one printable line with a Postfix action."""
    with pytest.raises(ConfigError):
        PostfixSaslMap(tmp_path / "m", reject="REJECT locked\nroot OK")
    with pytest.raises(ConfigError):
        PostfixSaslMap(tmp_path / "m", reject="OK")


@pytest.fixture
def mailbox_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'accounts.sqlite'}"
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "CREATE TABLE mailbox (username TEXT PRIMARY KEY, active INTEGER NOT NULL)"
            )
        )
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO mailbox VALUES ('alice@example.com', 1), ('bob@example.com', 1)"
            )
        )
    engine.dispose()
    return url


def _active(url: str) -> dict[str, int]:
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text("SELECT username, active FROM mailbox"))
        result = {row[0]: row[1] for row in rows}
    engine.dispose()
    return result


def test_sql_lock_runs_the_bound_statement(mailbox_db: str) -> None:
    """The Postfixadmin-style UPDATE deactivates only the locked user, and unlock restores it."""
    lock = SqlLock(
        mailbox_db,
        lock="UPDATE mailbox SET active = 0 WHERE username = :user",
        unlock="UPDATE mailbox SET active = 1 WHERE username = :user",
        check="SELECT active = 0 FROM mailbox WHERE username = :user",
    )
    lock.lock("alice@example.com")
    assert _active(mailbox_db) == {"alice@example.com": 0, "bob@example.com": 1}
    assert lock.is_locked("alice@example.com") is True
    lock.unlock("alice@example.com")
    assert _active(mailbox_db) == {"alice@example.com": 1, "bob@example.com": 1}
    assert lock.is_locked("alice@example.com") is False


def test_sql_lock_of_an_unknown_user_fails(mailbox_db: str) -> None:
    """A lock statement that matches no row is reported as a failed lock."""
    lock = SqlLock(
        mailbox_db,
        lock="UPDATE mailbox SET active = 0 WHERE username = :user",
        unlock="UPDATE mailbox SET active = 1 WHERE username = :user",
    )
    with pytest.raises(ActionError, match="no row"):
        lock.lock("mallory@example.com")


def test_sql_statement_without_bound_parameter_is_a_config_error(mailbox_db: str) -> None:
    """A statement that does not use :user is refused when the backend is built."""
    with pytest.raises(ConfigError):
        SqlLock(mailbox_db, lock="UPDATE mailbox SET active = 0", unlock="SELECT 1 -- :user")


def test_sql_refuses_hostile_names_before_the_database(mailbox_db: str) -> None:
    """An injection attempt never reaches the database, which stays unchanged."""
    lock = SqlLock(
        mailbox_db,
        lock="UPDATE mailbox SET active = 0 WHERE username = :user",
        unlock="UPDATE mailbox SET active = 1 WHERE username = :user",
    )
    with pytest.raises(UnsafeSubjectError):
        lock.lock("x' OR '1'='1")
    assert set(_active(mailbox_db).values()) == {1}


def test_command_lock_passes_the_user_as_one_argument(tmp_path: Path) -> None:
    """The user replaces {user} inside one argv element; the program sees exactly that."""
    out = tmp_path / "argv.txt"
    script = (
        f"import sys, pathlib; pathlib.Path({str(out)!r}).write_text(chr(10).join(sys.argv[1:]))"
    )
    lock = CommandLock(
        [sys.executable, "-c", script, "disable", "--user={user}", "{user}"],
        [sys.executable, "-c", script, "enable", "{user}"],
    )
    lock.lock("alice@example.com")
    assert out.read_text().split("\n") == [
        "disable",
        "--user=alice@example.com",
        "alice@example.com",
    ]
    lock.unlock("alice@example.com")
    assert out.read_text().split("\n") == ["enable", "alice@example.com"]


def test_command_lock_failure_names_the_program_and_status() -> None:
    """A command that exits non-zero becomes an ActionError with its status and stderr."""
    script = "import sys; sys.stderr.write('no such mailbox'); sys.exit(3)"
    lock = CommandLock([sys.executable, "-c", script, "{user}"], [sys.executable, "{user}"])
    with pytest.raises(ActionError, match=r"status 3: no such mailbox"):
        lock.lock("alice@example.com")


def test_command_lock_needs_the_placeholder() -> None:
    """A command template without {user} is a configuration error."""
    with pytest.raises(ConfigError):
        CommandLock(["/bin/true"], ["/bin/true", "{user}"])
