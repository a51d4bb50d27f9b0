"""`postwatch replay` as an admin runs it: its JSON contract, its table, its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from conftest import MAILLOGS

DEMO = MAILLOGS / "demo" / "mail.log"
GOLDEN = json.loads((MAILLOGS / "demo" / "mail.golden.json").read_text())


def postwatch(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postwatch", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_stream_has_alerts_then_accounts_then_totals():
    """--json prints alerts as raised, one record per SASL user, and the totals last."""
    result = postwatch("replay", "--json", "--year", "2025", "--tz", "UTC", str(DEMO))
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    kinds = [record["type"] for record in out]
    assert kinds[-1] == "totals"
    first_account = kinds.index("account")
    assert set(kinds[:first_account]) == {"alert"}
    assert set(kinds[first_account:-1]) == {"account"}
    totals = out[-1]
    assert totals["lines"] == sum(1 for _ in DEMO.open())
    assert sum(totals["events"].values()) == totals["lines"]
    assert totals["unparsed"] == {}
    for alert in (r for r in out if r["type"] == "alert"):
        assert {"ts", "subject", "subject_kind", "severity", "score", "reasons", "evidence"} <= set(
            alert
        )
        assert alert["ts"].endswith("+00:00")
        assert alert["reasons"] and all(
            {"signal", "detail", "points"} <= set(r) for r in alert["reasons"]
        )
        assert alert["score"] == sum(r["points"] for r in alert["reasons"])


def test_account_record_counts_what_the_user_sent():
    """The compromised demo account's record counts its messages, recipients and IPs."""
    out = records(postwatch("replay", "--json", "--no-detect", "--year", "2025", str(DEMO)).stdout)
    accounts = {r["subject"]: r for r in out if r["type"] == "account"}
    burst = next(case for case in GOLDEN["abusive"] if case["subject_kind"] == "account")
    victim = accounts[burst["subject"]]
    assert set(victim) == {
        "type",
        "subject",
        "messages",
        "recipients",
        "distinct_ips",
        "deferred",
        "bounced",
    }
    assert victim["messages"] >= len(burst.get("queue_ids", [])) > 0
    assert victim["recipients"] >= victim["messages"]
    assert victim["distinct_ips"] >= 2
    assert victim["bounced"] + victim["deferred"] > 0
    assert max(accounts.values(), key=lambda r: r["messages"])["subject"] == burst["subject"]


def test_demo_alerts_name_the_compromised_account_and_the_brute_forcer():
    """Replaying the demo log raises alerts for exactly the abusive subjects of its golden file."""
    out = records(postwatch("replay", "--json", "--year", "2025", "--tz", "UTC", str(DEMO)).stdout)
    alerted = {(r["subject_kind"], r["subject"]) for r in out if r["type"] == "alert"}
    expected = {(case["subject_kind"], case["subject"]) for case in GOLDEN["abusive"]}
    assert alerted == expected


def test_replay_is_deterministic():
    """The same input gives the same output, byte for byte."""
    args = ("replay", "--json", "--year", "2025", "--tz", "UTC", str(DEMO))
    assert postwatch(*args).stdout == postwatch(*args).stdout


def test_stdin_and_files_in_any_order_give_the_same_summary(tmp_path):
    """`-` reads standard input, and a rotation set given newest first is read oldest first."""
    lines = DEMO.read_text().splitlines(keepends=True)
    half = len(lines) // 2
    (tmp_path / "mail.log.1").write_text("".join(lines[:half]))
    (tmp_path / "mail.log").write_text("".join(lines[half:]))
    from_files = postwatch(
        "replay",
        "--json",
        "--no-detect",
        "--year",
        "2025",
        str(tmp_path / "mail.log"),
        str(tmp_path / "mail.log.1"),
    )
    from_stdin = postwatch(
        "replay", "--json", "--no-detect", "--year", "2025", "-", stdin="".join(lines)
    )
    assert from_files.returncode == from_stdin.returncode == 0
    assert records(from_files.stdout)[:-1] == records(from_stdin.stdout)[:-1]


def _journalctl(mode: str, line: str) -> str:
    """The demo's syslog ``line`` as ``journalctl -o MODE`` writes it (the demo is in UTC)."""
    when = datetime.strptime(f"2025 {line[:15]}", "%Y %b %d %H:%M:%S").replace(tzinfo=UTC)
    rest = line[16:]
    if mode == "short-precise":
        return f"{when:%b %d %H:%M:%S}.{when.microsecond:06d} {rest}"
    if mode == "short-full":
        return f"{when:%a %Y-%m-%d %H:%M:%S} UTC {rest}"
    return f"{when.timestamp():.6f} {rest}"  # short-unix


