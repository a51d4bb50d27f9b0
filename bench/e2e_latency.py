"""How fast a real Postfix + Dovecot under postwatch stops a stolen-password spam burst.

Runs the end-to-end scenario of ``tests/test_e2e.py`` several times on the same harness
(``tests/system/e2e.py``: Postfix and Dovecot on loopback, a relay sink, ``postwatch
watch`` as a subprocess) and prints, per run and as medians:

- the spam messages Postfix accepted from the attacker before the lock took effect;
- the seconds from the first spam message accepted to the first one refused.

Each run: a fresh postwatch state, a few seconds of ordinary mail from every user, then
the attacker sends with the stolen password until Postfix refuses him.  Needs root and the
Debian packages postfix and dovecot-core (``tests/system/install-packages.sh``)::

    .venv/bin/python -m bench.e2e_latency --runs 5
    .venv/bin/python -m bench.e2e_latency --runs 5 --interval 0.1   # 10 messages a second
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the harness lives with the tests

from system.e2e import (  # noqa: E402 - after the path is set
    SPAM_DOMAINS,
    MailSystem,
    Postwatch,
    Programs,
    attack,
    home_client,
    ordinary_mail,
)

VICTIM = "alice@example.com"
MIN_HISTORY = 3
MAX_SPAM = 1000


def locate(name: str, *candidates: str) -> str:
    """A program's path, or exit with the package to install."""
    for candidate in (name, *candidates):
        found = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if found:
            return found
    raise SystemExit(f"{name} is not installed: run sh tests/system/install-packages.sh")


def one_run(
    system: MailSystem, seed: int, *, interval: float, recipients: int
) -> tuple[int, float]:
    """(messages accepted before the lock, seconds from the first spam to the lock)."""
    rng = random.Random(seed)
    system.sink.greylisted.update(SPAM_DOMAINS)
    postwatch = Postwatch(system, min_history=MIN_HISTORY)
    postwatch.start()
    try:
        homes = {user: home_client(rng, user) for user in system.users}
        ordinary_mail(system, homes, rng, rounds=MIN_HISTORY + 2)
        postwatch.wait_caught_up()
        burst = attack(
            system,
            VICTIM,
            rng,
            messages=MAX_SPAM,
            recipients=recipients,
            interval=interval,
        )
        if burst.refused is None:
            raise SystemExit(
                f"run {seed}: {len(burst.accepted)} spam messages and no lock:\n"
                f"{postwatch.errors()}"
            )
        return len(burst.accepted), burst.seconds_to_lock
    finally:
        postwatch.stop()
        system.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="scenario runs (default 5)")
    parser.add_argument(
        "--interval",
        type=float,
        default=0.0,
        help="seconds between spam messages (default 0: as fast as Postfix answers)",
    )
    parser.add_argument("--recipients", type=int, default=10, help="per spam message")
    options = parser.parse_args(argv)
    accepted: list[int] = []
    seconds: list[float] = []
    with MailSystem(Programs.find(locate)) as system:
        for run in range(1, options.runs + 1):
            count, delay = one_run(
                system, run, interval=options.interval, recipients=options.recipients
            )
            accepted.append(count)
            seconds.append(delay)
            print(f"run {run}: {count} spam messages accepted, locked after {delay:.2f} s")
    pace = f"{1 / options.interval:g}/s" if options.interval else "as fast as accepted"
    print(
        f"median of {options.runs} runs ({options.recipients} recipients a message, {pace}): "
        f"{statistics.median(accepted):g} messages accepted before the lock, "
        f"{statistics.median(seconds):.2f} s from the first spam message to the lock"
    )


if __name__ == "__main__":
    main()
