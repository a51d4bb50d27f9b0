"""Build hook: the C speedups, and an opt-in compiled build of the replay hot path.

``postwatch.parse._framing`` (the framer's hot path, ``postwatch/parse/_framing.c``) and
``postwatch.parse._shapes`` (the parser's commonest Postfix shapes) are built when a C
compiler and the Python headers are there; without them the build goes on without them
(``optional``) and framer and parser run in Python, giving the same results, slower.
With ``POSTWATCH_MYPYC=1`` the per-line path (framer, parser, correlator, tally,
pipeline, geography and the anomaly engine) is compiled to C extensions by mypyc, which
makes replay and watch faster (``make bench`` measures both builds)::

    pip install mypy setuptools wheel
    POSTWATCH_MYPYC=1 pip install --no-build-isolation .

Never combine it with an editable install (``-e``): the compiled modules would sit beside
their sources and keep running after the sources change.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import Extension, setup

# The C speedups: the framer's hot path, and the parser's commonest shapes.
SPEEDUPS = [
    Extension(f"postwatch.parse.{name}", [f"postwatch/parse/{name}.c"], optional=True)
    for name in ("_framing", "_shapes")
]

# Every module here is type-checked by mypy and must keep working when compiled: no
# identity tests on tuple values (mypyc may unbox and rebox them), annotations that hold.
COMPILED = [
    "postwatch/parse/__init__.py",
    "postwatch/parse/dovecot.py",
    "postwatch/parse/envelope.py",
    "postwatch/parse/postfix.py",
    "postwatch/parse/postscreen.py",
    "postwatch/parse/queue.py",
    "postwatch/parse/smtpd.py",
    "postwatch/parse/syslog.py",
    "postwatch/correlate.py",
    "postwatch/tally.py",
    "postwatch/pipeline.py",
    "postwatch/geo.py",
    "postwatch/halves.py",
    # the engine's modules; the worker (fork and pipes, not per-line work) stays Python
    *sorted(
        str(path) for path in Path("postwatch/detect").glob("[!_]*.py") if path.name != "worker.py"
    ),
]


def ext_modules() -> list[object]:
    """The C speedups, and the mypyc extensions when ``POSTWATCH_MYPYC`` asks for them."""
    extensions: list[object] = list(SPEEDUPS)
    if os.environ.get("POSTWATCH_MYPYC", "").lower() not in {"1", "yes", "true"}:
        return extensions
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise SystemExit(
            "POSTWATCH_MYPYC=1 needs mypy in the build environment: "
            "pip install mypy setuptools wheel, then pip install --no-build-isolation ."
        ) from exc
    return [*extensions, *mypycify(COMPILED, opt_level="3", group_name="postwatch_native")]


setup(ext_modules=ext_modules())
