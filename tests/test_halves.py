"""A replay without detection in two halves prints what a replay in one process prints,
wherever the seam falls, and it adds the halves up (no second pass) where it can."""

from __future__ import annotations

import gzip
import json
import logging
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import MAILLOGS

from postwatch import halves
from postwatch.clock import SystemClock
from postwatch.pipeline import Pipeline
from postwatch.sources.files import ReadStats, read_batches

# Message stories, each of lines a real Postfix or Dovecot writes (shapes from
# fixtures/maillogs/samples and the correlator's tests), with the queue IDs, pids, users and
# addresses left open, and each line's time in seconds after the story starts.
SUBMISSION_DEFERRED = """\
0 {host} postfix/submission/smtpd[{pid}]: connect from unknown[{ip}]
1 {host} postfix/submission/smtpd[{pid}]: {q1}: client=unknown[{ip}], sasl_method=LOGIN, sasl_username={user}
1 {host} postfix/cleanup[{pid2}]: {q1}: message-id=<{q1}@example.com>
2 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=900, nrcpt=2 (queue active)
3 {host} postfix/submission/smtpd[{pid}]: disconnect from unknown[{ip}] ehlo=1 auth=1 mail=1 rcpt=2 data=1 quit=1 commands=7
4 {host} postfix/smtp[{pid3}]: {q1}: to=<a@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=2, delays=0.1/0/1/0.9, dsn=4.7.0, status=deferred (host mx.example.net[198.51.100.1] said: 421 4.7.0 Try again later (in reply to end of DATA command))
4 {host} postfix/smtp[{pid3}]: {q1}: to=<b@example.org>, relay=mx.example.org[198.51.100.2]:25, delay=2, delays=0.1/0/1/0.9, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4B7Q9X2Z1)
1900 {host} postfix/smtp[{pid3}]: {q1}: to=<a@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1900, delays=1899/0/1/0.9, dsn=4.7.0, status=deferred (host mx.example.net[198.51.100.1] said: 421 4.7.0 Try again later (in reply to end of DATA command))
5400 {host} postfix/smtp[{pid3}]: {q1}: to=<a@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=5400, delays=5399/0/1/0.9, dsn=5.7.1, status=bounced (host mx.example.net[198.51.100.1] said: 550 5.7.1 Message rejected as spam (in reply to end of DATA command))
5400 {host} postfix/bounce[{pid2}]: {q1}: sender non-delivery notification: {q2}
5400 {host} postfix/cleanup[{pid2}]: {q2}: message-id=<{q2}@example.com>
5400 {host} postfix/qmgr[102]: {q2}: from=<>, size=2900, nrcpt=1 (queue active)
5400 {host} postfix/qmgr[102]: {q1}: removed
5401 {host} postfix/local[{pid3}]: {q2}: to=<{user}>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (delivered to mailbox)
5401 {host} postfix/qmgr[102]: {q2}: removed
"""

# a local content filter (amavis): the next hop's client= comes before the hand-over
AMAVIS = """\
0 {host} postfix/submission/smtpd[{pid}]: {q1}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}
0 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=900, nrcpt=1 (queue active)
1 {host} postfix/smtpd[{pid2}]: connect from localhost[127.0.0.1]
1 {host} postfix/smtpd[{pid2}]: {q2}: client=localhost[127.0.0.1]
1 {host} postfix/qmgr[102]: {q2}: from=<{user}>, size=1200, nrcpt=1 (queue active)
2 {host} postfix/smtp[{pid3}]: {q1}: to=<c@example.net>, relay=127.0.0.1[127.0.0.1]:10024, delay=1, delays=0.1/0/0/0.9, dsn=2.0.0, status=sent (250 2.0.0 from MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as {q2})
2 {host} postfix/qmgr[102]: {q1}: removed
3 {host} postfix/smtpd[{pid2}]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5
3 {host} postfix/smtp[{pid3}]: {q2}: to=<c@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=2, delays=0.1/0/1/0.9, dsn=4.2.0, status=deferred (host mx.example.net[198.51.100.1] said: 450 4.2.0 Greylisted (in reply to RCPT TO command))
700 {host} postfix/smtp[{pid3}]: {q2}: to=<c@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=700, delays=699/0/1/0.9, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 9C2D1E0F3A)
700 {host} postfix/qmgr[102]: {q2}: removed
"""

