"""The pipeline: sources -> parse -> correlate -> detect, with the tally beside.

``watch`` and ``replay`` both drive a :class:`Pipeline`; they differ only in where the lines
come from.  One bad line never stops it: an unexpected error is counted, logged once per kind
of error, and the next line is read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from postwatch.clock import Clock
from postwatch.correlate import Correlator
from postwatch.parse import Parser
from postwatch.parse.events import Event, Unparsed
from postwatch.records import LogLine
from postwatch.sources.files import batched
from postwatch.tally import Tally

log = logging.getLogger(__name__)


class Detector(Protocol):
    """What the pipeline needs of the anomaly engine.

    A detector with an ``accepts`` set of types is passed only items of those types; one
    without it (a tee that counts every line) is passed everything.  One that defers its
    errors (the forked one) sets ``failure``: :meth:`Pipeline.close` raises it.
    """

    def feed(self, item: object) -> list[Any]:
        """Take an event or a correlated record; return the alerts it raised."""
        ...

    def close(self, now: datetime | None) -> list[Any]:
        """End of input: return any last alerts."""
        ...


AlertSink = Callable[[Any], None]


class Pipeline:
    """Parse, correlate and detect, one line at a time."""

    def __init__(
        self,
        *,
        correlator: Correlator | None = None,
        detector: Detector | None = None,
        tally: Tally | None = None,
        on_alert: AlertSink | None = None,
    ) -> None:
        self.parser = Parser()
        self.correlator = correlator or Correlator()
        self.detector = detector
        self.tally = tally or Tally()
        self.on_alert = on_alert
        self.errors: Counter[str] = Counter()
        self.last_ts: datetime | None = None

    def run(self, lines: Iterable[LogLine]) -> None:
        """Process every line of ``lines`` (the caller closes the pipeline)."""
        self.run_batches(batched(lines))

    def run_batches(self, batches: Iterable[list[LogLine]]) -> None:
        """Process every line of ``batches``, lists of lines in log order.

        Each stage runs over a whole batch before the next one, while its code and data are
        still in the processor's caches: a replay in ``BATCH_LINES``-line batches takes
        about a tenth less time than line by line.  Order is kept: the correlator
        and the detector still see one line's event and records before the next line's.
        """
        for batch in batches:
            if batch:
                self._run_batch(batch)
                self.last_ts = batch[-1].ts

    def _run_batch(self, batch: list[LogLine]) -> None:
        events = self._parse(batch)
        self.tally.count_events(events)
        correlate = self.correlator.feed
        correlated = self.correlator.accepts
        count_record = self.tally.record
        detector = self.detector
        feed = detector.feed if detector is not None else None
        wanted: frozenset[type] | None = getattr(detector, "accepts", None)
        for line, event in zip(batch, events, strict=True):
            try:
                records = correlate(event) if type(event) in correlated else ()
                if feed is not None and (wanted is None or type(event) in wanted):
                    self._alerts(feed(event))
                for record in records:
                    count_record(record)
                    if feed is not None and (wanted is None or type(record) in wanted):
                        self._alerts(feed(record))
            except Exception as exc:  # one bad line never stops the pipeline
                self._error(line, exc)

    def _parse(self, batch: list[LogLine]) -> list[Event]:
        try:
            return self.parser.parse_all(batch)
        except Exception:  # the parser never raises: if it does, find the line, keep the rest
            events: list[Event] = []
            for line in batch:
                try:
                    events.append(self.parser(line))
                except Exception as exc:
                    self._error(line, exc)
                    events.append(Unparsed(line))
            return events

    def close(self) -> None:
        """End of input: flush the correlator and the detector."""
        for record in self.correlator.close(self.last_ts):
            self.tally.record(record)
            if self.detector is not None:
                self._alerts(self.detector.feed(record))
        if self.detector is not None:
            self._alerts(self.detector.close(self.last_ts))
            failure = getattr(self.detector, "failure", None)  # a forked detector's
            if failure is not None:
                raise failure

    def _alerts(self, alerts: list[Any]) -> None:
        if alerts and self.on_alert is not None:
            for alert in alerts:
                self.on_alert(alert)

    def _error(self, line: LogLine, exc: Exception) -> None:
        kind = type(exc).__name__
        self.errors[kind] += 1
        if self.errors[kind] == 1:
            log.error(
                "%s:%d: %s while processing a %s line: %s",
                line.origin or "-",
                line.lineno,
                kind,
                line.program or "unframed",
                exc,
            )


class Stages(NamedTuple):
    """What :func:`build_pipeline` made, for the caller to drive and close."""

    pipeline: Pipeline
    store: Any  # postwatch.store.Store | None
    runner: Any  # postwatch.actions.runner.ActionRunner | None

    def close(self) -> None:
        """Flush the pipeline, then close the store."""
        self.pipeline.close()
        if self.store is not None:
            self.store.close()


def build_pipeline(
    settings: Any,
    *,
    clock: Clock,
    detect: bool = True,
    store_url: str | None = None,
    use_store: bool = True,
    learn: bool = False,
    act: bool = False,
    on_alert: AlertSink | None = None,
    host: str = "",
    processes: int = 1,
) -> Stages:
    """Wire geo, store, detector and actions from ``settings`` (``postwatch.config.Settings``).

    ``use_store`` false keeps all state in memory; ``act`` false records what the actions
    would do (dry run) without doing it.  Alerts go to ``on_alert`` first, then to the
    action runner, which never raises.  ``processes`` 2 runs the detector in a child
    process (:mod:`postwatch.detect.worker`) when the machine allows it.
    """
    from postwatch.actions.settings import build_runner
    from postwatch.detect import Detector
    from postwatch.geo import Geo

    if not detect:
        return Stages(Pipeline(on_alert=on_alert), None, None)
    store = None
    if use_store:  # SQLAlchemy is imported only for a store
        from postwatch.store import Store

        store = Store.from_settings(settings.store, cli_url=store_url, host=host)
    detect_settings = settings.detect
    detector: Any = Detector(
        detect_settings, store, Geo.from_settings(settings.geo, detect_settings), clock, learn=learn
    )
    if processes > 1:  # before anything below can start a thread
        from postwatch.detect import worker

        detector = worker.start(detector, store) or detector
    runner = None
    sinks: list[AlertSink] = [on_alert] if on_alert is not None else []
    if not learn:
        runner = build_runner(
            settings.actions,
            clock=clock,
            journal_url=store.url if store is not None else "",
            dry_run=not act or settings.actions.dry_run,
            allow=detect_settings.allow,
            trusted_networks=detect_settings.trusted_networks,
            aliases=detect_settings.aliases,
        )
        sinks.append(runner.on_alert)

    def fan_out(alert: Any) -> None:
        for sink in sinks:
            sink(alert)

    return Stages(Pipeline(detector=detector, on_alert=fan_out), store, runner)
