"""The framer splits every supported log framing into time, host, program, pid and message."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from annotated import read_samples
from conftest import MAILLOGS
from test_corpus import CORPUS, FILES, corpus_lines

from postwatch.parse import syslog
from postwatch.parse.syslog import Framer, month_table
from postwatch.records import LogLine

SAMPLES = list(read_samples(MAILLOGS / "framing" / "framing.log", "frame"))


@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_annotated_framing(sample):
    """Each annotated line frames into exactly the fields its annotation lists."""
    line = Framer(tz=UTC, year=2026)(sample.text)
    for key, want in sample.expected.items():
        got = line.ts.isoformat() if key == "ts" else getattr(line, key)
        assert got == want, f"{sample.id}: {key}"


def test_year_rolls_over_at_new_year_and_back_for_a_late_line():
    """Dec -> Jan moves to the next year; a late Dec line after Jan belongs to the year before."""
    framer = Framer(tz=UTC, year=2025)
    stamps = ["Dec 31 23:59:59", "Jan  1 00:00:01", "Dec 31 23:59:58", "Jan  1 00:00:02"]
    years = [framer(f"{s} mx postfix/smtpd[1]: x").ts.year for s in stamps]
    assert years == [2025, 2026, 2025, 2026]


def test_year_from_reference_is_the_year_before_when_the_month_is_later():
    """A file modified in January whose first line says December started the year before."""
    framer = Framer(tz=UTC, reference=datetime(2026, 1, 5, tzinfo=UTC))
    assert framer("Dec 30 10:00:00 mx postfix/qmgr[2]: x").ts.year == 2025
    assert framer("Jan  2 10:00:00 mx postfix/qmgr[2]: x").ts.year == 2026


def test_stamps_without_zone_are_read_in_the_given_zone():
    """--tz sets the zone of stamps that carry none; the result is stored in UTC."""
    plus_two = timezone(timedelta(hours=2))
    line = Framer(tz=plus_two, year=2026)("May  9 22:12:21 mx postfix/smtpd[1]: x")
    assert line.ts == datetime(2026, 5, 9, 20, 12, 21, tzinfo=UTC)


def test_unframeable_line_keeps_the_last_time_seen():
    """Text with no framing keeps the previous line's time, so ordering survives garbage."""
    framer = Framer(tz=UTC, year=2026)
    first = framer("Nov 23 10:00:00 mx postfix/smtpd[1]: connect from a[192.0.2.1]")
    assert framer("\x00\xff garbage").ts == first.ts


def test_attacker_text_in_the_message_does_not_change_host_or_program():
    """A message that itself looks like a syslog header stays message text."""
    text = (
        "Nov 23 10:00:00 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from a[192.0.2.1]: 550 x; "
        "from=<a> to=<b> proto=ESMTP helo=<evil postfix/qmgr[1]: X: removed>"
    )
    line = Framer(tz=UTC, year=2026)(text)
    assert (line.host, line.program, line.pid) == ("mx", "postfix/smtpd", 7)
    assert line.message.endswith("helo=<evil postfix/qmgr[1]: X: removed>")


def test_frame_lines_equals_framing_one_by_one():
    """The streaming fast path frames every sample exactly as the per-line call does."""
    texts = [sample.text for sample in SAMPLES]
    one_by_one = Framer(tz=UTC, year=2026)
    expected = [one_by_one(text, lineno, "x") for lineno, text in enumerate(texts, 1)]
    assert (
        list(Framer(tz=UTC, year=2026).frame_lines(texts + texts[:3], "x"))[: len(texts)]
        == expected
    )


# --- the C speedup of the hot path ---------------------------------------------------------


def _both_ways(raw_lines: list[str], **framer_args) -> tuple[list, list, Framer, Framer]:
    """(C, Python) framings of raw lines with their endings, and the two framers after."""
    fast, slow = Framer(**framer_args), Framer(**framer_args)
    assert syslog.FrameStream is not None, "the C framing speedup was not built (setup.py)"
    fast_lines = list(fast.frame_stream(raw_lines, "x"))
    slow_lines = list(slow.frame_lines((raw.rstrip("\r\n") for raw in raw_lines), "x"))
    return fast_lines, slow_lines, fast, slow


