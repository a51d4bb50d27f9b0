"""smtpd restriction lists as ordered items: which checks an authenticated client reaches.

A list is read left to right and a ``permit`` ends it, so a check placed after
``permit_sasl_authenticated`` never runs for logged-in clients: the order matters as much
as the presence.  Items keep their table argument (``check_sasl_access hash:/...``) so a
fix can move them whole.
"""

from __future__ import annotations

from typing import NamedTuple

from postwatch.audit.settings import PostfixConfig, Service

# The lists smtpd evaluates for a recipient, in order.  With smtpd_delay_reject = yes
# (the default) the client and helo lists are evaluated at RCPT time too, when the SASL
# login and the sender are known.
CHECK_LISTS = (
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
)
AUTH_PERMITS = frozenset({"permit_sasl_authenticated", "permit"})
LOGIN_MISMATCH = frozenset(
    {
        "reject_sender_login_mismatch",
        "reject_authenticated_sender_login_mismatch",
        "reject_known_sender_login_mismatch",
    }
)


def takes_argument(name: str) -> bool:
    """Whether a restriction is followed by a table, domain or policy argument."""
    if name == "check_relay_domains":
        return False
    return name.startswith("check_") or any(
        part in name for part in ("_rbl_", "_rhsbl_", "_dnsbl_", "dnswl_")
    )


def items(tokens: list[str]) -> list[tuple[str, ...]]:
    """Group tokens into restrictions with their argument: ``("check_sasl_access", "hash:x")``."""
    grouped: list[tuple[str, ...]] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if takes_argument(token) and index + 1 < len(tokens):
            grouped.append((token, tokens[index + 1]))
            index += 2
        else:
            grouped.append((token,))
            index += 1
    return grouped


def render(grouped: list[tuple[str, ...]]) -> str:
    return ", ".join(" ".join(item) for item in grouped)


def move_before_permit(grouped: list[tuple[str, ...]], names: frozenset[str]) -> str:
    """The list with the items named in ``names`` (by restriction, or restriction and
    argument) moved ahead of its first authenticated permit."""

    def chosen(item: tuple[str, ...]) -> bool:
        return item[0] in names or " ".join(item) in names

    moving = [item for item in grouped if chosen(item)]
    rest = [item for item in grouped if not chosen(item)]
    anchor = next((i for i, item in enumerate(rest) if item[0] in AUTH_PERMITS), len(rest))
    return render(rest[:anchor] + moving + rest[anchor:])


def prepend(grouped: list[tuple[str, ...]], item: tuple[str, ...]) -> str:
    return render([item, *(old for old in grouped if old[0] != item[0])])


class Reach(NamedTuple):
    """Whether an authenticated client reaches a check, and in which list."""

    state: str  # "reachable", "shadowed" (only after a permit) or "absent"
    list_name: str | None


def reach(config: PostfixConfig, service: Service | None, names: frozenset[str]) -> Reach:
    lists = CHECK_LISTS if config.flag("smtpd_delay_reject", service) else CHECK_LISTS[2:]
    shadowed_in: str | None = None
    for list_name in lists:
        permitted = False
        for item in items(config.restrictions(list_name, service)):
            if item[0] in names:
                if not permitted:
                    return Reach("reachable", list_name)
                shadowed_in = shadowed_in or list_name
            elif item[0] in AUTH_PERMITS:
                permitted = True
    return Reach("shadowed", shadowed_in) if shadowed_in else Reach("absent", None)


def shadowed(
    config: PostfixConfig, service: Service | None, list_name: str, names: frozenset[str]
) -> list[tuple[str, ...]]:
    """Items of ``list_name`` named in ``names`` that sit after an authenticated permit."""
    found: list[tuple[str, ...]] = []
    permitted = False
    for item in items(config.restrictions(list_name, service)):
        if item[0] in AUTH_PERMITS:
            permitted = True
        elif permitted and item[0] in names:
            found.append(item)
    return found
