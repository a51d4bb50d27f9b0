"""Packaging: the systemd unit passes systemd's own checks; the wheel installs and runs."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import REPO, require_program

from postwatch import __version__
from postwatch.configcheck import check_config

UNIT = REPO / "contrib" / "systemd" / "postwatch.service"
SAMPLE = REPO / "contrib" / "postwatch.toml"
INSTALLED = "/usr/local/bin/postwatch"  # the unit's ExecStart program


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of the unit, values of repeated keys in order."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on ``text``, its ExecStart pointed at an existing program."""
    program = require_program("systemd-analyze")
    postwatch = shutil.which("postwatch", path=str(Path(sys.executable).parent))
    assert postwatch, "the postwatch console script of this environment"
    unit = tmp_path / "postwatch.service"
    unit.write_text(text.replace(INSTALLED, postwatch), encoding="utf-8")
    return subprocess.run(
        [program, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )


def test_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd itself accepts every line of the unit: no error, no warning."""
    result = verify(tmp_path, UNIT.read_text(encoding="utf-8"))
    assert (result.returncode, result.stderr, result.stdout) == (0, "", "")


def test_verify_catches_a_broken_unit(tmp_path):
    """The check is real: a misspelt directive and a bad value are reported."""
    broken = UNIT.read_text(encoding="utf-8").replace("ProtectHome=yes", "ProtectHomes=yes")
    broken = broken.replace("WatchdogSec=60s", "WatchdogSec=sixty")
    result = verify(tmp_path, broken)
    lines = broken.splitlines()
    for directive in ("ProtectHomes=", "WatchdogSec="):
        number = next(i for i, line in enumerate(lines, 1) if line.startswith(directive))
        assert f"postwatch.service:{number}: " in result.stderr, directive


def test_unit_exposure_is_low(tmp_path):
    """systemd-analyze security rates the sandbox well (exposure at most 2.0 of 10)."""
    program = require_program("systemd-analyze")
    unit = tmp_path / "postwatch.service"
    unit.write_text(UNIT.read_text(encoding="utf-8"), encoding="utf-8")
    result = subprocess.run(
        [program, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for postwatch\.service: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 2.0


def test_unit_is_a_hardened_notify_service():
    """Type=notify with a watchdog, its own user in adm, and a read-only system."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    expected = {
        "Type": "notify",
        "User": "postwatch",
        "SupplementaryGroups": "adm",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "StateDirectory": "postwatch",
    }
    assert {key: settings[key][0] for key in expected} == expected
    assert settings["WatchdogSec"] and settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["ExecStart"][0].startswith(f"{INSTALLED} watch --config ")


def test_unit_can_write_where_the_sample_config_writes():
    """The sample's state directory, lock files and ban log are all writable under the unit."""
    settings = unit_settings(UNIT.read_text(encoding="utf-8"))
    writable = [path.lstrip("-") for value in settings["ReadWritePaths"] for path in value.split()]
    writable += [f"/var/lib/{settings['StateDirectory'][0]}"]
    writable += [f"/var/log/{settings['LogsDirectory'][0]}"]
    checked = check_config(SAMPLE)
    actions = checked.actions
    assert actions.postfix_map and actions.dovecot and actions.ban_log
    targets = [
        checked.settings.store.state_dir / "postwatch.db",
        actions.postfix_map.path,
        actions.dovecot.deny_file,
        actions.ban_log,
    ]
    for target in targets:
        assert any(Path(target).is_relative_to(folder) for folder in writable), target


# --- the wheel ----------------------------------------------------------------------------


def _build_wheel(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources (the work tree gets no build/ folder)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(
        REPO / "postwatch",
        source / "postwatch",
        ignore=shutil.ignore_patterns("__pycache__", "*.so"),
    )
    dist = tmp_path / "dist"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source)]
    if importlib.util.find_spec("wheel") is not None:
        command.append("--no-build-isolation")  # offline: this environment has the backend
    subprocess.run([*command, "-w", str(dist)], check=True, timeout=600, cwd=tmp_path)
    (wheel,) = dist.glob("postwatch-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return _build_wheel(tmp_path_factory.mktemp("wheel"))


def test_wheel_holds_every_file_of_the_package(wheel):
    """Every file under postwatch/ (code, migrations, py.typed) is in the wheel, with the
    C speedups compiled from their sources, and no more."""
    source = wheel.parent.parent / "source"  # the copy the wheel was built from
    on_disk = {
        path.relative_to(source).as_posix()
        for path in (source / "postwatch").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        names = {name for name in archive.namelist() if not name.startswith("postwatch-")}
        entry_points = archive.read(f"postwatch-{__version__}.dist-info/entry_points.txt")
    speedups = {name for name in names if name.endswith(".so")}
    assert sorted(name.split(".")[0] for name in speedups) == [
        "postwatch/parse/_framing",
        "postwatch/parse/_shapes",
    ]
    assert names - speedups == on_disk
    assert "postwatch/store/migrations/versions/0001_initial.py" in names
    assert b"postwatch = postwatch.cli:main" in entry_points


def test_wheel_installs_and_runs_in_a_fresh_venv(wheel, tmp_path):
    """pip installs the wheel into a new venv whose postwatch runs and migrates a database."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies come from this environment (no network); the package from the wheel.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    version = subprocess.run(
        [str(venv / "bin" / "postwatch"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert version.stdout.strip() == f"postwatch, version {__version__}"
    database = tmp_path / "state.db"
    probe = (
        "import postwatch, sys\n"
        "from postwatch.store import Store\n"
        f"store = Store('sqlite:///{database}')\n"
        "print(postwatch.__file__)\n"
        "print(store.revision(), sorted(store.tables()))\n"
    )
    result = subprocess.run(
        [str(python), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    location, tables = result.stdout.splitlines()
    assert Path(location).is_relative_to(Path(site))
    newest = max(
        path.name[:4] for path in (REPO / "postwatch/store/migrations/versions").glob("0*.py")
    )
    assert tables.startswith(newest) and "'incidents'" in tables and "'alerts'" in tables