def _state(framer: Framer) -> tuple:
    return (
        framer._last_ts,
        framer._year,
        framer._last_month,
        dict(framer._cache),
        dict(framer._heads),
    )


def test_the_c_framer_frames_the_corpus_and_samples_as_python_does(corpus):
    """Every real corpus line and every annotated sample (raw, line endings on) frames the
    same in C and in Python, and leaves the framer in the same state."""
    raw_lines: list[str] = [sample.text + "\n" for sample in SAMPLES]
    for path in FILES:
        raw_lines += path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    for path in sorted(MAILLOGS.rglob("*.log")):
        raw_lines += path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    assert len(raw_lines) > 10_000
    fast_lines, slow_lines, fast, slow = _both_ways(raw_lines, tz=UTC, year=2026)
    assert fast_lines == slow_lines
    assert all(type(line) is LogLine for line in fast_lines)
    assert _state(fast) == _state(slow)


def test_the_c_framer_agrees_on_edges_and_hostile_heads():
    """Line endings, short lines, a new year, a late line, leap and bad seconds, odd heads,
    heads past the cache limit, stamps in another zone: C and Python agree line by line."""
    stamps = ["Dec 31 23:59:59", "Jan  1 00:00:01", "Dec 31 23:59:58", "Jan  1 00:00:02"]
    raw_lines = [f"{stamp} mx postfix/smtpd[1]: x\n" for stamp in stamps]
    raw_lines += [
        "Jan  1 00:00:02 mx postfix/smtpd[1]: crlf\r\n",
        "Jan  1 00:00:02 mx postfix/smtpd[1]: bare cr\r",
        "Jan  1 00:00:02 mx postfix/smtpd[1]: endings \n\r\n\r\n",
        "Jan  1 00:00:02 mx postfix/smtpd[1]: no ending",
        "Jan  1 00:00:02.5 mx postfix/smtpd[1]: a fraction after a cached second\n",
        "Jan  1 00:00:02.5x mx postfix/smtpd[1]: not a fraction\n",
        "\n", "", "Jan  1 00:00:02\n", "Jan  1 00:00:02 \n", "Jan  1 00:00:02 m: \n",
        "Jan  1 00:00:60 mx postfix/smtpd[1]: a leap second\n",
        "Jan  1 00:00:61 mx postfix/smtpd[1]: no such second\n",
        "Jan  1 00:00:+5 mx postfix/smtpd[1]: a sign\n",
        "Jan  1 00:00:\u0665\u0665 mx postfix/smtpd[1]: arabic digits\n",
        "Jan  1 00:00:0 mx postfix/smtpd[1]: short\n",
        "Jan  1 00:00:03 mx postfix/smtpd[\u00b2]: superscript pid\n",
        "Jan  1 00:00:03 mx postfix/smtpd[12345678901]: long pid\n",
        "Jan  1 00:00:03 mx: postfix/smtpd[1]: host with a colon\n",
        "Jan  1 00:00:03 postfix/smtpd[1]: no host\n",
        "Jan  1 00:00:03 mx evil tag[1]: spaces\n",
        "Jan  1 00:00:03 mx postfix/smtpd[1]x: after the pid\n",
        "Jan  1 00:00:03 mx postfix/smtpd[1]:no space\n",
        *(f"Jan  1 00:00:03 mx {'t' * n}[1]: heads around the cached length\n" for n in range(190, 215)),
        "Jan  1 00:00:03 mx postfix/smtpd[1]: helo=<x Jan  1 00:00:04 evil postfix/qmgr[2]: y>\n",
        "Jun 14 12:01:53 lda(user)<723443><1Vw7NA>: Info: dovecot's own log\n",
        "2024-08-29T01:08:59.764590+00:00 mx postfix/smtpd[1938]: rfc 3339\n",
        "ott 13 00:40:47 mx postfix/cleanup[5810]: italian\n",
        "Jan  1 00:00:04 \u00e9\u00e8 \u4e2d\u6587[9]: \U0001f600 wide text\n",
        "\x00\udcff garbage\n",
    ]  # fmt: skip
    raw_lines += [
        f"Jan  1 00:{n // 60 % 60:02d}:{n % 60:02d} h{n} p[{n}]: m\n" for n in range(9000)
    ]
    for zone in (UTC, timezone(timedelta(hours=-5))):
        fast_lines, slow_lines, fast, slow = _both_ways(raw_lines, tz=zone, year=2025)
        for lineno, (got, want) in enumerate(zip(fast_lines, slow_lines, strict=True), 1):
            assert got == want, f"line {lineno}: {raw_lines[lineno - 1]!r}"
        assert _state(fast) == _state(slow)


