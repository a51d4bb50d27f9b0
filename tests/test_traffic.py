"""The synthetic traffic: deterministic, time-ordered, parseable, and true to its goldens."""

from __future__ import annotations

import io
import itertools
import json
import re
from collections import Counter
from datetime import UTC
from pathlib import Path

import pytest
from conftest import MAILLOGS

from bench import abuse
from bench.generate import ensure, generate
from bench.networks import NETWORKS
from bench.ordinary import Ordinary
from bench.population import Population
from bench.run import Job, Result, measure, table
from bench.scenarios import CASES, build_demo, build_scenario, scenario
from bench.timeline import Processes, QueueIds, Timeline
from bench.traffic import Server
from postwatch.parse import Parser
from postwatch.parse.syslog import Framer

SHORT_ID = re.compile(r"[0-9A-F]{10,11}")
LONG_ID = re.compile(
    r"[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+"
)

KINDS_EVERY_LOG_HAS = {
    "connect",
    "disconnect",
    "tls",
    "client",
    "sasl_failure",
    "reject",
    "postscreen",
    "message_id",
    "content_action",
    "queue_active",
    "removed",
    "delivery",
    "bounce_notice",
    "pickup",
    "anvil",
    "dovecot_login",
    "dovecot_session",
    "hostname_mismatch",
    "connection_lost",
    "diagnostic",
}


@pytest.fixture(scope="module")
def bench_log(tmp_path_factory) -> Path:
    """A short benchmark log (three days of 60 accounts, traditional stamps)."""
    path = tmp_path_factory.mktemp("bench") / "bench.log"
    generate(path, 60_000, seed=3, accounts=60)
    return path


@pytest.fixture(scope="module")
def burst_case(tmp_path_factory) -> tuple[Path, dict]:
    """The burst scenario at the default seed, with its golden record."""
    out = tmp_path_factory.mktemp("burst")
    log = build_scenario("burst", 1, out)
    return log, json.loads((out / "burst.golden.json").read_text(encoding="utf-8"))


def frame_all(path: Path) -> list:
    framer = Framer(tz=UTC, year=2025)
    with path.open(encoding="utf-8") as handle:
        return [framer(text.rstrip("\n"), number) for number, text in enumerate(handle, 1)]


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    """Two runs with one seed write identical logs; a different seed writes a different one."""
    paths = [tmp_path / name for name in ("a.log", "b.log", "c.log")]
    for path, seed in zip(paths, (5, 5, 6), strict=True):
        generate(path, 8_000, seed=seed, accounts=30)
    first, second, other = (path.read_bytes() for path in paths)
    assert first == second
    assert first != other


def test_lines_are_in_time_order(bench_log):
    """No line is stamped earlier than the line before it."""
    stamps = [line.ts for line in frame_all(bench_log)]
    assert len(stamps) >= 60_000
    assert all(earlier <= later for earlier, later in itertools.pairwise(stamps))


def test_traditional_stamps_pad_the_day_with_a_space(bench_log):
    """Days below ten are written ``Nov  3``, as syslog does."""
    with bench_log.open(encoding="utf-8") as handle:
        first = handle.readline()
    assert first.startswith("Nov  3 ")


def test_queue_ids_are_unique_while_the_message_is_queued(bench_log):
    """A queue ID never starts a second message before the first one's ``removed`` line."""
    parser = Parser()
    live: set[str] = set()
    starts = 0
    for line in frame_all(bench_log):
        event = parser(line)
        if event.kind in ("client", "pickup"):
            assert SHORT_ID.fullmatch(event.queue_id), event.queue_id
            assert event.queue_id not in live, f"line {line.lineno}: reused while queued"
            live.add(event.queue_id)
            starts += 1
        elif event.kind == "message_id" and event.queue_id not in live:  # a bounce notice
            live.add(event.queue_id)
            starts += 1
        elif event.kind == "removed":
            live.discard(event.queue_id)
    assert starts > 5_000


def test_every_line_frames_and_parses_as_a_known_event(bench_log):
    """The parser claims every generated line, and the log has every common event kind."""
    parser = Parser()
    kinds = Counter()
    for line in frame_all(bench_log):
        assert line.program, f"line {line.lineno} did not frame: {line.message}"
        event = parser(line)
        assert event.kind != "unparsed", f"line {line.lineno}: {line.program}: {line.message}"
        kinds[event.kind] += 1
    assert set(kinds) >= KINDS_EVERY_LOG_HAS


def test_long_queue_ids_look_like_postfix_long_ids(tmp_path):
    """With long IDs on, queue IDs are base-52 time, a ``z``, and a base-51 inode."""
    path = tmp_path / "long.log"
    generate(path, 3_000, seed=2, accounts=20, long_ids=True, stamps="rfc3339")
    parser = Parser()
    ids = [event.queue_id for event in map(parser, frame_all(path)) if event.kind == "queue_active"]
    assert len(ids) > 100
    assert all(LONG_ID.fullmatch(queue_id) for queue_id in ids), ids[:5]


