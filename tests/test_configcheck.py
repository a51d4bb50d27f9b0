"""The sample config and ``postwatch config check``: every key known, explained and checked."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from postwatch.config import load_settings
from postwatch.configcheck import check_config, config_group, section_parsers
from postwatch.configfile import parse_duration
from postwatch.errors import ConfigError

SAMPLE = Path(__file__).resolve().parents[1] / "contrib" / "postwatch.toml"
# "#key = value" and "#[table]" are settings left out; "# text" explains.
DISABLED = re.compile(r"(?m)^#(?=[\[A-Za-z0-9_\"])")
ASSIGNMENT = re.compile(
    r"""\s*(?:[A-Za-z0-9_-]+|"[^"]*")(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"))*\s*="""
)
# Example values where the default is a long list (documented as such in the sample).
EXAMPLES = {("detect", "freemail_domains")}


def full_sample(tmp_path: Path, *, mmdb: bool = True) -> Path:
    """The sample with every setting and table switched on (MaxMind files optionally off)."""
    text = DISABLED.sub("", SAMPLE.read_text(encoding="utf-8"))
    if not mmdb:
        text = re.sub(r"(?m)^mmdb = .*$", "", text)
    path = tmp_path / "full.toml"
    path.write_text(text, encoding="utf-8")
    return path


def check(args: list[str]):
    return CliRunner().invoke(config_group, ["check", *args])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "postwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sample_config_is_valid_as_shipped():
    """The shipped sample loads, builds its lock backends, and starts in dry-run mode."""
    checked = check_config(SAMPLE)
    assert checked.actions.dry_run is True
    assert checked.actions.postfix_map is not None and checked.actions.dovecot is not None
    assert checked.settings.detect == load_settings(None).detect


def test_load_settings_reads_the_sample_as_config_check_does():
    """load_settings, the loader of every command, gives the settings config check shows."""
    settings = load_settings(SAMPLE)
    assert settings == check_config(SAMPLE).settings
    assert settings.actions.dry_run is True


def test_sample_config_names_every_key_the_parsers_know(tmp_path):
    """With its examples switched on, the sample sets every key any section parser reads."""
    checked = check_config(full_sample(tmp_path), build=False)
    missing = sorted(".".join(key) for key, read in checked.effective.items() if not read.given)
    assert missing == []
    assert {key[0] for key in checked.effective} == set(section_parsers())


def test_sample_examples_build(tmp_path):
    """Every example table builds: Apprise URLs parse, SQL and command locks are accepted."""
    checked = check_config(full_sample(tmp_path, mmdb=False))
    actions = checked.actions
    assert actions.notify and actions.sql and actions.command and actions.hold
    assert checked.settings.detect.overrides and checked.settings.detect.providers


def test_sample_shows_the_real_defaults(tmp_path):
    """A setting the sample leaves commented out shows the value the code defaults to."""
    defaults = check_config(SAMPLE).effective
    written = check_config(full_sample(tmp_path), build=False).effective
    compared = 0
    for key, read in defaults.items():
        if read.given or key in EXAMPLES or read.value in ([], "", {}):
            continue
        sample_value = written[key].value
        if isinstance(read.value, float) and isinstance(sample_value, str):
            sample_value = parse_duration(sample_value)
        assert sample_value == read.value, ".".join(key)
        compared += 1
    assert compared > 50


def test_every_setting_is_explained():
    """Each block of settings in the sample carries a comment that explains it."""
    text = DISABLED.sub("", SAMPLE.read_text(encoding="utf-8"))
    for block in re.split(r"\n\s*\n", text):
        lines = block.splitlines()
        settings = [line for line in lines if ASSIGNMENT.match(line)]
        explained = any(line.startswith("# ") for line in lines)
        assert not settings or explained, block


def test_check_prints_the_effective_settings():
    """A valid file prints its settings with defaults marked, and exits 0."""
    result = check(["--config", str(SAMPLE)])
    assert result.exit_code == 0, result.output
    assert "[detect.thresholds]\ncritical = 100  # default\nnotice = 40  # default" in result.output
    assert "[actions]\nallow = []  # default\ndry_run = true\n" in result.output


def test_check_prints_json():
    """--json gives the settings as one nested object."""
    result = check(["--config", str(SAMPLE), "--json"])
    data = json.loads(result.output)
    assert data["detect"]["thresholds"]["warning"] == 70
    assert data["actions"]["postfix_map"]["path"] == "/etc/postfix/postwatch/sasl_access"


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        (
            '[detect.thresholds]\nnotice = "x"\n',
            2,
            "detect.thresholds.notice",
            "must be an integer",
        ),
        ("[store]\n\nretension = 5\n", 3, "store.retension", "unknown setting"),
        (
            '[store]\nrefresh_interval = "-5m"\n',
            2,
            "store.refresh_interval",
            "must be a duration",
        ),
        ("[geo]\nbuiltin = true\ncache_size = = 3\n", 3, None, "Invalid value"),
        (
            '[actions.notify]\nurls = ["nonsense-scheme://x"]\n',
            2,
            "actions.notify.urls",
            "Apprise does not understand",
        ),
        (
            '[actions.postfix_map]\npath = "/tmp/x"\ntype = "nis"\n',
            3,
            "actions.postfix_map.type",
            "unsupported map type",
        ),
    ],
)
def test_a_bad_config_is_one_located_line_and_exit_2(tmp_path, text, line, key, message):
    """An invalid file gives exit status 2 and one line: file:line: key: message."""
    path = write(tmp_path, text)
    result = check(["--config", str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    error = result.stderr.rstrip("\n")
    assert "\n" not in error
    prefix = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert error.startswith(prefix) and message in error


def test_a_missing_file_is_exit_2(tmp_path):
    """A config file that cannot be read is a one-line error with exit status 2."""
    result = check(["--config", str(tmp_path / "absent.toml")])
    assert result.exit_code == 2 and "cannot read config file" in result.stderr


def test_secrets_are_not_printed(tmp_path):
    """Database passwords and Apprise URLs (tokens) never appear in the printed settings."""
    path = write(
        tmp_path,
        '[store]\nurl = "postgresql+psycopg://postwatch:S3cret-db@db.example/postwatch"\n'
        '[actions.notify]\nurls = ["tgram://123456:S3cret-bot-token/987654"]\n'
        '[actions.notify.severity]\ncritical = ["mailtos://u:S3cret-mail@smtp.example"]\n',
    )
    for args in (["--config", str(path)], ["--config", str(path), "--json"]):
        result = check(args)
        assert result.exit_code == 0, result.output
        assert "S3cret" not in result.output
        assert "db.example" in result.output and "tgram://(hidden)" in result.output


def test_check_config_raises_config_errors():
    """The library call raises ConfigError for the CLI and other callers to word."""
    with pytest.raises(ConfigError, match="cannot read config file"):
        check_config("/nonexistent/postwatch.toml")