def test_the_c_framer_passes_on_the_readers_error():
    """An error of the line source reaches the caller, with the lines before it framed."""

    def lines():
        yield "Nov 23 10:00:00 mx postfix/smtpd[1]: one\n"
        raise OSError("read error")

    stream = Framer(tz=UTC, year=2026).frame_stream(lines(), "x")
    assert next(stream).message == "one"
    with pytest.raises(OSError, match="read error"):
        next(stream)


# --- shapes tried only when the usual ones miss --------------------------------------------

ISSUES = "github-issues"  # user-posted lines (no licence): read from the corpus, never copied


def corpus_text(corpus, rel: str, lineno: int) -> str:
    """Line ``lineno`` of a corpus file, as the framer gets it."""
    return (corpus / rel).read_text(encoding="utf-8").splitlines()[lineno - 1]


def test_localized_month_from_a_journalctl_in_italian(corpus):
    """journalctl's "ott 13 00:40:47" (it_IT) is October 13th, framed like an English stamp."""
    text = corpus_text(corpus, f"{ISSUES}/openmandrivaassociation__distribution__issue195.log", 2)
    line = Framer(tz=UTC, year=2026)(text, 2, "x")
    assert line.ts == datetime(2026, 10, 13, 0, 40, 47, tzinfo=UTC)
    assert (line.host, line.program, line.pid) == ("localhost.localdomain", "postfix/cleanup", 5810)
    assert line.message == text.partition("postfix/cleanup[5810]: ")[2]
    assert line.message.startswith("warning: hash:/etc/postfix/virtual ")


@pytest.mark.parametrize(
    ("rel", "when", "program", "pid", "tag"),
    [
        # docker-compose v1: "name_1 | ", one space
        (
            "mailcow__mailcow-dockerized__issue2111.log",
            (12, 21, 22, 8, 36),
            "dovecot",
            None,
            "dovecot",
        ),
        # one space, and syslog's unpadded day ("Sep 2")
        (
            "docker-mailserver__docker-mailserver__issue302.log",
            (9, 2, 9, 24, 6),
            "dovecot",
            None,
            "dovecot",
        ),
        # docker compose v2: "name-1  | ", the name padded to the widest
        ("antespi__docker-imap-devel__issue5.log", (6, 16, 9, 34, 49), "dovecot", None, "dovecot"),
        (
            "mailcow__mailcow-dockerized__issue5898.log",
            (6, 7, 0, 11, 23),
            "postfix/postscreen",
            357,
            "postfix/postscreen[357]",
        ),
    ],
)
def test_compose_prefix_is_dropped_and_the_rest_framed(corpus, rel, when, program, pid, tag):
    """A `docker compose logs` line frames as the syslog line after its "name | " prefix."""
    text = corpus_text(corpus, f"{ISSUES}/{rel}", 1)
    line = Framer(tz=UTC, year=2026)(text, 1, "x")
    assert line.ts == datetime(2026, *when, tzinfo=UTC)
    assert (line.program, line.pid) == (program, pid)
    head, _, message = text.partition(f" {tag}: ")
    assert line.host == head.rpartition(" ")[2] and line.host
    assert line.message == message


def test_container_stamp_before_a_syslog_line_keeps_the_container_time(corpus):
    """`docker logs -t` output frames with the runtime's RFC 3339 stamp and syslog's host/tag."""
    text = corpus_text(corpus, f"{ISSUES}/mailu__mailu__issue1674.log", 1)
    line = Framer(tz=UTC, year=2026)(text, 1, "x")
    assert line.ts == datetime(2020, 11, 2, 13, 52, 2, 681188, tzinfo=UTC)
    assert (line.host, line.program, line.pid) == ("mail", "postfix/smtp", 236167)
    assert line.message == text.partition("postfix/smtp[236167]: ")[2]