def test_timeline_refuses_a_line_before_what_it_already_wrote():
    """Adding a line stamped before the written horizon is a generator bug and raises."""
    timeline = Timeline(io.StringIO(), "mail")
    timeline.add(100.0, "postfix/qmgr", 1, "x")
    timeline.advance(150.0)
    with pytest.raises(ValueError):
        timeline.add(120.0, "postfix/qmgr", 1, "y")


def test_overlapping_sessions_never_share_a_pid_and_idle_processes_are_reused():
    """A busy process is not handed out again; an idle one is, until it has idled too long."""
    import random

    processes = Processes(random.Random(1), first_pid=1000)
    first = processes.acquire("postfix/smtpd", 0.0, 10.0)
    overlapping = processes.acquire("postfix/smtpd", 5.0, 8.0)
    reused = processes.acquire("postfix/smtpd", 20.0, 21.0)
    expired = processes.acquire("postfix/smtpd", 500.0, 501.0)
    assert overlapping != first
    assert reused in (first, overlapping)
    assert expired not in (first, overlapping)


def test_queue_id_inode_is_not_reused_before_its_removal_time():
    """An inode stays taken until the generator's clock passes the message's removal."""
    import random

    clock = [0.0]
    ids = QueueIds(random.Random(1), lambda: clock[0])
    first = ids.new(1.5)
    ids.remove(first, 50.0)
    clock[0] = 10.0
    during = {ids.new(1.5)[5:] for _ in range(50)}
    assert first[5:] not in during


def test_networks_resolve_to_their_stored_country_and_asn():
    """Addresses drawn from each range resolve, in geoip2fast, to the stored country and ASN."""
    import random

    from geoip2fast import GeoIP2Fast

    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    rng = random.Random(4)
    for network in NETWORKS:
        for _ in range(3):
            found = geo.lookup(network.address(rng))
            assert (found.country_code, found.asn_name) == (network.country, network.asn)


def test_burst_golden_matches_the_committed_fixture(burst_case):
    """Rebuilding the burst scenario reproduces the golden file in fixtures."""
    _, golden = burst_case
    committed = json.loads((MAILLOGS / "scenarios" / "burst.golden.json").read_text())
    assert golden == committed


def test_burst_looks_like_a_stolen_password(burst_case):
    """The burst comes from 1-3 unnamed addresses with 32-character HELOs, 300-1000 an hour."""
    log, golden = burst_case
    (entry,) = golden["abusive"]
    parser = Parser()
    clients, helos, times, outcomes = set(), set(), [], Counter()
    abusive = set(entry["queue_ids"])
    for line in frame_all(log):
        event = parser(line)
        if (
            event.kind == "client"
            and event.sasl_username == entry["subject"]
            and event.queue_id in abusive
        ):
            clients.add((event.client_name, event.client_ip))
            times.append(line.ts)
        elif event.kind == "content_action" and event.queue_id in abusive:
            helos.add(event.helo)
        elif event.kind == "delivery" and event.queue_id in abusive:
            outcomes[event.status] += 1
    assert 1 <= len(clients) <= 3 and all(name == "unknown" for name, _ in clients)
    assert helos and all(re.fullmatch(r"[A-Z0-9]{32}", helo) for helo in helos)
    hours = (max(times) - min(times)).total_seconds() / 3600
    assert 300 <= len(times) / hours <= 1000
    assert times[0].isoformat(timespec="microseconds") == entry["first_abuse_ts"]
    pushed_back = outcomes["deferred"] + outcomes["bounced"]
    assert 0.2 <= pushed_back / sum(outcomes.values()) <= 0.5


def test_low_and_slow_spreads_over_many_countries(tmp_path):
    """The botnet case uses over 100 addresses in more than 20 countries, about 20 an hour."""
    from geoip2fast import GeoIP2Fast

    golden = scenario("low_and_slow", 1, tmp_path, accounts=40, history_days=1)
    (entry,) = golden["abusive"]
    parser = Parser()
    addresses, times = set(), []
    for line in frame_all(tmp_path / "low_and_slow.log"):
        event = parser(line)
        if (
            event.kind == "client"
            and event.sasl_username == entry["subject"]
            and line.ts.isoformat(timespec="microseconds") >= entry["first_abuse_ts"]
        ):
            addresses.add(event.client_ip)
            times.append(line.ts)
    geo = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz")
    countries = {geo.lookup(address).country_code for address in addresses}
    hours = (max(times) - min(times)).total_seconds() / 3600
    assert len(addresses) >= 100 and len(countries) > 20
    assert 10 <= len(times) / hours <= 30


def test_php_pickup_sends_as_uid_33_with_random_local_senders(tmp_path):
    """The PHP case is pickup uid=33 mail with many different senders at one customer domain."""
    golden = scenario("php_pickup", 1, tmp_path, accounts=40, history_days=1)
    uid, domain = golden["abusive"]
    abusive = set(uid["queue_ids"])
    parser = Parser()
    senders = set()
    for line in frame_all(tmp_path / "php_pickup.log"):
        event = parser(line)
        if event.kind == "pickup" and event.queue_id in abusive:
            assert event.uid == 33 and event.sender.endswith("@" + domain["subject"])
            senders.add(event.sender)
    assert len(senders) > 100


