"""Latency of postwatch watch: from appending the line that crosses a threshold to its alert.

Usage: python -m bench.watch_latency fixtures/maillogs/demo/mail.log [--rate 500] [--poll-interval 0.1]
Prints p50/p90/p99 of the delay.  It measures the follow/batch/commit loop, not the detector.

A stub detector raises an alert on every SASL-authenticated submission (threshold 1), so the
alert for a marker line comes from the very batch that read it.  A writer thread appends real
log lines (background traffic at --rate lines/s) and, at random moments, a marker line; the
watch loop runs with its real clock, real poll/select waits and real checkpoint commits.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from postwatch.parse import events
from postwatch.pipeline import Pipeline
from postwatch.tally import Tally
from postwatch.watch import open_watch
from postwatch.watcher import Waker

parser = argparse.ArgumentParser()
parser.add_argument("corpus", type=Path)
parser.add_argument("--alerts", type=int, default=300)
parser.add_argument("--rate", type=float, default=500.0, help="background lines per second")
parser.add_argument("--poll-interval", type=float, default=0.2)
args = parser.parse_args()

lines = args.corpus.read_text(errors="replace").splitlines()
markers = [line for line in lines if "sasl_username=" in line]
background = [line for line in lines if "sasl_username=" not in line]
written: dict[str, float] = {}
alerted: dict[str, float] = {}


class ThresholdDetector:
    def feed(self, item: object) -> list[object]:
        if isinstance(item, events.ClientAccepted) and item.sasl_username:
            return [item.line.message]
        return []

    def close(self, now: object) -> list[object]:
        return []


def on_alert(message: object) -> None:
    alerted.setdefault(str(message), time.monotonic())


with tempfile.TemporaryDirectory() as folder:
    log = Path(folder) / "mail.log"
    log.write_bytes(b"")
    pipeline = Pipeline(tally=Tally(), detector=ThresholdDetector(), on_alert=on_alert)
    watcher = open_watch(
        [str(log)],
        state_dir=Path(folder) / "state",
        pipeline=pipeline,
        poll_interval=args.poll_interval,
    )

    def write() -> None:
        rng = random.Random(5)
        noise = iter(background * 100)
        with log.open("a") as stream:
            for number in range(args.alerts):
                pause = rng.uniform(0.05, 0.4)
                end = time.monotonic() + pause
                while time.monotonic() < end:  # background traffic in 10 ms slices
                    stream.write("".join(next(noise) + "\n" for _ in range(int(args.rate / 100))))
                    stream.flush()
                    time.sleep(0.01)
                marker = markers[number % len(markers)].replace(
                    "sasl_username=", f"sasl_username=m{number}."
                )
                stream.write(marker + "\n")
                stream.flush()
                written[marker.split(": ", 1)[1]] = time.monotonic()
        time.sleep(1.5)
        watcher.request_stop()

    writer = threading.Thread(target=write)
    waker = Waker()
    waker.install(watcher)
    writer.start()
    watcher.run(waker.wait)
    writer.join()
    waker.close()

delays = sorted(alerted[message] - when for message, when in written.items() if message in alerted)
missing = len(written) - len(delays)
quantiles = statistics.quantiles(delays, n=100)
print(
    f"poll {args.poll_interval}s, background {args.rate:.0f} lines/s, {len(delays)} alerts,"
    f" {missing} missing"
)
print(
    f"latency ms: p50 {quantiles[49] * 1000:.0f}  p90 {quantiles[89] * 1000:.0f}"
    f"  p99 {quantiles[98] * 1000:.0f}  max {delays[-1] * 1000:.0f}"
)
