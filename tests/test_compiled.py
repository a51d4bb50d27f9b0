"""The compiled build (``POSTWATCH_MYPYC=1``) says exactly what the pure-Python code says.

The build is made once per source state (``bench.compiled``, cached under ``.bench/``); it
needs gcc and the Python headers, which a fresh machine has.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_corpus import corpus_files

from bench import compiled
from bench.scenarios import build_scenario

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ["replay", "--json", "--year", "2025", "--tz", "UTC", "--no-progress"]


@pytest.fixture(scope="module")
def build() -> Path:
    return compiled.build(ROOT / ".bench")


def _run(argv: list[str], env: dict[str, str] | None, cwd: Path) -> str:
    result = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _both(build: Path, args: list[str], cwd: Path) -> tuple[str, str]:
    """(pure, compiled) stdout of ``postwatch ARGS``."""
    pure = _run([sys.executable, "-m", "postwatch", *args], None, ROOT)
    argv, env = compiled.command(build)
    return pure, _run([*argv, *args], env, cwd)


def test_the_per_line_path_is_really_compiled(build: Path, tmp_path: Path) -> None:
    """Framer and parser (and their C speedups), correlator and detector load as C
    extensions from the build."""
    argv, env = compiled.command(build)
    probe = "import postwatch.parse.syslog as a, postwatch.correlate as b, postwatch.detect.engine as c, postwatch.parse._framing as d, postwatch.parse._shapes as e; print(a.__file__, b.__file__, c.__file__, d.__file__, e.__file__)"
    argv = [*argv[:-1], probe]
    files = _run(argv, env, tmp_path).split()
    assert len(files) == 5
    assert all(name.endswith(".so") and name.startswith(str(build)) for name in files)


def test_alerts_and_summary_match_on_the_demo_and_scenarios(build: Path, tmp_path: Path) -> None:
    """Every alert, account and total of a replay with detection is the same, byte for byte."""
    logs = [str(ROOT / "fixtures/maillogs/demo/mail.log")]
    logs += [str(build_scenario(case, 2, tmp_path)) for case in ("burst", "newsletter")]
    logs += sorted(str(path) for path in (ROOT / "fixtures/maillogs/detect").glob("*.log"))
    outputs = {}
    for log in logs:
        pure, fast = _both(build, [*REPLAY, log], tmp_path)
        assert '"type":"totals"' in pure
        assert fast == pure, log
        outputs[log] = pure
    assert '"type":"alert"' in outputs[logs[1]]  # the burst is caught: alerts were compared


def test_every_real_corpus_line_parses_the_same(build: Path, tmp_path: Path) -> None:
    """Event counts per kind and unparsed lines per program agree on the whole real corpus."""
    files = [str(path) for path in corpus_files()]
    assert len(files) > 50, "the real corpus (../shared/corpus/real) is missing"
    pure, fast = _both(build, [*REPLAY, "--no-detect", *files], tmp_path)
    assert fast == pure
