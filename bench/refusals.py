"""Sessions that carry no mail: rejected inbound attempts and failed SASL logins.

Wording from real logs: postscreen's ``CONNECT``/``DNSBL rank``/``PREGREET``/``HANGUP``/
``NOQUEUE: reject``/``DISCONNECT`` (postfix-grok-patterns, sshguard, postfix_exporter test
data, Postfix 3.7's format strings), smtpd's RBL, HELO, unknown-user and relay rejects
(kdent's MX log, fail2ban's samples), ``lost connection after ...`` and the disconnect
statistics, and Postfix 3.7's ``SASL LOGIN authentication failed: ..., sasl_username=``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.traffic import TLS_FROM_12, Endpoint, Server, counters


def auth_failures(
    server: Server,
    ts: float,
    client: Endpoint,
    usernames: Sequence[str],
    *,
    service: str = "submission",
    method: str = "LOGIN",
) -> float:
    """A session that only fails to authenticate; returns when it ended."""
    rng = server.rng
    program = server.smtpd_program(service)
    t = ts
    if service == "smtpd":
        _, t = server.postscreen_pass(ts, client.ip, "PASS OLD")
    connected = t
    lines: list[tuple[float, str]] = []
    tls = service != "smtpd" or rng.random() < 0.5
    if tls:
        t += rng.uniform(0.1, 0.9)
        lines.append(
            (
                t,
                f"Anonymous TLS connection established from "
                f"{client.name}[{client.ip}]: {TLS_FROM_12}",
            )
        )
    starttls = int(tls and service != "smtps")
    for username in usernames:
        t += rng.uniform(1.2, 4.5)
        lines.append((t, server.sasl_failure(client, method, username)))
    t += rng.uniform(0.01, 2.0)
    tries = len(usernames)
    if rng.random() < 0.6:
        lines.append((t, f"lost connection after AUTH from {client.name}[{client.ip}]"))
        parts = [
            ("ehlo", 1 + starttls, 1 + starttls),
            ("starttls", starttls, starttls),
            ("auth", 0, tries),
        ]
    else:
        parts = [
            ("ehlo", 1 + starttls, 1 + starttls),
            ("starttls", starttls, starttls),
            ("auth", 0, tries),
            ("rset", 1, 1),
            ("quit", 1, 1),
        ]
    lines.append((t, f"disconnect from {client.name}[{client.ip}] {counters(parts)}"))
    pid = server.processes.acquire(program, connected, t)
    server.connect(connected, program, pid, client, service)
    for when, message in lines:
        server.add(when, program, pid, message)
    return t


def refuse(
    server: Server, ts: float, client: Endpoint, why: str, sender: str, recipient: str
) -> None:
    """An inbound attempt that gets nowhere.

    ``why``: ``dnsbl`` and ``pregreet`` (postscreen), ``rbl``, ``helo``, ``fqdn``,
    ``unknown``, ``relay`` (smtpd ``NOQUEUE: reject: RCPT``), ``scan`` (connects and
    leaves), ``probe`` (EHLO and QUIT).
    """
    rng = server.rng
    if why in ("dnsbl", "pregreet"):
        pid = server.postscreen.use(ts)
        port = rng.randrange(1024, 65535)
        server.add(
            ts,
            "postfix/postscreen",
            pid,
            f"CONNECT from [{client.ip}]:{port} to [{server.ip}]:25",
        )
        if why == "pregreet":
            greeting = f"EHLO {client.helo}\\r\\n"
            early = rng.uniform(0.01, 0.3)
            server.add(
                ts + early,
                "postfix/postscreen",
                pid,
                f"PREGREET {len(greeting) - 2} after {early:.2f} from "
                f"[{client.ip}]:{port}: {greeting}",
            )
            server.add(
                ts + early + rng.uniform(0.01, 0.1),
                "postfix/postscreen",
                pid,
                f"HANGUP after {early + 0.05:.2g} from [{client.ip}]:{port} in tests "
                "after SMTP handshake",
            )
            return
        t = ts + rng.uniform(0.2, 1.5)
        server.add(
            t,
            "postfix/postscreen",
            pid,
            f"DNSBL rank {rng.choice((3, 3, 4, 5, 6))} for [{client.ip}]:{port}",
        )
        t += rng.uniform(6.0, 9.0)
        server.add(
            t,
            "postfix/postscreen",
            pid,
            f"NOQUEUE: reject: RCPT from [{client.ip}]:{port}: 550 5.7.1 Service "
            f"unavailable; client [{client.ip}] blocked using zen.spamhaus.org; "
            f"from=<{sender}>, to=<{recipient}>, proto=ESMTP, helo=<{client.helo}>",
        )
        server.add(
            t + rng.uniform(0.1, 2.0),
            "postfix/postscreen",
            pid,
            f"DISCONNECT [{client.ip}]:{port}",
        )
        return
    program = "postfix/smtpd"
    _, t = server.postscreen_pass(ts, client.ip, "PASS NEW" if rng.random() < 0.3 else "PASS OLD")
    connected = t
    lines: list[tuple[float, str]] = []
    where = f"{client.name}[{client.ip}]"
    if why == "scan":
        t += rng.uniform(0.01, 0.5)
        lines.append((t, f"lost connection after CONNECT from {where}"))
        lines.append((t, f"disconnect from {where} commands=0/0"))
    elif why == "probe":
        t += rng.uniform(0.05, 0.5)
        lines.append((t, f"disconnect from {where} {counters([('ehlo', 1, 1), ('quit', 1, 1)])}"))
    else:
        replies = {
            "rbl": f"554 5.7.1 Service unavailable; Client host [{client.ip}] blocked using "
            "zen.spamhaus.org; http://www.spamhaus.org/sbl/query/SBLCSS",
            "helo": f"450 4.7.1 <{client.helo}>: Helo command rejected: Host not found",
            "fqdn": f"504 5.5.2 <{client.helo}>: Helo command rejected: need "
            "fully-qualified hostname",
            "unknown": f"550 5.1.1 <{recipient}>: Recipient address rejected: User unknown "
            "in virtual mailbox table",
            "relay": f"454 4.7.1 <{recipient}>: Relay access denied",
        }
        t += rng.uniform(0.3, 2.5)
        proto = "ESMTP" if rng.random() < 0.85 else "SMTP"
        lines.append(
            (
                t,
                f"NOQUEUE: reject: RCPT from {where}: {replies[why]}; "
                f"from=<{sender}> to=<{recipient}> proto={proto} "
                f"helo=<{client.helo}>",
            )
        )
        greeting = "ehlo" if proto == "ESMTP" else "helo"
        t += rng.uniform(0.05, 1.5)
        if rng.random() < 0.5:
            lines.append((t, f"lost connection after RCPT from {where}"))
            parts = [(greeting, 1, 1), ("mail", 1, 1), ("rcpt", 0, 1)]
        else:
            parts = [(greeting, 1, 1), ("mail", 1, 1), ("rcpt", 0, 1), ("quit", 1, 1)]
        lines.append((t, f"disconnect from {where} {counters(parts)}"))
    pid = server.processes.acquire(program, connected, t)
    server.connect(connected, program, pid, client, "smtpd")
    for when, message in lines:
        server.add(when, program, pid, message)