def test_dovecot_1_prefix_before_the_stamp(corpus):
    """Dovecot 1.x's "dovecot: Mmm dd hh:mm:ss Level: ..." frames like its line without the prefix."""
    prefixed = corpus_text(corpus, "wazuh/dovecot.log", 17)
    bare = corpus_text(corpus, "wazuh/dovecot.log", 9)
    assert prefixed == "dovecot: " + bare
    framer = Framer(tz=UTC, year=2026)
    assert framer(prefixed)[:5] == framer(bare)[:5]
    assert framer(prefixed).ts == datetime(2026, 1, 7, 14, 46, 28, tzinfo=UTC)


def test_localized_year_rolls_over_like_english():
    """Localized stamps roll over like English ones ("dic 31" -> "gen 01"), in any mix of languages."""
    stamps = [
        "dic 31 23:59:59",
        "gen 01 00:00:01",
        "Dez 31 23:59:58",
        "Jan  1 00:00:02",
        "ene 02 10:00:00",
    ]
    texts = [f"{stamp} mx postfix/smtpd[1]: x" for stamp in stamps]
    one_by_one = Framer(tz=UTC, year=2025)
    assert [one_by_one(text).ts.year for text in texts] == [2025, 2026, 2025, 2026, 2026]
    streamed = list(Framer(tz=UTC, year=2025).frame_lines(texts))
    assert [line.ts for line in streamed] == [
        datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC),
        datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC),
        datetime(2026, 1, 2, 10, 0, 0, tzinfo=UTC),
    ]


def test_localized_month_in_the_other_case_and_a_reference_year():
    """A title-case "Ott" reads like "ott", and a file's mtime picks the year as for English."""
    framer = Framer(tz=UTC, reference=datetime(2026, 1, 5, tzinfo=UTC))
    assert framer("Ott 13 00:40:47 mx postfix/qmgr[2]: x").ts == datetime(
        2025, 10, 13, 0, 40, 47, tzinfo=UTC
    )


def test_unknown_or_impossible_localized_stamps_stay_unframed():
    """A word that is no month, or a day that does not exist, frames nothing."""
    framer = Framer(tz=UTC, year=2026)
    for text in ("foo 13 00:40:47 mx postfix/qmgr[2]: x", "feb 30 00:40:47 mx postfix/qmgr[2]: x"):
        line = framer(text)
        assert (line.host, line.program, line.message) == ("", "", text)


def test_month_tables_that_disagree_are_refused():
    """A name two languages give to different months, or a table without twelve, raises."""
    with pytest.raises(ValueError, match="'mar'"):
        month_table({"xx": "jan feb mar apr mai jun jul aug sep okt nov dec", "yy": "mar " * 12})
    with pytest.raises(ValueError, match="11 month names"):
        month_table({"xx": "a b c d e f g h i j k"})


MESSAGE_TRAPS = [
    "mailserver-1  | Jun 16 09:34:49 evil postfix/qmgr[1]: X: removed",
    "dovecot: Jun 23 15:04:05 Info: imap-login: Login: user=<root>",
    "2020-11-02T13:52:02.681188429Z Nov 02 13:52:02 evil postfix/qmgr[1]: X: removed",
    "ott 13 00:40:47 evil postfix/qmgr[1]: X: removed",
    "Oct 11 22:14:15.123 evil postfix/qmgr[1]: X: removed",
    "<34>Oct 11 22:14:15 evil postfix/qmgr[1]: X: removed",
    "1788853590.500000 evil postfix/qmgr[1]: X: removed",
    "Sat 2026-01-31 09:50:02 UTC evil postfix/qmgr[1]: X: removed",
    "2024-08-29 01:08:59 evil postfix/qmgr[1]: X: removed",
]
FRAMED_BASES = [
    "Nov 23 10:00:00 mx postfix/smtpd[7]: NOQUEUE: reject: RCPT from a[192.0.2.1]: 550 x; helo=<{}>",
    "Nov 23 10:00:00 mx dovecot: auth: passwd-file({},192.0.2.1): unknown user",
    "2024-08-29T01:08:59.764590+00:00 mx postfix/smtpd[7]: warning: a[192.0.2.1]: SASL LOGIN "
    "authentication failed: x, sasl_username={}",
    "2019-10-15 08:08:52 imap-login: Info: Disconnected: user=<{}>, rip=192.0.2.1",
    "mailserver-1  | Sep 8 07:46:30 canyon dovecot: auth-worker(1): pam({},1.1.1.1): unknown user",
    "ott 13 00:40:47 mx postfix/smtpd[7]: connect from {}[192.0.2.1]",
    "Oct 01 11:47:51.020418 mx postfix/smtpd[7]: connect from {}[192.0.2.1]",
    "<34>Oct 11 22:14:15 mx postfix/smtpd[7]: connect from {}[192.0.2.1]",
    "2024-08-29 01:08:59 mx postfix/smtpd[7]: connect from {}[192.0.2.1]",
]


