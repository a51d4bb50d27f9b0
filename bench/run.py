"""The benchmark runner (``make bench``): replay speed and memory against pflogsumm.

Generates the benchmark log under ``.bench/`` (or reuses it when size and seed match), then
runs each command ``--repeat`` times as a child process, in rounds (every command once, then
again: a slow spell of a shared machine falls on all of them, not on one), and reports the
median wall time, the median CPU time (user + system, the child and what it waited for),
lines per second, peak resident memory (the child's ``ru_maxrss`` from ``os.wait4``: with the
detector in a second process, the larger of the two, which share the memory loaded before the
fork) and the ratio to pflogsumm's time:

- ``postwatch replay --no-detect --json LOG``  parse + correlate: in two halves of the log,
                                               one per process (:mod:`postwatch.halves`), on
                                               a machine with two cores or more
- ``... --no-detect --jobs 1 --json LOG``      the same, one process
- ``postwatch replay --jobs 1 --json LOG``     everything, detection included, one process
- ``postwatch replay --json LOG``              the same, detection in a second process on a
                                               machine with two cores or more
- ``pflogsumm LOG``                            the classic report, when installed

The replays run twice: with the pure-Python install, and with the compiled build
(``POSTWATCH_MYPYC=1``, made by :mod:`bench.compiled`; ``--no-compiled`` skips it).
The last column is the speed against pflogsumm: 2.00 means twice as fast.
The parse + correlate replay also runs on a log a third as long: its peak memory should be
about the same, showing that memory does not grow with the length of the log.
A command that fails is reported with the tail of its error output; the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from bench import compiled
from bench.generate import ensure

ROOT = Path(__file__).resolve().parents[1]
LOG_YEAR = "2025"  # the benchmark log's traditional stamps are in 2025, in UTC
GNU_TIME = "/usr/bin/time"


class Result(NamedTuple):
    name: str
    lines: int
    walls: tuple[float, ...]
    peak_rss_mb: float
    error: str = ""
    cpus: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.walls) if self.walls else float("nan")

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpus) if self.cpus else float("nan")


class Run(NamedTuple):
    wall: float  # seconds
    cpu: float  # user + system seconds of the child and the processes it waited for
    peak_rss_mb: float
    status: int
    stderr: str


def run_once(argv: Sequence[str], env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` with stdout to /dev/null.

    The peak comes from GNU time's ``%M`` when ``/usr/bin/time`` exists: a child's
    ``ru_maxrss`` also counts the memory of the process it was started from before ``exec``,
    here this Python runner, which would hide anything smaller.  Without it, ``os.wait4``'s
    figure is used and cannot go below the runner's own size.
    """
    with tempfile.TemporaryDirectory(prefix="bench-") as scratch:
        err_path = os.path.join(scratch, "stderr")
        rss_path = os.path.join(scratch, "rss")
        command = list(argv)
        if os.access(GNU_TIME, os.X_OK):
            command = [GNU_TIME, "-f", "%M", "-o", rss_path, *command]
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        began = time.perf_counter()
        try:
            pid = os.posix_spawnp(
                command[0], command, env or dict(os.environ), file_actions=actions
            )
        except OSError as exc:
            return Run(0.0, 0.0, 0.0, 127, f"{command[0]}: {exc.strerror}")
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - began
        code = os.waitstatus_to_exitcode(status)
        stderr = Path(err_path).read_text(encoding="utf-8", errors="replace")
        peak_kib = float(usage.ru_maxrss)  # KiB on Linux
        if os.path.exists(rss_path):
            last = Path(rss_path).read_text(encoding="utf-8").strip().splitlines()[-1:]
            if last and last[0].isdigit():
                peak_kib = float(last[0])
    return Run(wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024.0, code, stderr)


class Job(NamedTuple):
    name: str
    argv: list[str]
    lines: int
    env: dict[str, str] | None = None


def measure(jobs: Sequence[Job], repeat: int) -> list[Result]:
    """Run every job ``repeat`` times, in rounds; a job that fails is not run again."""
    results = [Result(job.name, job.lines, (), 0.0) for job in jobs]
    for round_number in range(1, repeat + 1):
        print(f"round {round_number} of {repeat}", file=sys.stderr)
        for index, job in enumerate(jobs):
            result = results[index]
            if result.error:
                continue
            run = run_once(job.argv, job.env)
            if run.status != 0:
                tail = " | ".join(run.stderr.strip().splitlines()[-3:]) or "(no error output)"
                error = f"exit status {run.status}: {' '.join(job.argv)}: {tail}"
                results[index] = result._replace(error=error)
                continue
            results[index] = result._replace(
                walls=(*result.walls, run.wall),
                cpus=(*result.cpus, run.cpu),
                peak_rss_mb=max(result.peak_rss_mb, run.peak_rss_mb),
            )
            print(
                f"  {job.name}: {run.wall:.2f} s, CPU {run.cpu:.2f} s, {run.peak_rss_mb:.0f} MB",
                file=sys.stderr,
            )
    return results


