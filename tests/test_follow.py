"""The live-file follower: partial lines, rotation, truncation, restarts; the journal follower."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_program

from postwatch.clock import SteppedClock
from postwatch.sources import follow
from postwatch.sources.follow import FileFollower, JournalFollower, Position, rotated_siblings


@pytest.fixture(scope="module")
def real_lines(corpus: Path) -> list[str]:
    """Real Postfix lines (read from the corpus at test time, never copied into the repo)."""
    text = (corpus / "kdent-postfix_log_analysis" / "mail.log").read_text(errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(set(lines[:600])) == 600
    return lines[:600]


def append(path: Path, lines: list[str], partial: str = "") -> None:
    with path.open("ab") as stream:
        stream.write("".join(f"{line}\n" for line in lines).encode() + partial.encode())


def texts(follower: FileFollower, max_lines: int = 10_000) -> list[str]:
    return [raw.text for raw in follower.read(max_lines)]


def test_reads_appended_lines_and_waits_for_a_partial_line(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """Complete lines are returned once; a partial last line only when its newline comes."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    append(log, real_lines[:3], partial=real_lines[3][:20])
    assert texts(follower) == real_lines[:3]
    assert texts(follower) == []
    append(log, [real_lines[3][20:]])
    assert texts(follower) == [real_lines[3]]
    assert follower.position().offset == log.stat().st_size


