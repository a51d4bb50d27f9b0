"""Every file of the real-log corpus parses without errors, and its Postfix and Dovecot lines
become known events (except the listed shapes, each with its reason)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CORPUS

from postwatch.parse import Parser, program_family
from postwatch.parse.syslog import Framer
from postwatch.records import LogLine

MAX_UNPARSED = 0.01  # share of a file's Postfix/Dovecot lines that may stay unparsed

# Files that are not logs, or not whole log messages.
NOT_LOGS = {
    "INDEX.md": "the corpus index",
    "PROVENANCE.md": "provenance notes",
    "index.tsv": "metadata for the message-only files beside it",
    "mail.log.template": "the unrendered template of mail.log.rendered",
}
# Sub-patterns of postfix-grok-patterns, not whole messages: "0.2/0.02/0.04/3.3", "x[private/y]".
NOT_MESSAGES = ("postfix-grok-patterns/fragments/", "postfix-grok-patterns/messages/relay.msg")

# Postfix/Dovecot lines that may stay unparsed: (file, pattern on the message, reason).
# An empty file pattern matches every file.
IGNORABLE: tuple[tuple[str, str, str], ...] = (
    (
        "",
        r"(?:input attribute (?:name|value)|[\w/ ]+: wanted attribute|match_list_match"
        r"|smtp_stream_setup|vstream_buf_get_ready|vstream_fflush_some|virtual_dns_lookup): "
        r"|[<>] \S+\[\S*\](?::\d+)?: ",
        "verbose (-v, debug_peer_list) debug output: no event to report",
    ),
    ("", r"last message repeated \d+ times\Z", "syslogd's own repeat notice: no event"),
    (
        "dmlinarr-securepostfix/",
        r".* ///HIER///\Z",
        "a student's annotation appended to real lines (PROVENANCE caveat)",
    ),
    (
        "lhydra-postfix_parser/",
        r"success: ALL OKK\Z",
        "hand-edited line (PROVENANCE caveat)",
    ),
    ("mensetmanus-gomaillex/", r"[0-9A-F]+: removedo\Z", "a corrupted copy of 'removed'"),
    ("lograptor/rfc5424.log", r"\[exampleSDID@", "RFC 5424's example text under app 'postfix'"),
    (
        "postfix_exporter/sergeymakinen-testdata-mail.log",
        r"(?:foo|Unsupported|NOQUEUE: reject: Unsupported"
        r"|[0-9A-F]+: user@example\.com, relay=.*)\Z",
        "templated malformed lines written to test an exporter's error handling",
    ),
    (
        "msimerson-postfix-parser/",
        r"(?:[0-9A-Za-z]+: )?to=<56597@con\Z|(?:to|from)=<|message-id=<|uid=\d+ from=<"
        r"|sender non-delivery notification: ",
        "the author's test cut the line short or cut the queue ID off",
    ),
    ("postfix-grok-patterns/messages/mc_milter.msg", r".", "a third-party milter, not Postfix"),
)
_IGNORABLE = tuple((where, re.compile(pattern), reason) for where, pattern, reason in IGNORABLE)
_GROK_PATTERN = re.compile(r"\^?%\{POSTFIX_(\w+)\}")
_MESSAGE_TIME = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def corpus_files() -> list[Path]:
    if not (CORPUS / "INDEX.md").is_file():
        return []
    return sorted(
        path
        for path in CORPUS.rglob("*")
        if path.is_file()
        and path.name not in NOT_LOGS
        and not any(part in str(path.relative_to(CORPUS)) for part in NOT_MESSAGES)
    )


def grok_daemons(folder: Path) -> dict[str, str]:
    """message -> daemon, from the grok pattern each postfix-grok-patterns message tests."""
    daemons: dict[str, str] = {}
    index = folder / "index.tsv"
    if index.is_file():
        for row in index.read_text(encoding="utf-8").splitlines()[1:]:
            pattern, *_rest, message = row.split("\t")
            found = _GROK_PATTERN.match(pattern)
            if found:
                daemons[message] = found.group(1).lower().replace("_", "-")
    return daemons


def corpus_lines(path: Path) -> Iterator[LogLine]:
    """The lines of one corpus file, framed the way INDEX.md describes its kind."""
    rel = str(path.relative_to(CORPUS))
    text = path.read_text(encoding="utf-8", errors="replace")
    framer = Framer(tz=UTC, year=2026)
    if path.suffix == ".msg":
        daemons = grok_daemons(path.parent)
        default = f"postfix/{path.stem.replace('_', '-')}" if daemons else "postfix"
        for lineno, message in enumerate(text.splitlines(), 1):
            if not message.strip():
                continue
            framed = framer(message, lineno, rel)
            if program_family(framed.program) == "postfix":  # a whole syslog line
                yield framed
                continue
            daemon = daemons.get(message)
            program = f"postfix/{daemon}" if daemon else default
            if daemon == "script":
                program = "postfix/postfix-script"
            yield LogLine(_MESSAGE_TIME, "mx", program, 1234, message, rel, lineno)
    elif path.suffix == ".tsv":
        for lineno, row in enumerate(text.splitlines()[1:], 2):
            _url, daemon, message = row.split("\t")
            yield LogLine(_MESSAGE_TIME, "mx", f"postfix/{daemon}", 1234, message, rel, lineno)
    else:
        annotated = path.name.endswith(".annotated.txt")
        for lineno, raw in enumerate(text.splitlines(), 1):
            if raw.strip() and not (annotated and raw.startswith("#")):
                yield framer(raw, lineno, rel)


def ignorable(rel: str, message: str) -> str | None:
    for where, pattern, reason in _IGNORABLE:
        if rel.startswith(where) and pattern.match(message):
            return reason
    return None


FILES = corpus_files()
# Without the corpus the per-file test still runs once, so that it fails instead of skipping.
PARAMS = FILES or [CORPUS / "INDEX.md"]


def test_corpus_is_present(corpus):
    """The shared real-log corpus is where the tests expect it, with files to parse."""
    assert FILES, f"no log files under {corpus}"


@pytest.mark.parametrize("path", PARAMS, ids=[str(path.relative_to(CORPUS)) for path in PARAMS])
def test_corpus_file(path, corpus):
    """No line raises; at most 1% of Postfix/Dovecot lines stay unparsed beyond listed shapes."""
    rel = str(path.relative_to(corpus))
    parser = Parser()
    family_lines = 0
    unparsed: list[str] = []
    for line in corpus_lines(path):
        name = parser.pattern_name(line)
        event = parser(line)
        assert event.line[:4] == line[:4] and event.line.lineno == line.lineno
        if not program_family(line.program):
            continue  # other programs (sendmail, amavis, ...) and unframeable text
        family_lines += 1
        if name == "unparsed" and ignorable(rel, line.message) is None:
            unparsed.append(f"{line.lineno}: [{line.program}] {line.message[:160]}")
    if family_lines:
        share = len(unparsed) / family_lines
        assert share <= MAX_UNPARSED, (
            f"{len(unparsed)}/{family_lines} Postfix/Dovecot lines unparsed:\n"
            + "\n".join(unparsed[:20])
        )


def test_ignorable_shapes_are_used():
    """Every listed ignorable shape still matches some corpus line (no stale exceptions)."""
    used: set[str] = set()
    for path in FILES:
        rel = str(path.relative_to(CORPUS))
        for line in corpus_lines(path):
            if program_family(line.program):
                reason = ignorable(rel, line.message)
                if reason is not None:
                    used.add(reason)
    assert sorted({reason for _where, _pattern, reason in IGNORABLE} - used) == []
