"""The compiled build of postwatch (``POSTWATCH_MYPYC=1``, see ``setup.py``), made on demand.

``make bench`` measures it beside the pure-Python install, and the test suite checks that it
gives exactly the pure build's output.  The build needs mypy, setuptools and wheel in the
running interpreter (the ``test`` extra has them) and a C compiler.  It goes to
``DIR/compiled-HASH/``, where HASH covers every file the build reads, so a changed source
is rebuilt and an unchanged one is reused.

The wheel is unpacked, not installed: :func:`command` runs it with the running interpreter
(which has the dependencies) and the unpacked folder first on ``sys.path``, ``-P`` keeping
the working directory's own ``postwatch/`` out of the way.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD_FILES = ("setup.py", "pyproject.toml", "README.md")


def _sources() -> list[Path]:
    package = ROOT / "postwatch"
    return [ROOT / name for name in BUILD_FILES] + sorted(
        [*package.rglob("*.py"), *package.rglob("*.c")]
    )


def source_hash() -> str:
    """A digest of everything the compiled build is made from."""
    digest = hashlib.sha256()
    for path in _sources():
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(folder: Path) -> Path:
    """The unpacked compiled build under ``folder`` (built now unless already there)."""
    target = folder / f"compiled-{source_hash()}"
    if (target / "postwatch").is_dir():
        return target
    with tempfile.TemporaryDirectory(prefix="postwatch-build-") as scratch:
        tree = Path(scratch) / "src"
        tree.mkdir()
        for name in BUILD_FILES:
            shutil.copy2(ROOT / name, tree / name)
        shutil.copytree(
            ROOT / "postwatch",
            tree / "postwatch",
            ignore=shutil.ignore_patterns("__pycache__", "*.so"),
        )
        wheels = Path(scratch) / "wheels"
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation"]
        result = subprocess.run(
            [*pip, "--no-deps", "--wheel-dir", str(wheels), str(tree)],
            env={**os.environ, "POSTWATCH_MYPYC": "1"},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise RuntimeError(f"the compiled build failed:\n{tail}")
        (wheel,) = wheels.glob("postwatch-*.whl")
        unpacked = Path(scratch) / "unpacked"
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(unpacked)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("compiled-*"):
            shutil.rmtree(stale, ignore_errors=True)
        shutil.move(unpacked, target)
    return target


def command(target: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run the ``postwatch`` CLI of the build in ``target``."""
    argv = [sys.executable, "-P", "-c", "from postwatch.cli import main; main()"]
    return argv, {**os.environ, "PYTHONPATH": str(target)}