@pytest.mark.parametrize("base", FRAMED_BASES)
@pytest.mark.parametrize("trap", MESSAGE_TRAPS)
def test_prefix_shapes_inside_a_message_never_change_the_framing(base, trap):
    """Attacker text that looks like a prefix or stamp, anywhere in a message, stays message text."""
    plain = Framer(tz=UTC, year=2026)(base.format("PLACE"))
    assert plain.program, "the base line itself must frame"
    text = base.format(trap)
    framed_alone = Framer(tz=UTC, year=2026)(text)
    framed_streamed = next(Framer(tz=UTC, year=2026).frame_lines([text]))
    for framed in (framed_alone, framed_streamed):
        assert framed[:4] == plain[:4]
        assert framed.message == plain.message.replace("PLACE", trap)


def test_a_fraction_after_a_second_already_seen_is_journalctls_short_precise():
    """``Nov 23 10:00:00.250000 mx ...`` shares its first 15 characters with a traditional
    stamp seen before; the fraction is read as such, not as the host (C, Python, one by one)."""
    raw = [
        "Nov 23 10:00:00 mx postfix/smtpd[7]: connect from a[192.0.2.1]\n",
        "Nov 23 10:00:00.250000 mx postfix/smtpd[7]: disconnect from a[192.0.2.1]\n",
        "Nov 23 10:00:00.5 mx: a host with a colon\n",
    ]
    streamed = list(Framer(tz=UTC, year=2026).frame_stream(raw))
    listed = list(Framer(tz=UTC, year=2026).frame_lines([text.rstrip("\n") for text in raw]))
    framer = Framer(tz=UTC, year=2026)
    alone = [framer(text.rstrip("\n")) for text in raw]
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    for lines in (streamed, listed, alone):
        assert [line[:4] for line in lines[:2]] == [
            (start, "mx", "postfix/smtpd", 7),
            (start + timedelta(milliseconds=250), "mx", "postfix/smtpd", 7),
        ]
        assert lines[1].message == "disconnect from a[192.0.2.1]"
        assert lines[2].ts == start + timedelta(milliseconds=500)
    for text in (
        "Nov 23 10:00:00.55",
        "Nov 23 10:00:00.5x mx p[1]: m",
        "Nov 23 10:00:00.1234567890 mx p[1]: m",
    ):
        assert Framer(tz=UTC, year=2026)(text)[1:5] == ("", "", None, text)  # unframed


def test_short_full_zone_names_other_than_utc_are_read_in_the_given_zone():
    """journalctl's short-full names the local zone by its abbreviation (CET, EST, IST: not
    unique): the stamp is read in the zone postwatch is given; UTC and GMT are UTC."""
    cet = timezone(timedelta(hours=1))
    line = "Sat 2026-01-31 10:50:02 CET mx postfix/qmgr[1]: X: removed"
    assert Framer(tz=cet)(line).ts == datetime(2026, 1, 31, 9, 50, 2, tzinfo=UTC)
    assert Framer(tz=cet)(line.replace("CET", "GMT")).ts == datetime(
        2026, 1, 31, 10, 50, 2, tzinfo=UTC
    )
    assert Framer(tz=cet)(line.replace("Sat", "Sam")).program == ""  # no such weekday
    assert Framer(tz=cet)(line.replace("01-31", "13-31")).program == ""  # no such month