# the same through a filter that logs its hand-over first (a filter on another address)
REMOTE_FILTER = """\
0 {host} postfix/submission/smtpd[{pid}]: {q1}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}
0 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=900, nrcpt=1 (queue active)
2 {host} postfix/smtp[{pid3}]: {q1}: to=<d@example.net>, relay=filter.example.com[172.18.0.5]:10024, delay=1, delays=0.1/0/0/0.9, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as {q2})
2 {host} postfix/qmgr[102]: {q1}: removed
3 {host} postfix/smtpd[{pid2}]: {q2}: client=filter.example.com[172.18.0.5]
3 {host} postfix/qmgr[102]: {q2}: from=<{user}>, size=1200, nrcpt=1 (queue active)
4 {host} postfix/smtp[{pid3}]: {q2}: to=<d@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=2, delays=0.1/0/1/0.9, dsn=5.1.1, status=bounced (host mx.example.net[198.51.100.1] said: 550 5.1.1 No such user (in reply to RCPT TO command))
4 {host} postfix/qmgr[102]: {q2}: removed
"""

# Dovecot's submission service relays without XCLIENT: its line names the login
DOVECOT = """\
0 {host} dovecot: submission-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=127.0.0.1, mpid={pid}, session=<{session}>
1 {host} postfix/smtpd[{pid2}]: connect from localhost[127.0.0.1]
1 {host} postfix/smtpd[{pid2}]: {q1}: client=localhost[127.0.0.1]
1 {host} postfix/cleanup[{pid3}]: {q1}: message-id=<{q1}@example.com>
1 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=347, nrcpt=1 (queue active)
2 {host} dovecot: submission({user})<{pid}><{session}>: Successfully relayed message: from=<{user}>, size=139, id=ZFuqN9/XBGvFIgAAg+zDdQ, nrcpt=1, reply=`250 2.0.0 Ok: 347 bytes queued as {q1}'
2 {host} postfix/smtpd[{pid2}]: disconnect from localhost[127.0.0.1] ehlo=1 mail=1 rcpt=1 bdat=1 quit=1 commands=5
3 {host} postfix/smtp[{pid3}]: {q1}: to=<e@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0.01/0.01/0/1, dsn=4.7.0, status=deferred (host mx.example.net[198.51.100.1] said: 421 4.7.0 Try again later (in reply to end of DATA command))
3 {host} postfix/qmgr[102]: {q1}: removed
"""

# a script's mail through pickup, and a reused queue ID whose first message lost its removal
PICKUP = """\
0 {host} postfix/pickup[{pid}]: {q1}: uid=33 from=<www-data>
0 {host} postfix/cleanup[{pid2}]: {q1}: message-id=<{q1}@example.com>
0 {host} postfix/qmgr[102]: {q1}: from=<www-data@example.com>, size=700, nrcpt=1 (queue active)
1 {host} postfix/smtp[{pid3}]: {q1}: to=<f@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.0.0, status=bounced (host mx.example.net[198.51.100.1] said: 550 5.0.0 Rejected (in reply to end of DATA command))
3 {host} postfix/submission/smtpd[{pid}]: {q1}: client=unknown[{ip}], sasl_method=LOGIN, sasl_username={user}
3 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=800, nrcpt=3 (queue active)
4 {host} postfix/smtp[{pid3}]: {q1}: to=<g@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)
4 {host} postfix/qmgr[102]: {q1}: removed
"""

# a message that never logs its removal, and its queue ID used again days later by a message
# whose first line is not a client= (a notification): the first must have expired by then
LOST = """\
0 {host} postfix/submission/smtpd[{pid}]: {q1}: client=unknown[{ip}], sasl_method=LOGIN, sasl_username={user}
0 {host} postfix/qmgr[102]: {q1}: from=<{user}>, size=800, nrcpt=1 (queue active)
1 {host} postfix/smtp[{pid3}]: {q1}: to=<h@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=4.4.2, status=deferred (lost connection with mx.example.net[198.51.100.1] while receiving the initial server greeting)
200000 {host} postfix/cleanup[{pid2}]: {q1}: message-id=<{q1}.late@example.com>
200000 {host} postfix/qmgr[102]: {q1}: from=<>, size=2100, nrcpt=1 (queue active)
200001 {host} postfix/smtp[{pid3}]: {q1}: to=<i@example.net>, relay=mx.example.net[198.51.100.1]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.1.1, status=bounced (host mx.example.net[198.51.100.1] said: 550 5.1.1 No such user (in reply to RCPT TO command))
200001 {host} postfix/qmgr[102]: {q1}: removed
"""

