"""Dovecot's own lines: IMAP logins and logouts, failed logins and the auth verdicts.

Shapes from real Dovecot 2.3 logs: ``imap-login: Login: user=<>, method=PLAIN, rip=, lip=,
mpid=, TLS, session=<>`` (``secured`` over loopback, as for a webmail), ``imap(user): Logged
out in= out=``, ``auth: sql(user,ip,<session>): Password mismatch`` and ``imap-login:
Disconnected (auth failed, N attempts in S secs): user=<>, method=PLAIN, rip=, lip=, TLS,
session=<>``.  LMTP delivery lines are written with the delivery (``bench.delivery``).
"""

from __future__ import annotations

from bench.delivery import dovecot_session_id
from bench.networks import WEBMAIL_IP
from bench.traffic import Server


def imap(server: Server, ts: float, user: str, ip: str, duration: float) -> None:
    """An IMAP login (TLS, or ``secured`` over loopback) and its logout."""
    rng = server.rng
    mpid = server.processes.acquire("dovecot/imap", ts, ts + duration)
    local = ip == WEBMAIL_IP
    security = "secured" if local else "TLS"
    server.add(
        ts,
        "dovecot",
        None,
        f"imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, "
        f"lip={WEBMAIL_IP if local else server.ip}, mpid={mpid}, {security}, "
        f"session=<{dovecot_session_id(rng)}>",
    )
    server.add(
        ts + duration,
        "dovecot",
        None,
        f"imap({user}): Logged out in={rng.randrange(40, 4000)} out={rng.randrange(400, 400_000)}",
    )


def imap_failure(
    server: Server, ts: float, user: str, ip: str, *, attempts: int = 1, known_user: bool = True
) -> float:
    """A failed IMAP login: Dovecot's auth verdict, then the login process gives up."""
    rng = server.rng
    session = dovecot_session_id(rng)
    t = ts
    for _ in range(attempts):
        t += rng.uniform(0.5, 3.0)
        verdict = "Password mismatch" if known_user else "unknown user"
        server.add(t, "dovecot", None, f"auth: sql({user},{ip},<{session}>): {verdict}")
    end = t + rng.uniform(0.1, 1.0)
    server.add(
        end,
        "dovecot",
        None,
        f"imap-login: Disconnected (auth failed, {attempts} attempts in "
        f"{max(1, int(end - ts))} secs): user=<{user}>, method=PLAIN, rip={ip}, "
        f"lip={server.ip}, TLS, session=<{session}>",
    )
    return end