def test_every_case_and_the_demo_have_a_committed_golden():
    """Each scenario case has its golden file, and the demo log has one too."""
    for case in CASES:
        golden = json.loads((MAILLOGS / "scenarios" / f"{case}.golden.json").read_text())
        assert golden["case"] == case
        assert golden["abusive"] or golden["lookalikes"]
    assert (MAILLOGS / "demo" / "mail.golden.json").is_file()


def test_demo_log_is_what_the_generator_writes(tmp_path):
    """The committed demo log and golden are exactly what ``build_demo`` writes today."""
    golden = build_demo(tmp_path / "mail.log")
    assert (tmp_path / "mail.log").read_bytes() == (MAILLOGS / "demo" / "mail.log").read_bytes()
    committed = json.loads((MAILLOGS / "demo" / "mail.golden.json").read_text())
    assert golden == committed


def test_traveller_logs_in_from_abroad_only_on_the_last_day(tmp_path):
    """The traveller's sessions come from the hotel address on the last day and never before."""
    golden = scenario("traveller", 1, tmp_path, accounts=60, history_days=3)
    account, hotel = golden["lookalikes"]
    parser = Parser()
    abroad, at_home = set(), set()
    for line in frame_all(tmp_path / "traveller.log"):
        event = parser(line)
        if (event.kind == "client" and event.sasl_username == account) or (
            event.kind == "dovecot_login" and event.user == account
        ):
            ip = event.client_ip if event.kind == "client" else event.remote_ip
            (abroad if ip == hotel else at_home).add(line.ts.date().isoformat())
    assert abroad == {"2025-11-24"}
    assert len(at_home) >= 3


def test_ordinary_days_are_quieter_at_the_weekend(tmp_path):
    """Saturday and Sunday carry fewer submissions than Friday and Monday."""
    population = Population(9, accounts=80)
    out = io.StringIO()
    server = Server(out, 9, start=1763683200.0, local_domains=population.local_domains)
    server.run([Ordinary(server, population, 9).days(0, 4)])
    per_day = Counter(
        line[:6]
        for line in out.getvalue().splitlines()
        if "sasl_username=" in line and "client=" in line
    )
    friday, saturday, sunday, monday = (per_day[f"Nov {day}"] for day in (21, 22, 23, 24))
    assert saturday < 0.7 * min(friday, monday) and sunday < 0.7 * min(friday, monday)


def test_victims_are_ordinary_people():
    """The stolen-password victim is a person who sends a few messages a day."""
    import random

    population = Population(1, accounts=100)
    victim = abuse.pick_victim(population, random.Random(2))
    assert victim.kind == "person" and 1 <= victim.daily <= 8


def test_benchmark_log_is_reused_until_its_size_or_seed_changes(tmp_path):
    """``ensure`` keeps a log made with the same settings and remakes it when they change."""
    path = tmp_path / "bench.log"
    ensure(path, 2_000, 1, accounts=20)
    stamp = path.stat().st_mtime_ns
    path.write_text("kept\n", encoding="utf-8")  # a reused file is not rewritten
    ensure(path, 2_000, 1, accounts=20)
    assert path.read_text(encoding="utf-8") == "kept\n"
    ensure(path, 2_000, 2, accounts=20)
    assert path.read_text(encoding="utf-8") != "kept\n" and path.stat().st_mtime_ns >= stamp


def test_runner_reports_a_failing_command_instead_of_stopping():
    """A command that exits non-zero becomes a FAILED row carrying its last error line."""
    broken = ["sh", "-c", "echo no such option: --no-detect >&2; exit 2"]
    fine = ["sh", "-c", "exit 0"]
    failed, passed = measure([Job("broken", broken, 10), Job("fine", fine, 10)], 3)
    assert failed.walls == () and "no such option: --no-detect" in failed.error
    assert len(passed.walls) == len(passed.cpus) == 3 and not passed.error
    assert "FAILED" in table([failed], None)


def test_table_shows_speed_against_pflogsumm():
    """A replay that takes half of pflogsumm's time on the same log shows 2.00 (twice as fast)."""
    baseline = Result("pflogsumm", 1000, (4.0, 4.0, 4.0), 30.0, cpus=(3.9, 3.9, 3.9))
    fast = Result("postwatch parse+correlate", 1000, (2.0, 1.9, 2.1), 50.0, cpus=(3.5, 3.4, 3.6))
    other_log = Result("postwatch parse+correlate, 1/3 log", 333, (0.7,), 50.0)
    rows = table([fast, baseline, other_log], baseline).splitlines()
    assert rows[2].split()[-1] == "2.00"
    assert rows[2].split()[-4] == "3.50"  # CPU seconds beside the wall time
    assert rows[3].split()[-1] == "1.00"
    assert rows[4].split()[-1] == "-"  # another log: no ratio