def postwatch_command() -> list[str]:
    """How to start postwatch: the virtualenv's script, else ``python -m postwatch``."""
    script = Path(sys.executable).with_name("postwatch")
    if script.exists():
        return [str(script)]
    found = shutil.which("postwatch")
    return [found] if found else [sys.executable, "-m", "postwatch"]


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def table(results: Sequence[Result], baseline: Result | None) -> str:
    """The report: one row per command."""
    header = (
        f"{'command':<34} {'lines':>10} {'median s':>9} {'CPU s':>7} {'lines/s':>10} "
        f"{'peak MB':>8} {'vs pflogsumm':>12}"
    )
    rows = [header, "-" * len(header)]
    for result in results:
        if result.error:
            rows.append(f"{result.name:<34} FAILED  {result.error}")
            continue
        rate = result.lines / result.median if result.median > 0 else float("nan")
        comparable = (
            baseline is not None
            and not baseline.error
            and baseline.median > 0
            and baseline.lines == result.lines
        )
        ratio = f"{baseline.median / result.median:.2f}" if comparable and baseline else "-"
        rows.append(
            f"{result.name:<34} {result.lines:>10} {result.median:>9.2f} "
            f"{result.cpu_median:>7.2f} {rate:>10.0f} {result.peak_rss_mb:>8.0f} {ratio:>12}"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--lines", type=int, default=1_500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=ROOT / ".bench")
    parser.add_argument("--no-compiled", action="store_true", help="Skip the compiled build.")
    args = parser.parse_args(argv)

    print(f"generating (or reusing) the logs in {args.dir} ...", file=sys.stderr)
    big = ensure(args.dir / f"bench-{args.lines}-{args.seed}.log", args.lines, args.seed)
    small = ensure(
        args.dir / f"bench-{args.lines // 3}-{args.seed}.log", args.lines // 3, args.seed
    )
    big_lines, small_lines = count_lines(big), count_lines(small)
    options = ["replay", "--tz", "UTC", "--year", LOG_YEAR, "--no-progress"]
    builds: list[tuple[str, list[str], dict[str, str] | None]] = [
        ("postwatch", postwatch_command(), None)
    ]
    if not args.no_compiled:
        print("building (or reusing) the compiled build ...", file=sys.stderr)
        builds.append(("compiled", *compiled.command(compiled.build(args.dir))))
    jobs: list[Job] = []
    for label, start, env in builds:
        replay = [*start, *options]
        jobs += [
            Job(f"{label} parse+correlate", [*replay, "--no-detect", "--json", str(big)], big_lines, env),
            Job(f"{label} parse+correlate, one process", [*replay, "--no-detect", "--jobs", "1", "--json", str(big)], big_lines, env),
            Job(f"{label} full, one process", [*replay, "--jobs", "1", "--json", str(big)], big_lines, env),
            Job(f"{label} full (with detection)", [*replay, "--json", str(big)], big_lines, env),
        ]  # fmt: skip
    pflogsumm = shutil.which("pflogsumm")
    if pflogsumm:
        jobs.append(Job("pflogsumm", [pflogsumm, str(big)], big_lines))
    else:
        print("pflogsumm is not on PATH (Debian package pflogsumm): no baseline", file=sys.stderr)
    replay = [*builds[-1][1], *options]
    jobs.append(
        Job(
            f"{builds[-1][0]} parse+correlate, 1/3 log",
            [*replay, "--no-detect", "--json", str(small)],
            small_lines,
            builds[-1][2],
        )
    )

    results = measure(jobs, args.repeat)
    baseline = next((result for result in results if result.name == "pflogsumm"), None)
    print(table(results, baseline))
    label = builds[-1][0]
    full = next(result for result in results if result.name == f"{label} parse+correlate")
    third = results[-1]
    if not full.error and not third.error:
        print(
            f"\npeak memory, parse+correlate: {full.peak_rss_mb:.0f} MB on {big_lines} "
            f"lines, {third.peak_rss_mb:.0f} MB on {small_lines} lines"
        )
    report: dict[str, Any] = {
        "log": str(big),
        "lines": big_lines,
        "seed": args.seed,
        "results": [
            {**result._asdict(), "median": result.median, "cpu_median": result.cpu_median}
            for result in results
        ],
    }
    (args.dir / "results.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
