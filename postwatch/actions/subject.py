"""Subjects that actions touch: checked before they reach a map file, SQL, a command or a message.

A SASL username, an envelope sender, a HELO name or a remote reply is chosen by whoever
connects.  Before a name reaches anything that has a syntax of its own (a Postfix map line,
a passwd-file, an argv list, a fail2ban log line), it passes :func:`account`, :func:`ip` or
:func:`queue_id`, which either return it in canonical form or raise
:class:`~postwatch.errors.UnsafeSubjectError`.  Nothing is "cleaned up": a name that needs
cleaning is refused whole.

:func:`shown` is the other half: it makes attacker text safe to *show* (in a notification
or on a terminal) without trusting it.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from postwatch.errors import UnsafeSubjectError

# A login name: local part, optionally @domain.  The local part is a conservative subset of
# RFC 5322 atext: no whitespace or control characters (line structure of map and passwd
# files), no ':' (passwd-file field separator), no '#' (comments), no '*' or '?' (doveadm
# user masks), no '%' (Postfix and Dovecot expansion), no quotes, no '/' (paths), and never a
# leading '-' (it would read as an option to a command) or '.'.
_LOCAL = r"[A-Za-z0-9_][A-Za-z0-9._+=~^-]{0,127}"
_DOMAIN = r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,252}[A-Za-z0-9])?"
_ACCOUNT = re.compile(rf"(?:{_LOCAL})(?:@{_DOMAIN})?\Z")
# Postfix queue IDs: short (hex) or long (base 52 with a 'z'/'y' separator).
_QUEUE_ID = re.compile(r"[0-9A-Za-z]{5,32}\Z")
# A slug postwatch itself chooses (rule names, ban reasons, jail names).
_SLUG = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}\Z")
SHOWN_LIMIT = 160


def account(name: object) -> str:
    """``name`` if it is a safe login name (lower-cased), else :class:`UnsafeSubjectError`."""
    if not isinstance(name, str) or not name:
        raise UnsafeSubjectError(f"refusing an empty or non-text account name: {shown(name)}")
    if not _ACCOUNT.match(name):
        raise UnsafeSubjectError(
            f"refusing account name {shown(name)}: only letters, digits and . _ + = ~ ^ - "
            "with at most one @domain are accepted"
        )
    return name.lower()


def ip(address: object) -> str:
    """``address`` as a canonical IP address string, else :class:`UnsafeSubjectError`.

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``) become the IPv4 address.
    """
    if not isinstance(address, str) or len(address) > 64:
        raise UnsafeSubjectError(f"refusing IP address {shown(address)}")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError as exc:
        raise UnsafeSubjectError(f"refusing IP address {shown(address)}") from exc
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def queue_id(text: object) -> str:
    """``text`` if it is a Postfix queue ID, else :class:`UnsafeSubjectError`."""
    if not isinstance(text, str) or not _QUEUE_ID.match(text):
        raise UnsafeSubjectError(f"refusing queue ID {shown(text)}")
    return text


def slug(text: object, *, default: str = "unspecified") -> str:
    """A short lower-case token made from ``text`` (a rule name), never anything else."""
    if not isinstance(text, str):
        return default
    candidate = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.")[:64]
    return candidate if _SLUG.match(candidate) else default


def is_slug(text: str) -> bool:
    """Whether ``text`` is already a slug (a jail name, an action name)."""
    return bool(_SLUG.match(text))


def printable(text: object, limit: int = SHOWN_LIMIT) -> str:
    """``text`` with control, format and separator characters escaped, capped at ``limit``.

    The result is one line of printable characters, so a HELO name or a username can never
    add lines or hide text (bidi overrides).
    """
    if not isinstance(text, str):
        text = repr(text)
    out = []
    for char in text[:limit]:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(char)
    return "".join(out) + ("..." if len(text) > limit else "")


def shown(text: object, limit: int = SHOWN_LIMIT) -> str:
    """``text`` between double quotes, :func:`printable`, its own quotes escaped.

    Quoted, attacker text cannot pass as postwatch's own words in a message.
    """
    if not isinstance(text, str):
        text = repr(text)
    escaped = text[:limit].replace("\\", "\\\\").replace('"', '\\"')
    return '"' + printable(escaped, limit * 2) + ("..." if len(text) > limit else "") + '"'
