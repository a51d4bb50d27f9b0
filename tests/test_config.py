"""TOML settings: defaults, every table, and one-line errors naming file, line and key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from postwatch.config import DetectSettings, Settings, load_settings, parse_settings
from postwatch.configfile import find_key_line, parse_duration
from postwatch.errors import ConfigError

FULL = """\
[store]
url = "sqlite:////var/lib/postwatch/state.db"
retention = "30d"
batch_size = 200
flush_interval = "10s"
refresh_interval = "2m"

[geo]
mmdb = ["/usr/share/GeoIP/GeoLite2-City.mmdb"]
cache_size = 1024

[detect]
hostnames = ["MX.example.org."]
trusted_networks = ["198.51.100.0/24"]
allow = ["monitor@example.org", "192.0.2.7"]
incident_quiet = "12h"

[detect.thresholds]
notice = 35

[detect.volume]
baseline_factor = 4
[detect.volume.floor]
messages = { 5m = 12, 1h = 40 }

[detect.auth]
brute_failures = 20

[detect.pickup]
trusted_uids = [0]

[detect.aliases]
"alice@example.org" = ["sales@example.org", "@example.com"]

[[detect.providers]]
name = "gmail-send-as"
networks = ["209.85.128.0/17"]

[detect.overrides."newsletter@example.org"]
floor.messages = { 24h = 2500 }
notice = 80
"""


def test_defaults_without_a_file() -> None:
    """No config file gives the documented defaults."""
    settings = load_settings(None)
    assert settings == Settings()
    assert settings.detect.thresholds.notice == 40
    assert settings.store.url == ""


def test_every_table_is_read() -> None:
    """A full file sets store, geo and detect values."""
    settings = parse_settings(FULL, "postwatch.toml")
    assert settings.store.retention == 30 * 86400
    assert settings.store.batch_size == 200
    assert settings.store.refresh_interval == 120
    assert settings.geo.mmdb == (Path("/usr/share/GeoIP/GeoLite2-City.mmdb"),)
    detect = settings.detect
    assert detect.hostnames == ("mx.example.org",)
    assert detect.trusted_networks == (ipaddress.ip_network("198.51.100.0/24"),)
    assert detect.thresholds.notice == 35 and detect.thresholds.warning == 70
    assert detect.floor.messages == (12, 40, DetectSettings().floor.messages[2])
    assert detect.brute_failures == 20
    assert detect.trusted_uids == frozenset({0})
    assert detect.aliases["alice@example.org"] == frozenset({"sales@example.org", "@example.com"})
    assert detect.providers[0].name == "gmail-send-as"
    assert detect.incident_quiet == 12 * 3600


def test_override_lifts_shorter_windows_and_thresholds() -> None:
    """An account allowed 2,500 a day may send them in one batch; notice alone may rise."""
    override = parse_settings(FULL).detect.overrides[0]
    assert override.pattern == "newsletter@example.org"
    assert override.floor is not None
    assert override.floor.messages == (2500, 2500, 2500)
    assert override.thresholds is not None
    assert (override.thresholds.notice, override.thresholds.warning) == (80, 80)


def test_syntax_error_names_file_and_line() -> None:
    """A TOML syntax error is one line with the file and line number."""
    with pytest.raises(ConfigError) as caught:
        parse_settings('[detect]\nhostnames = [\n  "a"\n  "b"]\n', "bad.toml")
    message = str(caught.value)
    assert message.startswith("bad.toml:4: ")
    assert "\n" not in message
    assert caught.value.line == 4


def test_bad_value_names_the_line_of_its_key() -> None:
    """A wrong value is reported at the line that sets it, with the dotted key."""
    text = '[detect]\n\n[detect.volume.floor]\nmessages = { 5m = 12, 1h = "many" }\n'
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, "x.toml")
    assert caught.value.line == 4
    assert caught.value.key == "detect.volume.floor.messages.1h"
    assert str(caught.value).startswith("x.toml:4: detect.volume.floor.messages.1h: ")


def test_store_refresh_interval_is_a_duration_that_0_turns_off() -> None:
    """``[store] refresh_interval`` defaults to five minutes, takes 0, and a bad value is one
    line naming the file, the line and the key."""
    assert Settings().store.refresh_interval == 300
    assert parse_settings("[store]\nrefresh_interval = 0\n").store.refresh_interval == 0
    with pytest.raises(ConfigError) as caught:
        parse_settings('[store]\nbatch_size = 10\nrefresh_interval = "often"\n', "p.toml")
    message = str(caught.value)
    assert message.startswith("p.toml:3: store.refresh_interval: must be a duration")
    assert "\n" not in message


def test_unknown_key_is_an_error() -> None:
    """A typo never passes silently."""
    with pytest.raises(ConfigError) as caught:
        parse_settings("[detect.auth]\nbrute_falures = 3\n", "t.toml")
    assert caught.value.key == "detect.auth.brute_falures"
    assert caught.value.line == 2


def test_unknown_section_is_an_error() -> None:
    """An unknown top-level table is reported with its line."""
    with pytest.raises(ConfigError) as caught:
        parse_settings("[detect]\n[dtect]\nx = 1\n", "t.toml")
    assert caught.value.key == "dtect"
    assert caught.value.line == 2


def test_bad_network_and_threshold_order() -> None:
    """Networks must parse, and thresholds must rise."""
    with pytest.raises(ConfigError, match="not an IP network"):
        parse_settings('[detect]\ntrusted_networks = ["10.0.0.0/33"]\n')
    with pytest.raises(ConfigError, match="notice <= warning <= critical"):
        parse_settings("[detect.thresholds]\nwarning = 90\ncritical = 80\n")


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable file is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "absent.toml")
    assert str(caught.value).startswith(str(tmp_path / "absent.toml"))


def test_durations() -> None:
    """Durations are seconds or a number with a unit."""
    assert parse_duration(90) == 90
    assert parse_duration("5m") == 300
    assert parse_duration("6h") == 21600
    assert parse_duration("2d") == 172800
    assert parse_duration("soon") is None
    assert parse_duration(-1) is None
    assert parse_duration(True) is None


def test_key_line_through_quoted_tables_and_inline_tables() -> None:
    """A key is found under a quoted table name and inside an inline table; a missing one
    falls back to its closest enclosing table, or to no line at all."""

    def line_of(*keypath: str) -> str:
        number = find_key_line(FULL, keypath)
        assert number is not None
        return FULL.splitlines()[number - 1]

    overrides = ("detect", "overrides", "newsletter@example.org")
    assert line_of(*overrides, "notice") == "notice = 80"
    assert line_of(*overrides, "floor", "messages", "24h") == "floor.messages = { 24h = 2500 }"
    assert line_of("detect", "auth", "typo") == "[detect.auth]"
    assert find_key_line(FULL, ("actions",)) is None