STORIES = [SUBMISSION_DEFERRED, AMAVIS, REMOTE_FILTER, DOVECOT, PICKUP, LOST]
START = datetime(2025, 11, 3, 0, 0, 0, tzinfo=UTC)


def weave(stories: int, seed: int) -> str:
    """``stories`` stories, one every few seconds, their lines in time order (ties kept in
    story order): messages in flight, deferred for hours and handed over, at every line."""
    rng = random.Random(seed)
    timed: list[tuple[float, int, str]] = []
    for number in range(stories):
        story = STORIES[number % len(STORIES)]
        begin = number * rng.uniform(2, 12)
        fields = {
            "host": "mx" if number % 7 else "mx2",
            "pid": 1000 + number,
            "pid2": 5000 + number,
            "pid3": 9000 + number,
            "q1": f"{0xA0000 + number:X}01",
            "q2": f"{0xA0000 + number:X}02",
            "user": f"user{number % 9}@example.com",
            "ip": f"203.0.113.{number % 250 + 1}",
            "session": f"s{number:06d}",
        }
        for order, raw in enumerate(story.splitlines()):
            offset, _, text = raw.partition(" ")
            timed.append((begin + float(offset), number * 100 + order, text.format(**fields)))
    timed.sort()
    lines = []
    for seconds, _, text in timed:
        stamp = START + timedelta(seconds=int(seconds))
        lines.append(f"{stamp:%b} {stamp.day:2d} {stamp:%H:%M:%S} {text}")
    return "\n".join(lines) + "\n"


def summary(pipeline: Pipeline) -> str:
    """What ``replay --json`` prints, and the addresses behind each account's count."""
    tally = pipeline.tally
    addresses = {
        subject: sorted(tally.accounts[subject].client_ips) for subject in sorted(tally.accounts)
    }
    return json.dumps([tally.account_records(), tally.totals_record(), addresses])


def in_one(path: Path) -> str:
    pipeline = Pipeline()
    pipeline.run_batches(read_batches([str(path)], tz=UTC, year=2025))
    pipeline.close()
    return summary(pipeline)


def in_halves(path: Path, seam: int, *, fork: bool = False) -> str:
    pipeline = halves.replay(
        str(path), seam, tz=UTC, year=2025, clock=SystemClock(), stats=ReadStats(), fork=fork
    )
    return summary(pipeline)


def line_starts(path: Path) -> list[int]:
    data = path.read_bytes()
    return [index + 1 for index, byte in enumerate(data[:-1]) if byte == 0x0A]


def test_every_seam_of_a_woven_log_adds_up_to_the_whole(tmp_path, caplog):
    """At every line of 120 overlapping stories (content filters both ways, Dovecot relays,
    deferrals for hours, bounces, queue IDs used again, a message expired after two days),
    the halves print the whole's summary; and most seams add up without a second pass (the
    speed is the point)."""
    log = tmp_path / "mail.log"
    log.write_text(weave(120, seed=7))
    whole = in_one(log)
    assert '"messages"' in whole and '"deferred": 0' not in whole.split("totals")[0]
    seams = line_starts(log)
    assert len(seams) > 1000
    caplog.set_level(logging.INFO, logger="postwatch.halves")
    for seam in seams:
        assert in_halves(log, seam) == whole, f"seam before line {seams.index(seam) + 2}"
    again = [r.message for r in caplog.records]
    assert len(again) < len(seams) / 5, again[:5]
    # the filter that logs its hand-over first cannot always be added: those seams replay
    assert any("start depends" in message for message in again)