def test_a_pri_is_dropped_once():
    """``<PRI>`` before a traditional line is dropped; a second one is not peeled off."""
    framer = Framer(tz=UTC, year=2026)
    assert framer("<13>Nov 23 10:00:00 mx postfix/smtpd[7]: x").program == "postfix/smtpd"
    for text in (
        "<13><13>Nov 23 10:00:00 mx postfix/smtpd[7]: x",
        "<13>" * 50_000 + "x",
        "<1234>Nov",
    ):
        assert framer(text).program == ""


def test_only_one_prefix_is_dropped_however_many_there_are():
    """Prefixes are not peeled recursively: a stack of them stays unframed, without recursion."""
    framer = Framer(tz=UTC, year=2026)
    inner = "Jun 16 09:34:49 mx postfix/smtpd[1]: x"
    assert framer("a | b | " + inner).program == ""
    stacked = "a | " * 100_000 + inner
    assert framer(stacked).message == stacked
    assert framer("dovecot: a | " + inner).program == ""


def test_a_tag_with_a_space_is_not_a_program():
    """A tag with a space ("some thing[12]:") is no syslog tag: no program, the text is kept."""
    text = "Nov 23 10:00:00 mx some thing[12]: msg"
    for line in (
        Framer(tz=UTC, year=2026)(text),
        next(Framer(tz=UTC, year=2026).frame_lines([text])),
    ):
        assert (line.host, line.program, line.pid, line.message) == (
            "mx",
            "",
            None,
            "some thing[12]: msg",
        )


# Corpus lines that stay unframed: no time to read, or not a log record.  (file, pattern, reason)
UNFRAMED: tuple[tuple[str, str, str], ...] = (
    (
        "",
        r"(?:\S+ )?(?:postfix(?:-[\w-]+)?/[\w/-]+|[\w-]+-login|pam_unix\(dovecot:auth\))"
        r"(?:\[\d+\])?: ",
        "tag-only text (copied from alert mails, issues or docs): no stamp, so no time",
    ),
    (
        "postfix_exporter/sergeymakinen-",
        r"",
        "templated malformed lines (an exporter's error tests)",
    ),
    ("fail2ban/", r"\d{4}-\d\d-\d\dT[\d:.]+[a-z]", "hand-edited stamp (PROVENANCE caveat)"),
    ("fail2ban/", r"@[0-9a-f]{40}(?: |\Z)", "40 hex digits: not a tai64n label (24)"),
    (
        "fail2ban/",
        r"@[0-9a-f]{24}\Z|  \S",
        "a multilog label alone, its text wrapped onto the next line",
    ),
    (f"{ISSUES}/", r"-- Logs begin at .* --\Z", "journalctl's header: not a record"),
    (
        f"{ISSUES}/",
        r"mail\.info: \w{3} [ \d]\d [\d:]{8} opendkim\[",
        "opendkim's facility-prefixed stderr",
    ),
)
_UNFRAMED = [(where, re.compile(pattern), reason) for where, pattern, reason in UNFRAMED]


def unframed_corpus_lines() -> list[tuple[str, LogLine]]:
    """(file, line) for every corpus line the framer leaves without host and program."""
    found = []
    for path in FILES:
        rel = str(path.relative_to(CORPUS))
        found += [(rel, line) for line in corpus_lines(path) if not (line.host or line.program)]
    return found


def test_every_unframed_corpus_line_has_a_listed_reason(corpus):
    """Each corpus line left unframed matches a listed shape, and each shape is still needed."""
    used: set[str] = set()
    unexplained = []
    for rel, line in unframed_corpus_lines():
        reasons = [
            r
            for where, pattern, r in _UNFRAMED
            if rel.startswith(where) and pattern.match(line.message)
        ]
        used.update(reasons[:1])
        if not reasons:
            unexplained.append(f"{rel}:{line.lineno}: {line.message[:120]}")
    assert unexplained == []
    assert sorted({reason for _where, _pattern, reason in UNFRAMED} - used) == []
