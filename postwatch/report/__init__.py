"""``postwatch report``: what each login, local uid and attacking IP did over a span of time.

::

    log files --> Pipeline(Detector + Collector) --\\
                                                     +--> Report --> text | html | json
    state store (incidents, profiles, volumes) ----/        |
    action journal (locks) --------------------------------/     --send: Apprise

``collect`` gathers volumes beside the pipeline, ``build`` assembles the :class:`Report`
(``model``) from the logs and ``stored`` from the store (its hourly volumes included),
``text`` and ``html`` draw it, ``command`` is the click command.
"""

from postwatch.report.command import report_command

__all__ = ["report_command"]
