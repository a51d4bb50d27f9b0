"""A real, throw-away PostgreSQL server for the store tests (Debian package ``postgresql``).

``postgres_server`` (session scope) runs ``initdb`` in a temporary directory and starts the
server with ``pg_ctl`` on 127.0.0.1, a free port, and its unix socket inside that directory;
it stops the server and removes the directory at the end.  As root it runs the server as the
``postgres`` system user (PostgreSQL refuses to run as root).  ``postgres_url`` (function
scope) creates a fresh database per test and drops it afterwards.  A missing installation
fails the test with a clear message; it is never skipped.

Import the fixtures into a test module (or conftest) with
``from pg import postgres_server, postgres_url``; conftest's ``url`` then runs a store test
on both backends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest


class PostgresServer(NamedTuple):
    host: str
    port: int
    user: str
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"


def _bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda path: int(Path(path).parts[-3])
    )
    if not found:
        pytest.fail(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): "
            "run `make test`, which installs the Debian package postgresql"
        )
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    """Run ``command`` as a non-root user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", "postgres", "--", *command]
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", *command]
    pytest.fail("running as root, but neither runuser nor setpriv is available")


def _run(command: list[str], folder: Path) -> None:
    result = subprocess.run(
        _as_server_user(command),
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(
            f"{' '.join(command[:1])} failed ({result.returncode}): {result.stderr.strip()} {tail}"
        )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server on 127.0.0.1, up for the whole test session."""
    bindir = _bindir()
    folder = Path(tempfile.mkdtemp(prefix="postwatch-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, but there is no postgres user to run the server")
        os.chown(folder, account.pw_uid, account.pw_gid)
    folder.chmod(0o700)
    data, port, user = folder / "data", _free_port(), "postwatch"
    _run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            user,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        folder,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off"
    )
    _run(
        [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(folder / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        folder,
    )
    try:
        yield PostgresServer("127.0.0.1", port, user, folder)
    finally:
        subprocess.run(
            _as_server_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
            capture_output=True,
            cwd=folder,
            timeout=120,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database on the test server (dropped afterwards)."""
    import psycopg

    name = f"pw_{uuid.uuid4().hex[:12]}"
    admin = (
        f"host={postgres_server.host} port={postgres_server.port} "
        f"user={postgres_server.user} dbname=postgres"
    )
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
