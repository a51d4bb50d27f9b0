"""The framer: one raw log line -> :class:`~postwatch.records.LogLine`.

Recognised framings (the first that fits wins)::

    May  9 22:12:21 mx postfix/submission/smtpd[1885206]: msg   traditional syslog
    May 09 22:12:21 mx postfix/smtpd[123]: msg                  Postfix maillog_file
    2024-08-29T01:08:59.764590+00:00 mx postfix/smtpd[1938]: m  RFC 3339 (rsyslog, journal)
    <34>1 2003-10-11T22:14:15.003Z mx postfix 123 - - msg       RFC 5424
    Oct 01 11:47:51.020418 mx postfix/smtpd[7]: msg             journalctl -o short-precise
    Sat 2026-01-31 09:50:02 UTC mx postfix/qmgr[1]: msg         journalctl -o short-full
    1788853590.500000 mx dovecot: msg                           journalctl -o short-unix
    <34>Oct 11 22:14:15 mx postfix/smtpd[7]: msg                RFC 3164 with its PRI
    2024-08-29 01:08:59 mx postfix/smtpd[7]: msg                a "%Y-%m-%d %H:%M:%S" template
    Jun 14 12:01:53 lda(user)<723443><1Vw7NA>: Info: msg        Dovecot log_path (no host)
    2019-10-15 08:08:52 imap-login: Info: msg                   Dovecot log_timestamp (no host)
    @400000004c91b044077a9e94 imap-login: Info: msg             daemontools tai64n (no host)
    ott 13 00:40:47 mx postfix/cleanup[5810]: msg                journalctl in another locale
    dovecot: Jun 23 15:04:05 Info: imap-login: msg              Dovecot 1.x log_path (no host)
    mail-1  | Jun 16 09:34:49 mx dovecot: auth: msg             docker compose logs prefix
    2020-11-02T13:52:02.681188429Z Nov 02 13:52:02 mx postfix/smtp[9]: m  container log stamp

All but the first two are tried only for lines the traditional stamp leaves unframed, and
only at the start of the line (syslog, Dovecot or the container runtime writes it; the
message after the tag is attacker text and is never searched for a framing).  A prefix is
dropped only when what follows frames with a time; otherwise the whole text stays unframed.

Lines without a host are Dovecot's own log files: they get ``program="dovecot"`` and keep the
whole ``process: Level: text`` as the message, so the parser sees what Dovecot writes through
syslog (``dovecot: imap-login: Login: ...``) plus the level.

Traditional stamps carry no year.  The framer starts from ``year``, or from ``reference``
(a file's mtime): its year, or the year before when the first line's month is later than the
reference's.  Inside a stream a month jump back of more than six months (Dec -> Jan) moves to
the next year and a jump forward of more than six months (Jan -> Dec, a late line) to the
previous one.  Stamps without a zone are read in ``tz`` (``None``: the local zone).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, tzinfo

from postwatch.records import LogLine

try:  # the hot path of frame_stream in C, when the build made it (setup.py)
    from postwatch.parse._framing import FrameStream
except ImportError:  # pragma: no cover - a build without a C compiler
    FrameStream = None

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# Month abbreviations that journalctl's short output writes in other locales (its stamp is
# strftime's "%b %d %H:%M:%S"): glibc 2.36 localedata, LC_TIME "abmon" (and "ab_alt_mon" where
# it differs).  Each name is also read in lower and in title case ("ott", "Ott"), so that a
# table that differs only in case still reads.
LOCALIZED_MONTHS: dict[str, str] = {
    "it": "gen feb mar apr mag giu lug ago set ott nov dic",
    "de": "Jan Feb Mär Apr Mai Jun Jul Aug Sep Okt Nov Dez",
    "fr": "janv. févr. mars avril mai juin juil. août sept. oct. nov. déc.",
    "es": "ene feb mar abr may jun jul ago sep oct nov dic",
    "pt": "jan fev mar abr mai jun jul ago set out nov dez",
    "nl": "jan feb mrt apr mei jun jul aug sep okt nov dec",
    "pl": "sty lut mar kwi maj cze lip sie wrz paź lis gru",
    "ru": "янв фев мар апр мая июн июл авг сен окт ноя дек",
    "ru-alt": "янв фев мар апр май июн июл авг сен окт ноя дек",
}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TAI64_BASE = 2**62
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\Z")
_ISO_PLAIN = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:[.,]\d+)? ")
# after _ISO_PLAIN: "host tag[pid]: " (a syslog template), not Dovecot's "imap-login: Info: "
_SYSLOG_HEAD = re.compile(r"[^\s:()<>\[\]]+ [^\s:()<>\[\]]+(?:\[[0-9]{1,10}\])?: ")
_UNIX_STAMP = re.compile(r"([0-9]{9,11})\.([0-9]{6}) ")  # seconds since 1970, microseconds
_FULL_STAMP = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) ([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}) "
    r"([A-Za-z][A-Za-z0-9+-]{0,9}) "
)
_UTC_NAMES = frozenset({"UTC", "GMT", "UCT", "Z"})
_PRI = re.compile(r"<[0-9]{1,3}>")
_CACHE_LIMIT = 4096
_new_line = tuple.__new__
_HEAD_END = 16 + 200  # longer heads are not cached: framed by __call__
_UNSPLIT = ("", "", None, False)  # a head the fast path leaves to __call__
_SECONDS = [timedelta(seconds=second) for second in range(61)]  # 60: a leap second
_ENGLISH = tuple(MONTHS)
# "ott 13 00:40:47 " (journalctl pads the day with a zero, syslog with a space)
_LOCALIZED_STAMP = re.compile(r"([^\W\d_]{3,5}\.?) {1,2}([0-9]{1,2}) ([0-9]{2}:[0-9]{2}:[0-9]{2}) ")
# "name  | ": docker compose logs writes the container or service name, padded, then "| "
_COMPOSE_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127} +\| ")
# "Nov 02 13:52:02 " after the stamp `docker logs -t` or `kubectl logs --timestamps` writes
_INNER_STAMP = re.compile(r"[A-Z][a-z]{2} [ 0-9][0-9] [0-9]{2}:[0-9]{2}:[0-9]{2} ")
_DOVECOT_PREFIX = "dovecot: "  # Dovecot 1.x writes its log prefix before the stamp


def month_table(tables: dict[str, str]) -> dict[str, int]:
    """Abbreviation -> month number over all ``tables`` (twelve names each, space-separated);
    a name two languages read as different months raises ValueError (English included, so
    none can shadow it)."""
    numbers = dict(MONTHS)
    for language, table in tables.items():
        names = table.split()
        if len(names) != 12:
            raise ValueError(f"{language}: {len(names)} month names, not 12")
        for number, name in enumerate(names, 1):
            for form in (name, name.lower(), name[:1].upper() + name[1:].lower()):
                if numbers.setdefault(form, number) != number:
                    raise ValueError(f"{language}: {form!r} is month {numbers[form]} elsewhere")
    return numbers


_LOCALIZED = month_table(LOCALIZED_MONTHS)


def _split_head(head: str) -> tuple[str, str, int | None, bool]:
    """``host tag[pid]`` or ``host tag`` -> ``(host, program, pid, True)``, as ``__call__`` does.

    ``head`` is what comes between a traditional stamp and the first ``": "``; the last item
    is False when framing needs more than the head (no host, a tag with odd brackets or
    spaces): ``__call__`` then frames the line.
    """
    host, space, tag = head.partition(" ")
    if not host or not space or host[-1:] == ":":
        return _UNSPLIT
    if tag[-1:] == "]":
        program, _, pid_text = tag[:-1].partition("[")
        if _is_pid(pid_text) and " " not in program:
            return host, program, int(pid_text), True
        return _UNSPLIT
    if " " in tag:
        return _UNSPLIT
    return host, tag, None, True


def _is_pid(text: str) -> bool:
    """ASCII digits of a plausible length (``str.isdigit`` also accepts ``²``)."""
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()


class Framer:
    """Split raw lines into LogLines; one Framer per input stream (it tracks the year)."""

    def __init__(
        self, tz: tzinfo | None = None, year: int | None = None, reference: datetime | None = None
    ) -> None:
        self.tz = tz
        self._year = year
        self._reference = reference
        self._last_month = 0
        self.first_year: tuple[int, int] | None = None  # (month, year) of the first stamp
        self._last_ts = EPOCH
        self._cache: dict[str, datetime] = {}
        self._minutes: dict[str, datetime] = {}
        self._heads: dict[str, tuple[str, str, int | None, bool]] = {}

    # --- time ------------------------------------------------------------------------

    def _localize(self, naive: datetime) -> datetime:
        if self.tz is None:
            return naive.astimezone(UTC)  # naive means local time, DST-aware
        return naive.replace(tzinfo=self.tz).astimezone(UTC)

    def _year_for(self, month: int) -> int:
        year = self.year_of(month)
        if self._year is not None and year != self._year:
            self._cache.clear()
            self._minutes.clear()
        elif self.first_year is None:
            self.first_year = (month, year)
        self._year, self._last_month = year, month
        return year

    def year_of(self, month: int) -> int:
        """The year the next yearless stamp of ``month`` takes (the state stays as it is)."""
        year, last = self._year, self._last_month
        if year is None:
            ref = self._reference or datetime.now(UTC)
            return ref.year - 1 if month > ref.month else ref.year
        if month == last or not last:
            return year
        if month - last > 6:
            return year - 1
        if last - month > 6:
            return year + 1
        return year

    def _traditional(self, stamp: str, month: int) -> datetime | None:
        """``Mmm dd hh:mm:ss`` -> UTC; the start of each minute is localized once."""
        year = self._year_for(month) if month != self._last_month else self._year
        cached = self._cache.get(stamp)
        if cached is not None:
            return cached
        minute_start = self._minutes.get(stamp[:12])
        try:
            second = int(stamp[13:15])
            if minute_start is None:
                day, hour, minute = int(stamp[4:6]), int(stamp[7:9]), int(stamp[10:12])
                minute_start = self._localize(datetime(year or 1970, month, day, hour, minute))
                if len(self._minutes) >= _CACHE_LIMIT:
                    self._minutes.clear()
                self._minutes[stamp[:12]] = minute_start
            when = minute_start + _SECONDS[second]
        except (ValueError, IndexError):
            return None
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[stamp] = when
        return when

    def _aware(self, text: str) -> datetime | None:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            return None
        if when.tzinfo is None:
            return self._localize(when)
        return when.astimezone(UTC)

    # --- framing -----------------------------------------------------------------------

    def __call__(self, text: str, lineno: int = 0, origin: str = "") -> LogLine:
        ts = None
        if text[15:16] == " ":  # not "Nov 23 10:00:00.123456": that second is cached too
            stamp = text[:15]
            ts = self._cache.get(stamp)
            if ts is None:
                month = MONTHS.get(text[:3])
                if month is not None:
                    ts = self._traditional(stamp, month)
        if ts is not None:
            # hot path: "host tag[pid]: message", built without the NamedTuple's __new__
            self._last_ts = ts
            host, _, tagged = text[16:].partition(" ")
            tag, sep, message = tagged.partition(": ")
            if sep and tag[-1:] == "]" and host[-1:] != ":":
                program, _, pid_text = tag[:-1].partition("[")
                if _is_pid(pid_text) and " " not in program:
                    return _new_line(
                        LogLine, (ts, host, program, int(pid_text), message, origin, lineno)
                    )
            return self._tagged(ts, text[16:], lineno, origin)
        framed = self._uncommon(text, lineno, origin)
        if framed is None:
            framed = self._prefixed(text, lineno, origin)
            if framed is None:
                return LogLine(self._last_ts, "", "", None, text, origin, lineno)
        return framed

    def _uncommon(self, text: str, lineno: int, origin: str) -> LogLine | None:
        """The shapes other than ``Mmm dd hh:mm:ss host ...``; None when none fits."""
        first = text[:1]
        if text[3:4] == " " and text[5:6] == " " and text[4:5].isdigit():  # "Sep 8 07:46:30"
            month = MONTHS.get(text[:3])
            ts = self._traditional(f"{text[:4]} {text[4:14]}", month) if month else None
            if ts is not None:
                return self._tagged(ts, text[15:], lineno, origin)
        if text[15:16] == "." and text[:3] in MONTHS:  # journalctl -o short-precise
            return self._precise(text, lineno, origin)
        if first.isdigit():
            space = text.find(" ")
            if space > 0 and _RFC3339.match(text[:space]):
                ts = self._aware(text[:space])
                if ts is not None:
                    rest = text[space + 1 :]
                    if _INNER_STAMP.match(rest) and rest[:3] in MONTHS:
                        rest = rest[16:]  # a container runtime's stamp before syslog's own
                    return self._tagged(ts, rest, lineno, origin)
            plain = _ISO_PLAIN.match(text)
            if plain:
                ts = self._aware(plain.group(1))
                if ts is not None:
                    rest = text[plain.end() :]
                    if _SYSLOG_HEAD.match(rest):  # a syslog template's date, then host and tag
                        return self._tagged(ts, rest, lineno, origin)
                    return self._hostless(ts, rest, lineno, origin)
            unix = _UNIX_STAMP.match(text)
            if unix:  # journalctl -o short-unix
                seconds, micros = int(unix.group(1)), int(unix.group(2))
                ts = EPOCH + timedelta(seconds=seconds, microseconds=micros)
                return self._tagged(ts, text[unix.end() :], lineno, origin)
        elif first == "<":
            framed = self._rfc5424(text, lineno, origin)
            pri = _PRI.match(text) if framed is None else None
            if pri and text[pri.end() : pri.end() + 1] != "<":  # RFC 3164 as sent: <PRI>Mmm dd
                return self._unprefixed(text[pri.end() :], lineno, origin)
            return framed
        elif first == "@" and text[25:26] == " ":
            ts = self._tai64n(text[1:25])
            if ts is not None:
                return self._hostless(ts, text[26:], lineno, origin)
        elif (full := _FULL_STAMP.match(text)) is not None:  # journalctl -o short-full
            stamp, zone = full.groups()
            ts = self._aware(stamp + "+00:00" if zone in _UTC_NAMES else stamp)
            if ts is not None:
                return self._tagged(ts, text[full.end() :], lineno, origin)
        else:
            localized = _LOCALIZED_STAMP.match(text)
            month = _LOCALIZED.get(localized.group(1)) if localized else None
            if localized and month:
                day, clock = int(localized.group(2)), localized.group(3)
                ts = self._traditional(f"{_ENGLISH[month - 1]} {day:2d} {clock}", month)
                if ts is not None:
                    return self._tagged(ts, text[localized.end() :], lineno, origin)
        return None

    def _precise(self, text: str, lineno: int, origin: str) -> LogLine | None:
        """``Mmm dd hh:mm:ss.ffffff host tag[pid]: msg``: a traditional stamp with a fraction."""
        space = text.find(" ", 16)
        fraction = text[16:space]
        if (
            space < 0
            or not 0 < len(fraction) <= 9
            or not (fraction.isascii() and fraction.isdigit())
        ):
            return None
        ts = self._traditional(text[:15], MONTHS[text[:3]])
        if ts is None:
            return None
        ts += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
        return self._tagged(ts, text[space + 1 :], lineno, origin)

    def _prefixed(self, text: str, lineno: int, origin: str) -> LogLine | None:
        """A line behind a prefix that another writer put first; None unless the rest frames.

        Only one prefix is dropped, and only at the start of the line.
        """
        if text.startswith(_DOVECOT_PREFIX):
            framed = self._unprefixed(text[len(_DOVECOT_PREFIX) :], lineno, origin)
            if framed is not None and framed.program == "dovecot" and not framed.host:
                return framed
            return None
        compose = _COMPOSE_PREFIX.match(text)
        if compose is not None:
            return self._unprefixed(text[compose.end() :], lineno, origin)
        return None

    def _unprefixed(self, text: str, lineno: int, origin: str) -> LogLine | None:
        """What follows a prefix: any shape but another prefix; None when none fits."""
        month = MONTHS.get(text[:3]) if text[15:16] == " " else None
        ts = self._traditional(text[:15], month) if month else None
        if ts is not None:
            return self._tagged(ts, text[16:], lineno, origin)
        return self._uncommon(text, lineno, origin)

    def frame_lines(
        self, texts: Iterable[str], origin: str = "", first_lineno: int = 1
    ) -> Iterator[LogLine]:
        """Frame a stream of lines (numbered from ``first_lineno``): ``__call__`` with the
        hot path inlined.

        Traditional lines take two caches: the stamp (per second) and the text between the
        stamp and the first ``": "`` (``host tag[pid]``, per process), which
        :meth:`_split_head` splits once.  Anything else goes through ``__call__``.
        """
        cache_get = self._cache.get
        heads = self._heads
        head_get = heads.get
        new_line = _new_line
        months = MONTHS
        frame = self.__call__
        for lineno, text in enumerate(texts, first_lineno):
            ts = None
            if text[15:16] == " ":
                stamp = text[:15]
                ts = cache_get(stamp)
                if ts is None:
                    month = months.get(text[:3])
                    if month is not None:
                        ts = self._traditional(stamp, month)
            if ts is not None:
                colon = text.find(": ", 16)
                if 0 < colon <= _HEAD_END:
                    head_text = text[16:colon]
                    head = head_get(head_text)
                    if head is None:
                        head = _split_head(head_text)
                        if len(heads) >= _CACHE_LIMIT:
                            heads.clear()
                        heads[head_text] = head
                    if head[3]:
                        self._last_ts = ts
                        yield new_line(
                            LogLine,
                            (ts, head[0], head[1], head[2], text[colon + 2 :], origin, lineno),
                        )
                        continue
            yield frame(text, lineno, origin)

    def frame_stream(
        self, raw_lines: Iterable[str], origin: str = "", first_lineno: int = 1
    ) -> Iterator[LogLine]:
        """:meth:`frame_lines` over the lines of a text file, line endings still on.

        With the C speedup (``postwatch.parse._framing``) the hot path runs there, over this
        framer's caches and methods: the same LogLines in well under half the time.
        """
        if FrameStream is None:
            return self.frame_lines(
                (line.rstrip("\r\n") for line in raw_lines), origin, first_lineno
            )
        return FrameStream(
            raw_lines, origin, self, self._cache, self._minutes, _SECONDS, self._heads,
            self._traditional, _split_head, MONTHS, LogLine, _CACHE_LIMIT, _HEAD_END, first_lineno,
        )  # fmt: skip

    def _tagged(self, ts: datetime, rest: str, lineno: int, origin: str) -> LogLine:
        """``host tag[pid]: message`` or, without a host, ``tag: message``."""
        self._last_ts = ts
        space = rest.find(" ")
        if space < 0:
            return LogLine(ts, "", "", None, rest, origin, lineno)
        if rest[space - 1] == ":":  # no host: a bare tag, or Dovecot's own log file
            tag = rest[: space - 1]
            if tag.endswith("]") or tag.startswith("postfix"):
                return self._tagged(ts, "- " + rest, lineno, origin)._replace(host="")
            return self._hostless(ts, rest, lineno, origin)
        host = rest[:space]
        tagged = rest[space + 1 :]
        colon = tagged.find(": ")
        if colon < 0:
            if tagged.endswith(":"):
                colon = len(tagged) - 1
            else:
                return LogLine(ts, host, "", None, tagged, origin, lineno)
        tag = tagged[:colon]
        message = tagged[colon + 2 :]
        if tag.endswith("]"):
            bracket = tag.rfind("[")
            pid_text = tag[bracket + 1 : -1]
            if bracket > 0 and _is_pid(pid_text) and " " not in tag:
                return LogLine(ts, host, tag[:bracket], int(pid_text), message, origin, lineno)
        if " " in tag:  # not a tag at all
            return LogLine(ts, host, "", None, tagged, origin, lineno)
        return LogLine(ts, host, tag, None, message, origin, lineno)

    def _hostless(self, ts: datetime, rest: str, lineno: int, origin: str) -> LogLine:
        self._last_ts = ts
        return LogLine(ts, "", "dovecot", None, rest, origin, lineno)

    def _rfc5424(self, text: str, lineno: int, origin: str) -> LogLine | None:
        """``<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD|-] MSG``."""
        close = text.find(">")
        if close < 0 or text[close + 1 : close + 3] != "1 ":
            return None
        parts = text[close + 3 :].split(" ", 5)
        if len(parts) < 6:
            return None
        stamp, host, app, procid, _msgid, rest = parts
        ts = self._aware(stamp) if _RFC3339.match(stamp) else None
        if ts is None:
            return None
        if rest.startswith("- "):
            message = rest[2:]
        elif rest.startswith("["):
            end = rest.find("] ")
            message = rest[end + 2 :] if end >= 0 else ""
        else:
            message = rest
        if message.startswith("\ufeff"):
            message = message[1:]
        self._last_ts = ts
        pid = int(procid) if _is_pid(procid) else None
        return LogLine(
            ts, "" if host == "-" else host, "" if app == "-" else app, pid, message, origin, lineno
        )

    def _tai64n(self, label: str) -> datetime | None:
        try:
            seconds = int(label[:16], 16) - _TAI64_BASE - 10
            nanos = int(label[16:24], 16)
        except ValueError:
            return None
        return EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
