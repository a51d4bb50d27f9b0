"""Anomaly detection: signals turn records into findings, findings add up to incidents.

``Detector(settings, store, geo, clock)`` is the stage the pipeline feeds; ``Alert`` is what
it returns.  See ``engine`` for the routing and ``incidents`` for the scoring rules.
"""

from postwatch.detect.alerts import Alert, Finding, Reason, Subject
from postwatch.detect.engine import Detector

__all__ = ["Alert", "Detector", "Finding", "Reason", "Subject"]