def test_starts_at_the_end_unless_told_to_start_at_the_beginning(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """Without a position, existing lines are skipped; from_start reads them."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:5], partial=real_lines[5][:10])
    at_end = FileFollower(str(log))
    from_start = FileFollower(str(log), from_start=True)
    append(log, [real_lines[5][10:], real_lines[6]])
    assert texts(at_end) == real_lines[5:7]
    assert texts(from_start) == real_lines[:7]


def test_batches_respect_max_lines_and_position(tmp_path: Path, real_lines: list[str]) -> None:
    """A read returns at most max_lines, and the position points just after the last one."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    append(log, real_lines[:10])
    first = follower.read(4)
    assert [raw.text for raw in first] == real_lines[:4]
    assert [raw.lineno for raw in first] == [1, 2, 3, 4]
    resumed = FileFollower(str(log), follower.position())
    assert texts(resumed) == real_lines[4:10]


def test_file_that_appears_later_is_read_from_its_start(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """A missing file is waited for, then read from its first byte."""
    log = tmp_path / "mail.log"
    follower = FileFollower(str(log))
    assert texts(follower) == []
    append(log, real_lines[:2])
    assert texts(follower) == real_lines[:2]


def test_rename_rotation_drains_the_old_file_then_reads_the_new(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """Lines written to the renamed file before the writer moves are read, then the new file."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:2])
    follower = FileFollower(str(log), from_start=True)
    assert texts(follower) == real_lines[:2]
    os.rename(log, tmp_path / "mail.log.1")
    log.write_bytes(b"")  # create: the new file, still empty
    append(tmp_path / "mail.log.1", real_lines[2:4], partial=real_lines[4][:7])
    assert texts(follower) == real_lines[2:4]
    assert follower.mode == follow.DRAINING
    append(tmp_path / "mail.log.1", [real_lines[4][7:]])
    append(log, real_lines[5:7])  # the writer has reopened: the new file has data
    assert texts(follower) == real_lines[4:7]
    assert follower.mode == follow.LIVE
    assert follower.current == str(log)


def test_renamed_file_ending_without_newline_gives_its_last_line(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """A rotated-away file that ends mid-line still yields that line before the new file."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    append(log, real_lines[:1], partial=real_lines[1])
    assert texts(follower) == real_lines[:1]
    os.rename(log, tmp_path / "mail.log.1")
    append(log, real_lines[2:3])
    assert texts(follower) == real_lines[1:3]


def test_copytruncate_finishes_the_copy_then_reads_the_live_file(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """After copytruncate, unread lines come from the copy and new ones from byte 0."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    follower = FileFollower(str(log), from_start=True)
    assert texts(follower) == real_lines[:3]
    append(log, real_lines[3:5])
    shutil.copyfile(log, tmp_path / "mail.log.1")
    with log.open("r+b") as stream:
        stream.truncate(0)
    append(log, real_lines[5:6])
    assert texts(follower) == real_lines[3:6]
    assert follower.current == str(log)


def test_copytruncate_and_regrowth_past_the_offset_is_noticed(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """A truncated file that grew past the old offset is told apart by its first line."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    follower = FileFollower(str(log), from_start=True)
    assert texts(follower) == real_lines[:3]
    append(log, real_lines[3:4])
    shutil.copyfile(log, tmp_path / "mail.log.1")
    with log.open("r+b") as stream:
        stream.truncate(0)
    append(log, real_lines[10:30])  # far longer than before
    assert texts(follower) == [real_lines[3], *real_lines[10:30]]


def test_truncation_without_a_copy_starts_again_from_byte_zero(
    tmp_path: Path, real_lines: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A file cut to zero with no copy anywhere is read again from its start, with a warning."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    follower = FileFollower(str(log), from_start=True)
    texts(follower)
    with log.open("r+b") as stream:
        stream.truncate(0)
    append(log, real_lines[3:4])
    assert texts(follower) == real_lines[3:4]
    assert "truncated" in caplog.text


def test_bad_bytes_and_crlf_never_stop_reading(tmp_path: Path, real_lines: list[str]) -> None:
    """Invalid UTF-8 becomes replacement characters and a CR before the newline is dropped."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    log.write_bytes(real_lines[0].encode() + b" \xff\xfe\r\n" + real_lines[1].encode() + b"\n")
    assert texts(follower) == [real_lines[0] + " \ufffd\ufffd", real_lines[1]]


def test_runaway_line_without_newline_is_cut(tmp_path: Path) -> None:
    """Bytes without a newline are not held forever: they are cut at MAX_LINE."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    log.write_bytes(b"x" * (follow.MAX_LINE + 10))
    lines = texts(follower)
    assert [len(line) for line in lines] == [follow.MAX_LINE]
    assert follower.position().offset == follow.MAX_LINE


# --- restarts ---------------------------------------------------------------------------------


def stopped_after(log: Path, lines: list[str]) -> Position:
    """Follow ``log`` from its start, read everything, and return where it stopped."""
    follower = FileFollower(str(log), from_start=True)
    assert texts(follower) == lines
    position = follower.position()
    follower.close()
    return position


def test_resume_continues_at_the_saved_offset(tmp_path: Path, real_lines: list[str]) -> None:
    """A restart reads exactly the lines written after the saved position."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    position = stopped_after(log, real_lines[:3])
    append(log, real_lines[3:5])
    resumed = FileFollower(str(log), position)
    assert [(raw.text, raw.lineno) for raw in resumed.read(100)] == [
        (real_lines[3], 4),
        (real_lines[4], 5),
    ]


def test_resume_after_rotations_while_stopped(tmp_path: Path, real_lines: list[str]) -> None:
    """Rotated twice while stopped (once compressed): the old file, the newer one, then live."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    position = stopped_after(log, real_lines[:3])
    append(log, real_lines[3:5])
    with log.open("rb") as source, gzip.open(tmp_path / "mail.log.2.gz", "wb") as packed:
        packed.write(source.read())
    log.unlink()
    append(tmp_path / "mail.log.1", real_lines[5:7])
    append(log, real_lines[7:9])
    resumed = FileFollower(str(log), position)
    assert texts(resumed) == real_lines[3:9]
    assert resumed.current == str(log)


def test_resume_in_a_bzip2_file_part_way(tmp_path: Path, real_lines: list[str]) -> None:
    """A position inside a file compressed since is found and finished from that offset."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:4])
    follower = FileFollower(str(log), from_start=True)
    follower.read(2)
    position = follower.position()
    follower.close()
    with log.open("rb") as source, bz2.open(tmp_path / "mail.log.1.bz2", "wb") as packed:
        packed.write(source.read())
    log.unlink()
    resumed = FileFollower(str(log), position)
    assert texts(resumed) == real_lines[2:4]


def test_reused_inode_is_not_taken_for_the_old_file(tmp_path: Path, real_lines: list[str]) -> None:
    """A new file on the saved inode number but with another first line is read from 0."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    position = stopped_after(log, real_lines[:3])
    log.unlink()
    append(log, real_lines[20:30])  # longer than the saved offset, maybe the same inode
    info = log.stat()
    reused = position._replace(device=info.st_dev, inode=info.st_ino)
    assert texts(FileFollower(str(log), reused)) == real_lines[20:30]


def test_unreadable_candidate_keeps_the_position(tmp_path: Path, real_lines: list[str]) -> None:
    """While the saved file cannot be read, nothing is read from 0; then it resumes."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:3])
    position = stopped_after(log, real_lines[:3])
    append(log, real_lines[3:4])
    os.rename(log, tmp_path / "aside")
    log.mkdir()  # opening a folder fails like an unreadable file does
    follower = FileFollower(str(log), position)
    assert texts(follower) == []
    assert "cannot resume" in follower.error
    log.rmdir()
    os.rename(tmp_path / "aside", log)
    assert texts(follower) == real_lines[3:4]
    assert follower.error == ""


def test_position_from_json_rejects_what_is_not_a_position() -> None:
    """A damaged saved position raises ValueError instead of being half used."""
    good = Position(1, 2, 3, "ab", 4)
    assert Position.from_json(good.to_json()) == good
    bad: object
    for bad in ([], {"offset": "3"}, {"offset": -1}, {"head": 5}):
        with pytest.raises(ValueError):
            Position.from_json(bad)


def test_rotated_siblings_are_found_oldest_first(tmp_path: Path) -> None:
    """Numbered and dateext rotations of the path are listed oldest first; others are not."""
    for name in (
        "mail.log",
        "mail.log.1",
        "mail.log.2.gz",
        "mail.log-20261101",
        "mail.log.offset",
        "mail.logger",
        "other.log.1",
    ):
        (tmp_path / name).write_bytes(b"")
    names = [Path(path).name for path in rotated_siblings(str(tmp_path / "mail.log"))]
    assert names == ["mail.log-20261101", "mail.log.2.gz", "mail.log.1"]


# --- the real logrotate -----------------------------------------------------------------------


def logrotate(tmp_path: Path, log: Path, directives: str) -> None:
    """Run the real logrotate once, forced, on ``log`` with ``directives``."""
    program = require_program("logrotate", "/usr/sbin/logrotate")
    config = tmp_path / "logrotate.conf"
    config.write_text(f"{log} {{\n    rotate 5\n    missingok\n    {directives}\n}}\n")
    config.chmod(0o644)
    subprocess.run(
        [program, "--force", "--state", str(tmp_path / "logrotate.state"), str(config)],
        check=True,
        capture_output=True,
    )


@pytest.mark.system
@pytest.mark.parametrize(
    "directives",
    [
        "create\n    compress",
        "copytruncate\n    compress\n    delaycompress",
        "create\n    dateext\n    dateformat -%Y%m%d-%s",
    ],
    ids=["create-compress", "copytruncate-delaycompress", "dateext"],
)
def test_real_logrotate_loses_and_repeats_nothing(
    tmp_path: Path, real_lines: list[str], directives: str
) -> None:
    """Through logrotate's create, copytruncate and dateext, every line is read exactly once."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"")
    follower = FileFollower(str(log))
    append(log, real_lines[:10])
    read = texts(follower)
    append(log, real_lines[10:20])  # written before the rotation, read after it
    logrotate(tmp_path, log, directives)
    append(log, real_lines[20:30])  # the writer has reopened the new file
    read += texts(follower)
    assert read == real_lines[:30]
    assert follower.current == str(log)


@pytest.mark.system
def test_real_logrotate_twice_while_stopped(tmp_path: Path, real_lines: list[str]) -> None:
    """Stopped mid-file, rotated twice with compression: the restart reads the rest once."""
    log = tmp_path / "mail.log"
    append(log, real_lines[:10])
    follower = FileFollower(str(log), from_start=True)
    assert len(follower.read(4)) == 4
    position = follower.position()
    follower.close()
    logrotate(tmp_path, log, "create\n    compress\n    delaycompress")
    append(log, real_lines[10:20])
    logrotate(tmp_path, log, "create\n    compress\n    delaycompress")
    append(log, real_lines[20:30])
    assert sorted(path.name for path in tmp_path.glob("mail.log*")) == [
        "mail.log",
        "mail.log.1",
        "mail.log.2.gz",
    ]
    assert texts(FileFollower(str(log), position)) == real_lines[4:30]


# --- the journal ------------------------------------------------------------------------------

FAKE_JOURNALCTL = """\
import json, signal, sys
with open(sys.argv[0] + ".argv", "a") as record:
    record.write(json.dumps(sys.argv[1:]) + "\\n")
def cursor(entry):
    try:
        return json.loads(entry).get("__CURSOR")
    except ValueError:
        return None
after = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--after-cursor=")), None)
entries = [line for line in open(sys.argv[0] + ".entries") if line.strip()]
if after is not None:
    entries = entries[[cursor(entry) for entry in entries].index(after) + 1:]
elif "--lines=0" in sys.argv:
    entries = []
sys.stdout.write("".join(entries))
sys.stdout.flush()
if "--exit" not in open(sys.argv[0] + ".entries").read(7):
    signal.pause()
"""


def fake_journalctl(tmp_path: Path, entries: list[object]) -> Path:
    script = tmp_path / "journalctl"
    script.write_text(f"#!{sys.executable}\n{FAKE_JOURNALCTL}")
    script.chmod(0o755)
    (tmp_path / "journalctl.entries").write_text(
        "".join(
            (entry if isinstance(entry, str) else json.dumps(entry)) + "\n" for entry in entries
        )
    )
    return script


def journal_entry(number: int, message: str) -> dict[str, str]:
    return {
        "__CURSOR": f"s=1;i={number}",
        "__REALTIME_TIMESTAMP": f"{1700000000000000 + number}",
        "_HOSTNAME": "mx",
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_PID": "1830",
        "MESSAGE": message,
    }


def read_all(follower: JournalFollower, count: int) -> list[str]:
    out: list[str] = []
    for _ in range(200):
        out += [line.message for line in follower.read(100)]
        if len(out) >= count:
            break
        fd = follower.fileno()
        if fd is not None:
            select.select([fd], [], [], 5)
    return out


def test_journal_follower_resumes_after_its_cursor(tmp_path: Path, real_lines: list[str]) -> None:
    """Entries are read with their cursor; a restart asks journalctl for what came after."""
    messages = [line.split(": ", 1)[1] for line in real_lines[:3]]
    script = fake_journalctl(tmp_path, [journal_entry(n, m) for n, m in enumerate(messages)])
    first = JournalFollower(None, from_start=True, executable=str(script))
    assert read_all(first, 3) == messages
    assert first.position() == {"cursor": "s=1;i=2"}
    first.close()
    partial = JournalFollower("s=1;i=0", executable=str(script))
    assert read_all(partial, 2) == messages[1:]
    partial.close()
    argvs = [json.loads(line) for line in (tmp_path / "journalctl.argv").read_text().splitlines()]
    assert "--follow" in argvs[0] and "--no-tail" in argvs[0]
    assert "--after-cursor=s=1;i=0" in argvs[1]


def test_journal_follower_counts_bad_lines_and_restarts_journalctl(
    tmp_path: Path, real_lines: list[str]
) -> None:
    """Malformed JSON is counted and skipped; journalctl is started again after it exits."""
    message = real_lines[0].split(": ", 1)[1]
    script = fake_journalctl(tmp_path, ["--exit", "{not json", journal_entry(7, message)])
    clock = SteppedClock()
    follower = JournalFollower(
        None, from_start=True, executable=str(script), clock=clock, restart_delay=5
    )
    assert read_all(follower, 1) == [message]
    assert follower.malformed == 2  # "--exit" and "{not json"
    wait_for_exit(follower)
    assert "exited with status 0" in follower.error
    assert follower.read(10) == []
    assert follower.fileno() is None  # not started again before the delay
    clock.step(5)
    follower.read(10)
    assert follower.error == ""
    wait_for_exit(follower)
    follower.close()
    argvs = (tmp_path / "journalctl.argv").read_text().splitlines()
    assert len(argvs) == 2 and "--after-cursor=s=1;i=7" in json.loads(argvs[1])


def wait_for_exit(follower: JournalFollower) -> None:
    for _ in range(200):
        fd = follower.fileno()
        if fd is None:
            return
        select.select([fd], [], [], 5)
        follower.read(10)
    pytest.fail("journalctl did not exit")
