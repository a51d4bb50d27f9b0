"""Postfix parameter expansion and list splitting, as ``postconf -x`` and smtpd do them.

Supported forms (postconf(5), "Parameter expansion"):

- ``$name``, ``${name}``, ``$(name)`` and ``$$`` for a literal dollar;
- ``${name?value}`` / ``${name?{value}}``: value when ``$name`` is non-empty;
- ``${name:value}`` / ``${name:{value}}``: value when ``$name`` is empty;
- ``${{text1} == {text2} ? {then} : {else}}`` with ``==``, ``!=`` and the
  compatibility-level comparisons ``<level``, ``<=level``, ``>level``, ``>=level``
  used by the Postfix 3.6+ defaults (``mynetworks_style``, ``smtpd_relay_restrictions``).

Undefined parameters expand to nothing, as in Postfix.  Expansion stops at a fixed depth,
so a parameter that refers to itself cannot loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[A-Za-z0-9_]+")
_OPERATOR = re.compile(r"\s*(==|!=|<=level|>=level|<level|>level)\s*")
_MAX_DEPTH = 30
_LIST_SEPARATORS = " \t\r\n,"


def expand(value: str, lookup: Lookup, depth: int = 0) -> str:
    """``value`` with every ``$`` reference replaced, recursively."""
    if depth > _MAX_DEPTH or "$" not in value:
        return value
    out: list[str] = []
    pos = 0
    while pos < len(value):
        dollar = value.find("$", pos)
        if dollar < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:dollar])
        nxt = value[dollar + 1 : dollar + 2]
        if nxt == "$":
            out.append("$")
            pos = dollar + 2
        elif nxt in ("{", "("):
            end = matching_close(value, dollar + 1)
            if end < 0:  # unbalanced: Postfix rejects it; keep the text as written
                out.append(value[dollar:])
                break
            out.append(_expand_braced(value[dollar + 2 : end], lookup, depth))
            pos = end + 1
        else:
            match = _NAME.match(value, dollar + 1)
            if match is None:
                out.append("$")
                pos = dollar + 1
            else:
                out.append(_parameter(match.group(), lookup, depth))
                pos = match.end()
    return "".join(out)


def matching_close(text: str, open_at: int) -> int:
    """Index of the bracket closing the one at ``open_at``, or -1."""
    opening = text[open_at]
    closing = "}" if opening == "{" else ")"
    level = 0
    for index in range(open_at, len(text)):
        char = text[index]
        if char == opening:
            level += 1
        elif char == closing:
            level -= 1
            if level == 0:
                return index
    return -1


def split_list(value: str) -> list[str]:
    """Split a Postfix list at commas and whitespace, keeping ``{ ... }`` groups whole."""
    items: list[str] = []
    current: list[str] = []
    level = 0
    for char in value:
        if char == "{":
            level += 1
        elif char == "}" and level:
            level -= 1
        if char in _LIST_SEPARATORS and level == 0:
            if current:
                items.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        items.append("".join(current))
    return items


def unbrace(text: str) -> str:
    """``text`` without one pair of enclosing braces and the space inside them."""
    stripped = text.strip()
    if stripped.startswith("{") and matching_close(stripped, 0) == len(stripped) - 1:
        return stripped[1:-1].strip()
    return stripped


def compatibility_level(text: str) -> tuple[int, ...]:
    """``"3.6"`` -> ``(3, 6, 0)``; anything unparsable counts as level 0."""
    parts = text.strip().split(".")
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        numbers = [0]
    return tuple([*numbers, 0, 0, 0][:3])


def _parameter(name: str, lookup: Lookup, depth: int) -> str:
    raw = lookup(name)
    return "" if raw is None else expand(raw, lookup, depth + 1)


def _expand_braced(inner: str, lookup: Lookup, depth: int) -> str:
    if inner.lstrip().startswith("{"):
        return _conditional(inner.strip(), lookup, depth)
    match = _NAME.match(inner)
    if match is None:
        return ""
    current = _parameter(match.group(), lookup, depth)
    rest = inner[match.end() :]
    if not rest:
        return current
    operator, body = rest[0], rest[1:].strip()
    if operator == ":":
        return current or expand(unbrace(body), lookup, depth + 1)
    if operator != "?":
        return current
    # ${name?value}, ${name?{value}} and the 3.0 form ${name?{value}:{otherwise}}
    then, otherwise = unbrace(body), ""
    if body.startswith("{"):
        end = matching_close(body, 0)
        tail = body[end + 1 :].strip() if end >= 0 else ""
        if tail.startswith(":"):
            then, otherwise = body[1:end].strip(), unbrace(tail[1:])
    return expand(then if current else otherwise, lookup, depth + 1)


def _conditional(text: str, lookup: Lookup, depth: int) -> str:
    """Evaluate ``{a} OP {b} ? {then} : {else}``; malformed text expands to nothing."""
    groups: list[str] = []
    operator = ""
    pos = 0
    while pos < len(text) and len(groups) < 4:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        if text[pos] == "{":
            end = matching_close(text, pos)
            if end < 0:
                return ""
            groups.append(text[pos + 1 : end].strip())
            pos = end + 1
            continue
        if len(groups) == 1 and not operator:
            match = _OPERATOR.match(text, pos)
            if match is None:
                return ""
            operator = match.group(1)
            pos = match.end()
            continue
        if text[pos] in "?:":
            pos += 1
            continue
        return ""
    if len(groups) < 3 or not operator:
        return ""
    left = expand(groups[0], lookup, depth + 1)
    right = expand(groups[1], lookup, depth + 1)
    if operator in ("==", "!="):
        truth = (left == right) == (operator == "==")
    else:
        a, b = compatibility_level(left), compatibility_level(right)
        truth = {
            "<level": a < b,
            "<=level": a <= b,
            ">level": a > b,
            ">=level": a >= b,
        }[operator]
    chosen = groups[2] if truth else (groups[3] if len(groups) > 3 else "")
    return expand(chosen, lookup, depth + 1)
