"""``postwatch watch``: follow the live mail log forever, and never count a line twice.

The command reads the config, builds the pipeline (:func:`~postwatch.pipeline.build_pipeline`)
with its store and actions, and hands it to :func:`open_watch`, which locks the state
directory, restores the last commit and opens the sources (files, the journal) into a
:class:`~postwatch.watcher.Watcher`; a :class:`~postwatch.watcher.Waker` runs its loop until
a signal stops it.  How lines are counted exactly once is told in :mod:`postwatch.watcher`.

Reload (SIGHUP, systemd's ``ExecReload``) applies the new config the way a restart would,
without a new process.  The file is checked as ``postwatch config check`` checks it (and a
database or state directory it changes must open); a broken one is reported in one line,
``file:line: key: message``, and the old one kept.  A good one: the current batch is
finished, the checkpoint committed and the store flushed as SIGTERM does, every descriptor
closed (the state directory's lock, the sources, journalctl, the store, the notify socket;
what Python opens is close-on-exec anyway), then the same command line is executed again
(:func:`restart_argv`: this interpreter with its options, then ``-m postwatch ...`` or the
``postwatch`` script, and the arguments) in the same process, so systemd keeps tracking the
same PID: RELOADING=1 before, READY=1 from the new program once it has started.  It resumes
from the committed checkpoint and loads profiles and open incidents from the store, so no
line is lost or read twice; only the in-memory windows of the detector (recent failures,
per-window counts) start empty, exactly as after ``systemctl restart``.  The config sets
everything again: thresholds, actions, the store, the state directory.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any, NamedTuple

import click

from postwatch.clock import Clock, SystemClock, zone
from postwatch.errors import ConfigError, PostwatchError, UsageError
from postwatch.pipeline import Pipeline
from postwatch.sdnotify import Notifier
from postwatch.sources.follow import JournalFollower
from postwatch.status import Checkpoint, JsonCheckpoint, StatusFile, lock_state_dir, restore
from postwatch.watcher import POLL_INTERVAL, FileSource, Source, Waker, Watcher


class JournalOptions(NamedTuple):
    units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    executable: str = "journalctl"


def open_watch(
    paths: Sequence[str],
    *,
    state_dir: Path,
    pipeline: Pipeline,
    journal: JournalOptions | None = None,
    tz: tzinfo | None = None,
    clock: Clock | None = None,
    from_start: bool = False,
    notifier: Notifier | None = None,
    checkpoint: Checkpoint | None = None,
    **loop: Any,
) -> Watcher:
    """Lock the state directory, restore the last commit into ``pipeline``, open the sources.

    A source without a saved position starts at the end of its file (``from_start``: at
    its first byte); a file that appears later is read from its first byte.  Positions of
    sources no longer given are dropped at the next commit.
    """
    clock = clock or SystemClock()
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = lock_state_dir(state_dir)
    except OSError as exc:
        raise UsageError(f"cannot use state directory {state_dir}: {exc.strerror or exc}") from exc
    try:
        checkpoint = checkpoint or JsonCheckpoint(state_dir, clock)
        saved = checkpoint.load()
        if saved is not None and saved.state is not None:
            restore(pipeline, saved.state)
        positions = saved.positions if saved is not None else {}
        sources: list[Source] = []
        for path in paths:
            key = f"file:{os.path.abspath(path)}"
            if all(source.key != key for source in sources):  # the same file given twice
                sources.append(
                    FileSource(path, positions.get(key), tz=tz, clock=clock, from_start=from_start)
                )
        if journal is not None:
            saved = positions.get(JournalFollower.key)
            cursor = saved.get("cursor") if isinstance(saved, dict) else None
            sources.append(
                JournalFollower(
                    cursor if isinstance(cursor, str) else None,
                    units=journal.units,
                    identifiers=journal.identifiers,
                    from_start=from_start,
                    executable=journal.executable,
                    clock=clock,
                )
            )
    except BaseException:
        os.close(lock)
        raise
    return Watcher(
        sources,
        pipeline,
        checkpoint,
        clock=clock,
        notifier=notifier,
        status=StatusFile(state_dir, clock),
        on_close=lambda: os.close(lock),
        **loop,
    )


# --- the command -----------------------------------------------------------------------------


@click.command("watch")
@click.argument("files", nargs=-1)
@click.option("--journal", is_flag=True, help="Follow the systemd journal (journalctl).")
@click.option(
    "--unit",
    "units",
    multiple=True,
    metavar="UNIT",
    help="With --journal: only this unit (repeatable).",
)
@click.option(
    "--identifier",
    "identifiers",
    multiple=True,
    metavar="TAG",
    help="With --journal: only this syslog identifier (repeatable).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="TOML config file, reloaded on SIGHUP.",
)
@click.option(
    "--db", "db_url", metavar="URL", help="State database (default: SQLite in the state dir)."
)
@click.option("--dry-run", is_flag=True, help="Record what the actions would do; do none of it.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Checkpoint and status folder (default: the config's [store] state_dir).",
)
@click.option(
    "--tz", "tz_name", metavar="ZONE", help="Zone of stamps without one (default: local)."
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Read files met for the first time from their start, not their end.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(0.01, 10),
    default=POLL_INTERVAL,
    show_default=True,
    help="Seconds between polls of quiet files.",
)
@click.option(
    "--commit-interval",
    type=click.FloatRange(0, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between checkpoints (positions with state).",
)
@click.option(
    "--batch-lines",
    type=click.IntRange(1, 1_000_000),
    default=2000,
    show_default=True,
    help="Most lines read from one source per batch.",
)
def watch_command(
    files: tuple[str, ...],
    db_url: str | None,
    dry_run: bool,
    journal: bool,
    units: tuple[str, ...],
    identifiers: tuple[str, ...],
    config_path: str | None,
    state_dir: Path | None,
    tz_name: str | None,
    from_start: bool,
    poll_interval: float,
    commit_interval: float,
    batch_lines: int,
) -> None:
    """Follow live logs (or the journal) forever; alerts as JSON lines on stdout."""
    from postwatch.config import load_settings
    from postwatch.detect import Detector
    from postwatch.pipeline import build_pipeline
    from postwatch.store.refresh import ProfileRefresh

    if not files and not journal:
        raise UsageError("watch: give the log files to follow, or --journal")
    if (units or identifiers) and not journal:
        raise UsageError("watch: --unit and --identifier need --journal")
    logging.basicConfig(level=logging.INFO, format="postwatch: %(levelname)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # not a line per migration step
    settings = load_settings(config_path)
    state = state_dir or settings.store.state_dir
    clock = SystemClock()
    store_url = _store_url(db_url, settings, state)
    if store_url != db_url:  # the default: SQLite in the state directory
        Path(state).mkdir(parents=True, exist_ok=True, mode=0o700)
    stages = build_pipeline(
        settings, clock=clock, store_url=store_url, act=not dry_run, on_alert=_print_alert
    )
    if stages.runner is not None:
        stages.runner.recover()  # finish what a crash left half done
    running_url = stages.store.url if stages.store is not None else None

    def reload() -> None:
        assert config_path is not None
        check_reload(config_path, db_url, state_dir, running=(state, running_url))

    refresh = None
    detector = stages.pipeline.detector
    if stages.store is not None and isinstance(detector, Detector):
        refresh = ProfileRefresh(stages.store, detector, clock).refresh
    watcher = open_watch(
        files,
        state_dir=state,
        pipeline=stages.pipeline,
        tz=zone(tz_name),
        journal=JournalOptions(units, identifiers) if journal else None,
        from_start=from_start,
        notifier=Notifier(),
        reload=reload if config_path else None,
        poll_interval=poll_interval,
        commit_interval=commit_interval,
        batch_lines=batch_lines,
        on_step=stages.runner.tick if stages.runner is not None else None,
        refresh=refresh,
        refresh_interval=settings.store.refresh_interval,
    )
    watcher.config = {"path": config_path or "", "loaded_at": clock.now().isoformat()}
    waker = Waker()
    waker.install(watcher)
    # The correlator's open messages are in the checkpoint and the store is flushed at each
    # commit: they are never flushed at exit (Stages.close would count them again when the
    # next start, or the re-executed program, carries them on from the checkpoint).
    try:
        watcher.run(waker.wait)
    finally:
        if watcher.restart:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # pending across exec
        waker.close()
        if stages.runner is not None:
            stages.runner.close()
        if stages.store is not None:
            stages.store.close()
    if watcher.restart:
        restart(restart_argv())


def _store_url(db_url: str | None, settings: Any, state: Path | str) -> str | None:
    """The database URL given to the store: ``--db``, ``$POSTWATCH_DB``, the config's, else
    SQLite in the state directory (None: the store resolves the first two itself)."""
    if db_url or os.environ.get("POSTWATCH_DB") or settings.store.url:
        return db_url
    return f"sqlite:///{Path(state).absolute() / 'postwatch.db'}"


def check_reload(
    config_path: str,
    db_url: str | None,
    state_dir: Path | None,
    *,
    running: tuple[Path | str, str | None],
) -> None:
    """Check ``config_path`` before a reload starts again with it: parse it and build what
    ``postwatch config check`` builds; a state directory or a database other than the
    ``running`` pair must open.  Raises :class:`PostwatchError` (a :class:`ConfigError`
    names file, line and key)."""
    from postwatch.configcheck import check_config
    from postwatch.configfile import find_key_line, read_text
    from postwatch.status import lock_state_dir
    from postwatch.store import Store
    from postwatch.store.database import resolve_url

    settings = check_config(config_path).settings
    state = state_dir or settings.store.state_dir
    running_state, running_url = running
    if Path(state).absolute() != Path(running_state).absolute():
        try:
            Path(state).mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(lock_state_dir(Path(state)))  # UsageError: another watch holds it
        except OSError as exc:
            keypath = ("store", "state_dir")
            raise ConfigError(
                f"cannot use state directory {state}: {exc.strerror or exc}",
                path=config_path,
                line=find_key_line(read_text(config_path), keypath),
                key=".".join(keypath),
            ) from exc
    if running_url is not None:
        url = resolve_url(_store_url(db_url, settings, state), settings.store)
        if url != running_url:
            Store(url, upgrade=False).close()  # a StoreError names the database


def restart_argv() -> list[str]:
    """The command line this process was started with, to run again: this interpreter and
    its options, then ``-m postwatch ...`` or the ``postwatch`` script, then the arguments."""
    if not sys.executable:
        raise PostwatchError("cannot start again: the Python interpreter's path is unknown")
    arguments = sys.orig_argv[1:] if hasattr(sys, "orig_argv") else sys.argv
    return [sys.executable, *arguments]


def restart(argv: list[str]) -> None:
    """Replace this process by ``argv`` (same PID); on failure, a :class:`PostwatchError`
    (exit 1, which a ``Restart=on-failure`` unit answers by starting it again)."""
    logging.getLogger(__name__).info("starting again in process %d", os.getpid())
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # what is buffered is lost by exec
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        raise PostwatchError(f"cannot start again {argv[0]}: {exc.strerror or exc}") from exc


def _print_alert(alert: Any) -> None:
    data = alert.to_json() if hasattr(alert, "to_json") else alert
    sys.stdout.write(json.dumps(data, separators=(",", ":"), default=str) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``watch`` alone (``python -m postwatch.watch``), errors mapped like the CLI's."""
    try:
        watch_command.main(list(argv) if argv is not None else None, standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PostwatchError as exc:
        sys.stderr.write(f"postwatch: error: {exc}\n")
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