@pytest.mark.parametrize(
    ("name", "why"),
    [("demo/mail.log", ""), ("correlate/zentyal.log", "the year changes at the seam")],
)
def test_every_seam_of_a_shipped_log(name, why, caplog):
    """The demo log adds up at every line; a log whose year turns reads on in one process
    where the seam falls after the turn, and prints the same."""
    log = MAILLOGS / name
    whole = in_one(log)
    caplog.set_level(logging.INFO, logger="postwatch.halves")
    seams = line_starts(log)
    for seam in seams[:: max(1, len(seams) // 400)]:
        assert in_halves(log, seam) == whole
    reasons = {r.message.partition(": ")[2] for r in caplog.records}
    assert reasons == ({why} if why else set())


def test_a_dovecot_file_without_host_names_reads_on_in_one_process(tmp_path, caplog):
    """Dovecot's own log file names no host: its relayed lines are looked up on every host,
    which the later half cannot do alone."""
    text = (
        weave(40, seed=3)
        .replace(" mx dovecot: submission-login: ", " submission-login: Info: ")
        .replace(" mx dovecot: submission(", " submission(")
        .replace(">: Successfully", ">: Info: Successfully")
    )
    log = tmp_path / "mail.log"
    log.write_text(text)
    caplog.set_level(logging.INFO, logger="postwatch.halves")
    seams = line_starts(log)
    assert in_halves(log, seams[len(seams) // 3]) == in_one(log)
    assert "a Dovecot line without a host name" in caplog.text


def test_the_forked_half_gives_the_same_summary(tmp_path):
    log = tmp_path / "mail.log"
    log.write_text(weave(120, seed=11))
    seams = line_starts(log)
    assert in_halves(log, seams[len(seams) // 2], fork=True) == in_one(log)


def test_a_large_file_is_replayed_in_halves_by_the_command(tmp_path, monkeypatch):
    """``replay --no-detect`` splits a large plain file and prints the bytes ``--jobs 1``
    prints; a compressed or small one is not split."""
    log = tmp_path / "mail.log"
    log.write_text(weave(300, seed=5) * 3)
    assert halves.seam_of(str(log)) is None  # under MIN_BYTES
    monkeypatch.setattr(halves, "MIN_BYTES", 1)
    assert halves.seam_of(str(log)) is not None
    packed = tmp_path / "mail.log.1.gz"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    assert halves.seam_of(str(packed)) is None  # no seeking into a compressed stream
    script = (
        "import sys; from postwatch import halves, cli; halves.MIN_BYTES = 1; "
        "split = halves.replay; halves.replay = lambda *a, **k: print('split', file=sys.stderr) "
        "or split(*a, **k); sys.argv[0] = 'postwatch'; cli.main()"
    )
    args = ["replay", "--no-detect", "--json", "--tz", "UTC", "--year", "2025", "--no-progress"]

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", script, *args, *more, str(log)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done

    split, whole = run(), run("--jobs", "1")
    assert (split.stderr, whole.stderr) == ("split\n", "")
    assert split.stdout == whole.stdout
    assert json.loads(split.stdout.splitlines()[-1])["lines"] == len(line_starts(log)) + 1


def test_time_going_back_at_the_seam_reads_on_in_one_process(tmp_path, caplog):
    """A line from a host whose clock is behind, right at the seam: the later half's
    five-minute flushes would not fall where the whole's do, so it is not added."""
    lines = weave(60, seed=5).splitlines(keepends=True)
    middle = len(lines) // 2
    late = lines[middle]
    behind = START - timedelta(hours=1)
    lines.insert(middle, late.replace(late[:15], f"{behind:%b} {behind.day:2d} {behind:%T}", 1))
    log = tmp_path / "mail.log"
    log.write_text("".join(lines))
    caplog.set_level(logging.INFO, logger="postwatch.halves")
    assert in_halves(log, line_starts(log)[middle - 1]) == in_one(log)
    assert "the log's time goes back at the seam" in caplog.text


def test_a_capped_count_is_counted_again_in_one_process(tmp_path, monkeypatch, caplog):
    """An account's addresses are counted up to a cap; two capped halves do not add up to
    the whole's capped count, so the file is replayed in one process."""
    monkeypatch.setattr("postwatch.tally.MAX_IPS_PER_ACCOUNT", 4)
    log = tmp_path / "mail.log"
    log.write_text(weave(120, seed=7))
    caplog.set_level(logging.INFO, logger="postwatch.halves")
    whole = in_one(log)
    assert '"distinct_ips": 4' in whole
    for seam in line_starts(log)[400:420]:
        assert in_halves(log, seam) == whole
    assert "a count reached its cap" in caplog.text