@pytest.mark.parametrize("mode", ["short-precise", "short-full", "short-unix"])
def test_a_journalctl_text_dump_replays_like_the_syslog_file(tmp_path, mode):
    """``journalctl -u postfix -o MODE > dump`` on a host without a mail.log gives the same
    alerts and summary as the syslog file of the same lines."""
    dump = tmp_path / "dump.log"
    dump.write_text("".join(_journalctl(mode, line) for line in DEMO.open()))
    args = ("replay", "--json", "--tz", "UTC", "--year", "2025")  # short-precise has no year
    from_syslog = postwatch(*args, str(DEMO))
    from_dump = postwatch(*args, str(dump))
    assert from_dump.returncode == 0, from_dump.stderr
    assert records(from_dump.stdout)[-1]["unparsed"] == {}
    assert from_dump.stdout == from_syslog.stdout


def test_table_output_shows_users_and_alerts():
    """Without --json the summary is a readable table with the alerts and their reasons."""
    result = postwatch("replay", "--year", "2025", "--tz", "UTC", str(DEMO))
    assert result.returncode == 0
    burst = next(case for case in GOLDEN["abusive"] if case["subject_kind"] == "account")
    assert "SASL users:" in result.stdout and burst["subject"] in result.stdout
    assert "alerts:" in result.stdout and "bogus_helo" in result.stdout


def test_missing_file_is_a_one_line_error_naming_it(tmp_path):
    """An unreadable input exits 2 with one line that names the file."""
    missing = tmp_path / "nope.log"
    result = postwatch("replay", str(missing))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "nope.log" in result.stderr


def test_bad_usage_exits_2():
    """An unknown time zone or --learn without a database is a usage error (exit 2)."""
    assert postwatch("replay", "--tz", "Mars/Olympus", str(DEMO)).returncode == 2
    learn = postwatch("replay", "--learn", str(DEMO))
    assert learn.returncode == 2 and "--db" in learn.stderr


def test_replay_without_a_database_loads_no_database_code():
    """A replay without --db never imports SQLAlchemy (it costs a cron job a third of a second)."""
    probe = (
        "import sys; from postwatch.cli import main; sys.argv = ['postwatch', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'sqlalchemy')[:3])"
    )
    for extra in (["--no-detect"], []):
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                probe,
                "replay",
                *extra,
                "--year",
                "2025",
                "--tz",
                "UTC",
                str(DEMO),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[-1] == "[]", extra


def test_odd_program_names_cannot_grow_the_totals(tmp_path):
    """A syslog tag is any local user's choice: a 300 KB tag is counted under a short name,
    and thousands of invented tags share one key past the first thousand."""
    stamp = "Nov 23 10:00:00 mx "
    lines = [f"{stamp}{'x' * 300_000}[1]: hello"]
    lines += [f"{stamp}tag{index}[1]: hello" for index in range(1500)]
    log = tmp_path / "tags.log"
    log.write_text("\n".join(lines) + "\n")
    done = postwatch("replay", "--json", "--no-detect", "--year", "2025", str(log))
    assert done.returncode == 0, done.stderr
    unparsed = records(done.stdout)[-1]["unparsed"]
    assert len(unparsed) == 1000 + 1
    assert max(len(name) for name in unparsed) <= 64
    assert unparsed["(other programs)"] == 501
    assert sum(unparsed.values()) == 1501
    assert len(done.stdout) < 100_000


def test_progress_goes_to_stderr_every_64k_lines(tmp_path):
    """--progress draws a line on stderr every 65,536 lines and the total at the end;
    stdout stays the same JSON."""
    text = DEMO.read_text()
    log = tmp_path / "mail.log"
    log.write_text(text * 14)
    total = 14 * text.count("\n")
    args = ("replay", "--json", "--no-detect", "--year", "2025", "--tz", "UTC", str(log))
    shown = postwatch(*args, "--progress")
    quiet = postwatch(*args, "--no-progress")
    assert shown.returncode == quiet.returncode == 0, shown.stderr
    assert shown.stdout == quiet.stdout
    assert records(shown.stdout)[-1]["lines"] == total
    assert quiet.stderr == ""
    steps = shown.stderr.splitlines()  # each "\r" read as a line end
    assert steps[0] == "" and len(steps) == 3, shown.stderr
    assert steps[1].startswith(" 9") and "%  65,536 lines  2025-" in steps[1]
    assert steps[1].endswith(str(log))
    assert steps[2].rstrip() == f"{total:,} lines"
