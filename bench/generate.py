"""The benchmark log: days of a busy hosting server's mail log, with abuse episodes inside.

``python -m bench.generate --lines 1500000 --seed 1 -o FILE`` writes at least ``--lines``
lines: a few hundred accounts with their habits (submission over 587/465, webmail, phones,
business senders, a daily newsletter), inbound mail behind postscreen with RBL/HELO/relay
rejects, cron and PHP mail through pickup, deliveries with deferrals and bounces, Dovecot
logins, internet background noise, and a handful of abuse episodes (a burst from a stolen
password, credential stuffing, a PHP form spamming through pickup, botnet low-and-slow
sending, SASL brute force).  The same seed and options give the same bytes.

:func:`ensure` regenerates only when the size, seed or generator version changed (a sidecar
``FILE.json`` records them), so the benchmark runner can call it every time.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from calendar import timegm
from pathlib import Path
from typing import Any

from bench import abuse, lookalikes
from bench.episode import Episode
from bench.ordinary import Ordinary
from bench.population import Population
from bench.traffic import Server, Source

GENERATOR_VERSION = 2  # bump whenever the output changes: cached logs are remade
START = float(timegm((2025, 11, 3, 0, 0, 0)))  # a Monday, 00:00 UTC


def generate(
    path: Path,
    lines: int,
    seed: int,
    *,
    accounts: int = 400,
    stamps: str = "traditional",
    long_ids: bool = False,
) -> dict[str, Any]:
    """Write the benchmark log to ``path``; returns counts and the abuse episodes' truth."""
    population = Population(seed, accounts=accounts)
    rng = random.Random(f"{seed}:lookalikes")
    population.add(
        [
            lookalikes.newsletter_account(population, rng),
            lookalikes.phone_only_account(population, rng),
        ]
    )
    population.add(lookalikes.office_accounts(population, rng))
    population.add(lookalikes.webmail_accounts(population, rng))
    path.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with path.open("w", encoding="utf-8", newline="\n") as out:
        server = Server(
            out,
            seed,
            start=START,
            stamps=stamps,
            long_ids=long_ids,
            local_domains=population.local_domains,
        )
        ordinary = Ordinary(server, population, seed)
        episodes = _episodes(server, population, seed)
        sources: list[Source] = [ordinary.days(0)]
        sources += [episode.sessions() for episode in episodes]
        server.run(sources, max_lines=lines)
    return {
        "lines": server.written,
        "seconds": round(time.monotonic() - began, 1),
        "episodes": [
            {"kind": episode.kind, "abusive": episode.truth()}
            for episode in episodes
            if episode.first_line
        ],
    }


def _episodes(server: Server, population: Population, seed: int) -> list[Episode]:
    """A handful of incidents spread over the days (later ones only in long logs)."""
    rng = random.Random(f"{seed}:episodes")
    victims = [abuse.pick_victim(population, rng) for _ in range(3)]
    shop = population.domains[5]
    return [
        abuse.BruteForce(
            server, random.Random(f"{seed}:brute"), population, abuse.day_start(server, 1, 22.5)
        ),
        abuse.Burst(
            server,
            random.Random(f"{seed}:burst"),
            victims[0],
            abuse.day_start(server, 2, 2.2),
            hours=1.5,
            per_hour=700,
        ),
        abuse.CredentialStuffing(
            server,
            random.Random(f"{seed}:stuffing"),
            population,
            victims[1],
            abuse.day_start(server, 4, 10.7),
        ),
        abuse.PhpPickup(
            server, random.Random(f"{seed}:php"), shop, abuse.day_start(server, 6, 14.1)
        ),
        abuse.LowAndSlow(
            server, random.Random(f"{seed}:slow"), victims[2], abuse.day_start(server, 8, 6.0)
        ),
        abuse.Burst(
            server,
            random.Random(f"{seed}:burst2"),
            victims[0],
            abuse.day_start(server, 11, 19.4),
            hours=1.0,
            per_hour=400,
            addresses=3,
        ),
    ]


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def ensure(path: Path, lines: int, seed: int, **options: Any) -> Path:
    """``path`` holding the benchmark log for these settings, generated only if needed."""
    wanted = {"lines": lines, "seed": seed, "version": GENERATOR_VERSION, **options}
    meta = _meta_path(path)
    if path.exists() and meta.exists():
        try:
            if json.loads(meta.read_text(encoding="utf-8")).get("settings") == wanted:
                return path
        except ValueError:
            pass
    result = generate(path, lines, seed, **options)
    meta.write_text(
        json.dumps({"settings": wanted, "result": result}, indent=1) + "\n", encoding="utf-8"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.generate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=1_500_000, help="at least this many lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--accounts", type=int, default=400)
    parser.add_argument("--stamps", choices=("traditional", "rfc3339"), default="traditional")
    parser.add_argument("--long-ids", action="store_true", help="enable_long_queue_ids=yes")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    result = generate(
        args.output,
        args.lines,
        args.seed,
        accounts=args.accounts,
        stamps=args.stamps,
        long_ids=args.long_ids,
    )
    summary = {key: value for key, value in result.items() if key != "episodes"}
    summary["episodes"] = [episode["kind"] for episode in result["episodes"]]
    print(json.dumps(summary), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
