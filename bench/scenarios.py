"""Detection scenarios: ordinary history first, then abuse or a look-alike, plus golden files.

Every case replays the same population: a few hundred accounts with four days of ordinary
history (Friday to Monday: office hours, quiet weekend, evening senders, business batches,
webmail, phones, background noise), then day five (Tuesday) with the case's event.
Abusive cases: ``burst``, ``low_and_slow``, ``credential_stuffing``, ``php_pickup``,
``brute_force``, and the quieter habits ``webmail_spam`` (a stolen password used through
the webmail, 127.0.0.1), ``home_proxy`` (a residential proxy in the victim's own country),
``imap_then_smtp`` (an IMAP check from one country, spam from a server elsewhere) and
``forged_senders`` (a login sending as other domains' addresses).  Look-alikes that must
raise nothing: ``newsletter`` (1,000+ a day from one server, every day), ``traveller`` (a
new country on day five, usual mail), ``mobile`` (every session from another address of
one carrier), ``office_nat`` (a dozen accounts behind one address), ``webmail`` (users on
127.0.0.1), ``new_account`` (no history, a busy first day), ``invoice_run`` (300+ invoices
within the hour, once in the history too), ``stale_list`` (one message to an old list: a
burst of bounces), ``list_server`` (a list manager through ``sendmail``, 1,000+ a day) and
``vacation`` (a Sieve vacation notice, from ``<>`` through ``sendmail``, to each sender).

Logs are RFC 3339 in UTC with microseconds, so golden times are exact strings of the log.
They are too large to commit: :func:`build_scenario` writes ``<case>.log`` and
``<case>.golden.json`` into a directory; ``fixtures/maillogs/scenarios/`` holds the goldens
for the default seed, and ``python -m bench.scenarios --goldens DIR`` rewrites them.
``python -m bench.scenarios demo`` writes the small demo log (one day, traditional stamps).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from calendar import timegm
from pathlib import Path
from typing import Any

from bench import abuse, lookalikes, quiet_abuse
from bench.episode import Episode, StolenLogin
from bench.networks import WEBMAIL_IP, network
from bench.ordinary import Ordinary
from bench.population import DAY, Population
from bench.timeline import iso
from bench.traffic import Server, Source

ABUSIVE = (
    "burst",
    "low_and_slow",
    "credential_stuffing",
    "php_pickup",
    "brute_force",
    "webmail_spam",
    "home_proxy",
    "imap_then_smtp",
    "forged_senders",
)
LOOKALIKES = (
    "newsletter",
    "traveller",
    "mobile",
    "office_nat",
    "webmail",
    "new_account",
    "invoice_run",
    "stale_list",
    "list_server",
    "vacation",
)
BURSTS = ("burst", "webmail_spam", "home_proxy")  # hundreds an hour: stopped within 10
CASES = ABUSIVE + LOOKALIKES
DEFAULT_SEED = 1
HISTORY_DAYS = 4
START = float(timegm((2025, 11, 21, 0, 0, 0)))  # Friday 00:00 UTC: history Fri..Mon
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "maillogs"

NOTES = {
    "burst": "A stolen submission password used from 1-3 foreign addresses without reverse "
    "DNS, random 32-character HELOs (logged by the sender-cleanup header check), "
    "several hundred messages an hour to random freemail addresses; about a third "
    "are deferred or bounced.",
    "low_and_slow": "A stolen password shared by a botnet: over a hundred addresses in 20+ "
    "countries, one or two messages each, about 20 messages an hour.",
    "credential_stuffing": "One rented server fails to log in as many accounts, then logs "
    "in as the victim with a leaked password and sends modest spam. "
    "The accounts it only failed on are look-alikes: failed logins "
    "alone never justify locking an account.",
    "php_pickup": "An exploited PHP script on a customer's site sends spam through sendmail: "
    "pickup uid=33 with random senders at the customer's domain.  uid 33 also "
    "sends the site's ordinary contact-form mail every day.",
    "brute_force": "SASL password guessing from a few addresses over many user names, "
    "never successful.  The targeted accounts are look-alikes: they must not "
    "be locked.",
    "newsletter": "A shop's newsletter: over a thousand messages a day from one rented "
    "server, every day of the history as well.",
    "traveller": "A customer spends day five abroad: laptop on hotel WiFi in another "
    "country, phone roaming on the home carrier, usual volume and recipients.",
    "mobile": "A field worker sends only from a phone: every session from another address "
    "of the same mobile carrier.",
    "office_nat": "Twelve accounts of one company all send from the office's one address.",
    "webmail": "Customers who only use the webmail: all their sessions come from 127.0.0.1.",
    "webmail_spam": "A stolen password used through the webmail: every session an IMAP login "
    "and a submission over 127.0.0.1 with the webmail's HELO, several hundred messages an "
    "hour to harvested freemail addresses; many are deferred or bounced.",
    "home_proxy": "A stolen password used through a residential proxy service in the "
    "victim's own country: every session from another home or mobile address there, with a "
    "mail client's HELO, a few hundred messages an hour to harvested freemail addresses.",
    "imap_then_smtp": "The stolen password is checked with two or three IMAP logins from a "
    "home address abroad; 20-90 minutes later a rented server elsewhere sends about a "
    "hundred messages an hour, its HELO its own reverse name or address literal.",
    "forged_senders": "A stolen login sends from a rented server in the victim's country "
    "(proper reverse name, matching HELO) with a forged envelope sender at another domain "
    "on every message, about a hundred an hour.",
    "new_account": "A new colleague's mailbox, opened on day five: no history, 30-60 "
    "messages on the first day from the office desktop and the phone, many to people "
    "written to for the first time.",
    "invoice_run": "An accounting mailbox that sends a few messages a day, and 300+ invoices "
    "to its customers within the hour from the office desktop: once in the history (day "
    "two) and again on day five.",
    "stale_list": "A member writes to an old address list: one or two messages to 40-80 "
    "people never written to before, half of whom no longer exist (most platforms bounce "
    "them as unknown users, some accept everything).",
    "list_server": "A mailing list manager posting through sendmail as its own uid: a few "
    "lists, one message per subscriber, 1,000+ messages a day, every day.",
    "vacation": "A busy mailbox on vacation on day five: its Sieve script answers 300-600 "
    "senders, each once, from <> through sendmail as the mail uid (which never sent before), "
    "as their mail is delivered; about 40% is spam with forged senders and half of those "
    "notices bounce.",
}


TRUTH_NOTE = (
    "  first_abuse_ts is the stamp of the first abusive line (the client= or pickup line of "
    "the first message; for an address, its first failed login); queue_ids lists every "
    "abusive message."
)


def _subject_entries(episode: Episode) -> list[dict[str, Any]]:
    entries = []
    for entry in episode.truth():
        first = entry["first_abuse_ts"]
        entries.append({**entry, "first_abuse_ts": iso(first) if first is not None else None})
    return entries


def scenario(
    case: str,
    seed: int,
    out_dir: Path,
    *,
    accounts: int = 200,
    history_days: int = HISTORY_DAYS,
    stamps: str = "rfc3339",
) -> dict[str, Any]:
    """Write ``<case>.log`` into ``out_dir`` and return its golden record."""
    if case not in CASES:
        raise ValueError(f"unknown scenario {case!r}; known: {', '.join(CASES)}")
    population = Population(seed, accounts=accounts)
    rng = random.Random(f"{seed}:{case}")
    harmless: list[str] = []
    if case == "newsletter":
        account = lookalikes.newsletter_account(population, rng)
        population.add([account])
        harmless += [account.address, account.server_ip]
    elif case == "mobile":
        account = lookalikes.phone_only_account(population, rng)
        population.add([account])
        harmless.append(account.address)
    elif case == "office_nat":
        staff = lookalikes.office_accounts(population, rng)
        population.add(staff)
        harmless += [account.address for account in staff] + [staff[0].office_ip]
    elif case == "webmail":
        users = lookalikes.webmail_accounts(population, rng)
        population.add(users)
        harmless += [account.address for account in users] + [WEBMAIL_IP]
    attack_day = history_days
    end = START + (history_days + 1) * DAY
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{case}.log"
    with path.open("w", encoding="utf-8", newline="\n") as out:
        server = Server(
            out, seed, start=START, end=end, stamps=stamps, local_domains=population.local_domains
        )
        ordinary = Ordinary(server, population, seed, scale_inbound=0.5, scale_imap=0.5)
        episode = _episode(case, server, population, rng, attack_day)
        if case == "traveller":
            traveller = abuse.pick_victim(population, rng)
            while traveller.country != "DE" or len(traveller.devices) < 2:
                traveller = abuse.pick_victim(population, rng)
            hotel = ordinary.send_abroad(
                traveller, attack_day, network("ES", "Telefonica De Espana S.a.u."), rng
            )
            harmless += [traveller.address, hotel]
        sources: list[Source] = [ordinary.days(0, history_days + 1)]
        if episode is not None:
            sources.append(episode.sessions())
        sources += _lookalike_sources(case, server, ordinary, population, rng, harmless)
        server.run(sources, until=end)
    abusive = _subject_entries(episode) if episode is not None else []
    if isinstance(episode, abuse.BruteForce):
        harmless += episode.targets
    if isinstance(episode, abuse.CredentialStuffing):
        harmless += episode.usernames
    return {
        "case": case,
        "seed": seed,
        "accounts": len(population.accounts),
        "start": iso(START),
        "end": iso(end),
        "abusive": abusive,
        "lookalikes": harmless,
        "notes": NOTES[case] + (TRUTH_NOTE if abusive else ""),
    }


# Stolen logins that send a while at a steady rate: the episode, then the ranges its start
# hour, its length in hours and its messages an hour are drawn from.
SENDING_RUNS: dict[
    str, tuple[type[StolenLogin], tuple[float, float], tuple[float, float], tuple[int, int]]
] = {
    "webmail_spam": (quiet_abuse.WebmailSpam, (10, 15), (1.2, 2.0), (300, 700)),
    "home_proxy": (quiet_abuse.HomeProxy, (15, 19), (1.5, 2.5), (150, 400)),
    "imap_then_smtp": (quiet_abuse.ImapThenSmtp, (1, 4), (1.2, 2.0), (60, 150)),
}


def _episode(
    case: str, server: Server, population: Population, rng: random.Random, day: int
) -> Episode | None:
    if case == "burst":
        return abuse.Burst(
            server,
            rng,
            abuse.pick_victim(population, rng),
            abuse.day_start(server, day, rng.uniform(1.5, 3.5)),
            hours=rng.uniform(1.2, 2.0),
            per_hour=rng.randint(300, 1000),
            addresses=rng.randint(1, 3),
        )
    if case == "low_and_slow":
        return abuse.LowAndSlow(
            server,
            rng,
            abuse.pick_victim(population, rng),
            abuse.day_start(server, day, rng.uniform(5, 7)),
            addresses=rng.randint(110, 190),
        )
    if case == "credential_stuffing":
        return abuse.CredentialStuffing(
            server,
            rng,
            population,
            abuse.pick_victim(population, rng),
            abuse.day_start(server, day, rng.uniform(9, 12)),
        )
    if case == "php_pickup":
        return abuse.PhpPickup(
            server, rng, population.domains[5], abuse.day_start(server, day, rng.uniform(13, 16))
        )
    if case == "brute_force":
        return abuse.BruteForce(
            server, rng, population, abuse.day_start(server, day, rng.uniform(19, 21))
        )
    if case in SENDING_RUNS:
        episode, start, hours, rate = SENDING_RUNS[case]
        return episode(
            server,
            rng,
            abuse.pick_victim(population, rng),
            abuse.day_start(server, day, rng.uniform(*start)),
            hours=rng.uniform(*hours),
            per_hour=rng.randint(*rate),
        )
    if case == "forged_senders":
        return quiet_abuse.ForgedSenders(
            server,
            rng,
            population,
            abuse.pick_victim(population, rng),
            abuse.day_start(server, day, rng.uniform(9, 12)),
            hours=rng.uniform(1.2, 2.0),
            per_hour=rng.randint(60, 200),
        )
    return None


def _lookalike_sources(
    case: str,
    server: Server,
    ordinary: Ordinary,
    population: Population,
    rng: random.Random,
    harmless: list[str],
) -> list[Source]:
    """Sessions of the look-alikes that are not part of the ordinary days."""
    day = HISTORY_DAYS
    if case == "new_account":
        account = lookalikes.new_account(population, rng)
        harmless.append(account.address)
        return [lookalikes.FirstDay(ordinary, account, day, rng).sessions()]
    if case == "invoice_run":
        account = lookalikes.invoicing_account(population, rng)
        population.add([account])  # before the first ordinary day is planned
        harmless.append(account.address)
        return [lookalikes.InvoiceRun(server, account, (1, day), rng).sessions()]
    if case == "stale_list":
        writer = abuse.pick_victim(population, rng)
        harmless.append(writer.address)
        return [lookalikes.StaleList(ordinary, writer, day, rng).sessions()]
    if case == "list_server":
        lists = lookalikes.ListServer(server, population, rng)
        harmless += [str(lists.uid), lists.domain]
        return [lists.sessions()]
    if case == "vacation":
        away = abuse.pick_victim(population, rng)
        notices = lookalikes.Vacation(server, away, day, rng)
        harmless += [away.address, str(notices.uid)]
        return [notices.sessions()]
    return []


def build_scenario(case: str, seed: int, out_dir: Path, **options: Any) -> Path:
    """Write ``<case>.log`` and ``<case>.golden.json`` into ``out_dir``; return the log."""
    golden = scenario(case, seed, Path(out_dir), **options)
    write_golden(Path(out_dir) / f"{case}.golden.json", golden)
    return Path(out_dir) / f"{case}.log"


def write_golden(path: Path, golden: dict[str, Any]) -> None:
    """JSON with one key per line, but lists of strings (queue IDs) kept on one line."""
    text = json.dumps(golden, indent=1)
    text = _STRING_LIST.sub(
        lambda match: (
            "["
            + ", ".join(
                item.strip().rstrip(",") for item in match.group(1).splitlines() if item.strip()
            )
            + "]"
        ),
        text,
    )
    path.write_text(text + "\n", encoding="utf-8")


_STRING_LIST = re.compile(r'\[\n((?:\s*"[^"\n]*",?\n)+)\s*\]')


def build_demo(path: Path, seed: int = 7) -> dict[str, Any]:
    """A day of a small hosting server: one burst from a stolen password, one brute forcer."""
    population = Population(seed, accounts=14, businesses=0)
    rng = random.Random(f"{seed}:demo")
    start = START + 4 * DAY
    end = start + DAY
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as out:
        server = Server(out, seed, start=start, end=end, local_domains=population.local_domains)
        ordinary = Ordinary(
            server, population, seed, scale_noise=0.5, scale_inbound=0.6, scale_imap=0.5
        )
        burst = abuse.Burst(
            server,
            rng,
            abuse.pick_victim(population, rng),
            start + 3600 * 10.25,
            hours=0.5,
            per_hour=300,
            addresses=1,
        )
        brute = abuse.BruteForce(
            server, rng, population, start + 3600 * 15.5, hours=0.75, addresses=1
        )
        server.run([ordinary.days(0, 1), burst.sessions(), brute.sessions()], until=end)
    return {
        "case": "demo",
        "seed": seed,
        "abusive": _subject_entries(burst) + _subject_entries(brute),
        "lookalikes": brute.targets,
        "notes": "Traditional syslog stamps in UTC.  "
        + NOTES["burst"]
        + "  "
        + NOTES["brute_force"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scenarios", description="Write detection scenario logs and goldens."
    )
    parser.add_argument(
        "cases", nargs="*", default=list(CASES), help=f"cases ({', '.join(CASES)}) or 'demo'"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path(".bench/scenarios"),
        help="directory for the logs and goldens",
    )
    parser.add_argument(
        "--goldens",
        type=Path,
        default=None,
        help="also copy each golden here (fixtures/maillogs/scenarios)",
    )
    args = parser.parse_args(argv)
    for case in args.cases:
        if case == "demo":
            demo = FIXTURES / "demo" / "mail.log"
            write_golden(demo.with_name("mail.golden.json"), build_demo(demo))
            print(f"demo: {demo}", file=sys.stderr)
            continue
        golden = scenario(case, args.seed, args.output)
        write_golden(args.output / f"{case}.golden.json", golden)
        if args.goldens is not None:
            args.goldens.mkdir(parents=True, exist_ok=True)
            write_golden(args.goldens / f"{case}.golden.json", golden)
        print(f"{case}: {args.output / f'{case}.log'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
