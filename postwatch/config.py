"""Settings from a TOML file: one frozen record per section.

::

    [store]    url, state_dir, retention, batch_size, flush_interval, refresh_interval
    [geo]      mmdb (paths), cache_size, builtin
    [detect]   hostnames, trusted_networks, allow, thresholds, volume, pickup, auth,
               recipients, senders, aliases, providers, overrides, ...

Each top-level table has a parser in ``SECTION_PARSERS``; a later stage (actions, notify,
watch) adds its own parser and record there.  The parsers read their tables through
:class:`~postwatch.configfile.TableReader`: unknown keys are errors, so a typo never passes
silently, and every error is one line naming the file, the line and the key
(:class:`~postwatch.errors.ConfigError`).  Durations are seconds or ``"90s"``, ``"5m"``,
``"6h"``, ``"2d"``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from postwatch.actions.settings import ActionsSettings, parse_actions
from postwatch.configfile import IPNetwork, TableReader, parse_toml, read_text

WINDOWS = ("5m", "1h", "24h")

# Free webmail providers: a spam run's recipients are mostly at them.
DEFAULT_FREEMAIL = tuple(
    """
    gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr yahoo.com.br
    hotmail.com hotmail.fr hotmail.co.uk outlook.com live.com msn.com aol.com icloud.com me.com
    mail.com gmx.com gmx.de gmx.net web.de mail.ru yandex.ru yandex.com qq.com 163.com 126.com
    proton.me protonmail.com zoho.com libero.it orange.fr free.fr laposte.net t-online.de
    bol.com.br uol.com.br rediffmail.com seznam.cz wp.pl o2.pl
    """.split()  # noqa: SIM905 - forty names read better as lines of words than one a line
)
# HELO names that mail clients never send but spam and brute-force software does.
# ("localhost" is left out: PHP mailers on rented servers say it when sending real mail.)
DEFAULT_RATWARE_HELOS = (
    "ylmf-pc",
    "user",
    "admin",
    "administrator",
    "windows",
    "win",
    "pc",
    "test",
    "unknown",
    "example.com",
)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score at which an incident reaches each severity."""

    notice: int = 40
    warning: int = 70
    critical: int = 100

    def severity(self, score: int) -> str:
        if score >= self.critical:
            return "critical"
        if score >= self.warning:
            return "warning"
        if score >= self.notice:
            return "notice"
        return ""


@dataclass(frozen=True, slots=True)
class Limits:
    """Messages and recipients per window (5m, 1h, 24h)."""

    messages: tuple[int, int, int]
    recipients: tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Override:
    """Per account (``user@dom``), domain (``@dom``), uid (``uid:33``) or IP/network settings."""

    pattern: str
    allow: bool = False  # allowlisted: never scored, never alerted
    thresholds: Thresholds | None = None
    floor: Limits | None = None
    ceiling: Limits | None = None
    trusted_networks: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider whose sending IPs rotate inside known ranges (Gmail "send mail as")."""

    name: str
    networks: tuple[IPNetwork, ...]


@dataclass(frozen=True, slots=True)
class DetectSettings:
    """Everything the anomaly engine reads; defaults suit a small mail host."""

    hostnames: tuple[str, ...] = ()
    trusted_networks: tuple[IPNetwork, ...] = ()
    providers: tuple[Provider, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    # volume: a subject may always send up to the floor; above max(floor, factor x its
    # learned peak) it scores; above the ceiling it scores whatever its history says.
    floor: Limits = Limits((10, 30, 120), (40, 120, 500))
    ceiling: Limits = Limits((2000, 5000, 20000), (5000, 15000, 50000))
    pickup_floor: Limits = Limits((15, 40, 150), (40, 150, 600))
    pickup_ceiling: Limits = Limits((2000, 5000, 20000), (5000, 15000, 50000))
    baseline_factor: float = 3.0
    baseline_half_life: float = 30 * 86400.0
    # how much log it takes to know a subject (origins confirmed, novelty judged) and, after a
    # cold start with no stored state, how long volume only learns (the warm-up)
    min_history: float = 86400.0
    # credential abuse, per client IP
    brute_failures: int = 10  # failures per hour that make an IP a brute forcer
    brute_usernames: int = 5  # distinct usernames tried per hour
    stuffing_usernames: int = 3  # other usernames failed from an IP that then logs in
    stuffing_failures: int = 5  # failures for the same account before its success
    account_fail_ips: int = 5  # distinct IPs failing one account per hour
    # origins
    travel_max_kmh: float = 900.0
    travel_min_km: float = 1500.0
    shared_accounts: int = 3  # accounts one address logs in as, none of which knows it
    # recipients and delivery
    freemail_domains: frozenset[str] = frozenset(DEFAULT_FREEMAIL)
    ratware_helos: frozenset[str] = frozenset(DEFAULT_RATWARE_HELOS)
    # senders
    aliases: Mapping[str, frozenset[str]] = field(default_factory=dict)
    login_maps: tuple[Path, ...] = ()
    valid_senders: tuple[Path, ...] = ()
    trusted_uids: frozenset[int] = frozenset()
    # lists and lifetimes
    allow: tuple[str, ...] = ()
    overrides: tuple[Override, ...] = ()
    evidence_hold: float = 3600.0
    incident_quiet: float = 6 * 3600.0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """Where state lives and how it is written."""

    url: str = ""  # empty: sqlite under state_dir
    state_dir: Path = Path("/var/lib/postwatch")
    retention: float = 90 * 86400.0
    batch_size: int = 500
    flush_interval: float = 30.0  # seconds of log time between flushes
    # seconds between merges of what other hosts wrote to a shared database (0: never)
    refresh_interval: float = 300.0


@dataclass(frozen=True, slots=True)
class GeoSettings:
    """IP geography sources."""

    mmdb: tuple[Path, ...] = ()
    builtin: bool = True  # the database bundled with geoip2fast
    cache_size: int = 65536


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole config file."""

    detect: DetectSettings = field(default_factory=DetectSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    geo: GeoSettings = field(default_factory=GeoSettings)
    actions: ActionsSettings = field(default_factory=ActionsSettings)
    path: str = ""


# --- the section parsers ---------------------------------------------------------------


def _thresholds(reader: TableReader, base: Thresholds) -> Thresholds:
    notice = reader.integer("notice", base.notice, minimum=1)
    # a level left unset moves up with the ones below it, so `notice = 80` alone is valid
    warning = reader.integer("warning", max(base.warning, notice), minimum=1)
    critical = reader.integer("critical", max(base.critical, warning), minimum=1)
    for key, low, high in (("warning", notice, warning), ("critical", warning, critical)):
        if low > high:
            raise reader.fail("needs notice <= warning <= critical", key)
    return Thresholds(notice, warning, critical)


def _limits(reader: TableReader, base: Limits, *, lift_shorter: bool = False) -> Limits:
    """Per-window limits; with ``lift_shorter`` a window left unset takes at least the value
    set for a longer one (a subject allowed 2,000 a day may send them in one batch)."""

    def per_window(metric: str, values: tuple[int, int, int]) -> tuple[int, int, int]:
        table = reader.sub(metric)
        out = [table.integer(name, values[i]) for i, name in enumerate(WINDOWS)]
        if lift_shorter:
            for i in range(len(WINDOWS) - 2, -1, -1):
                if not table.has(WINDOWS[i]):
                    out[i] = max(out[i], out[i + 1])
        table.check_unknown()
        return out[0], out[1], out[2]

    limits = Limits(
        per_window("messages", base.messages), per_window("recipients", base.recipients)
    )
    reader.check_unknown()
    return limits


def _override(reader: TableReader, pattern: str, detect: DetectSettings) -> Override:
    thresholds = (
        _thresholds(reader, detect.thresholds)
        if any(reader.has(k) for k in ("notice", "warning", "critical"))
        else None
    )
    floor = (
        _limits(reader.sub("floor"), detect.floor, lift_shorter=True)
        if reader.has("floor")
        else None
    )
    ceiling = (
        _limits(reader.sub("ceiling"), detect.ceiling, lift_shorter=True)
        if reader.has("ceiling")
        else None
    )
    override = Override(
        pattern=pattern.lower(),
        allow=reader.boolean("allow", False),
        thresholds=thresholds,
        floor=floor,
        ceiling=ceiling,
        trusted_networks=reader.networks("trusted_networks"),
    )
    reader.check_unknown()
    return override


def parse_detect(reader: TableReader) -> DetectSettings:
    """The ``[detect]`` table."""
    base = DetectSettings()
    auth = reader.sub("auth")
    origins = reader.sub("origins")
    volume = reader.sub("volume")
    pickup = reader.sub("pickup")
    senders = reader.sub("senders")
    thresholds = reader.sub("thresholds")
    settings = replace(
        base,
        hostnames=tuple(name.lower().rstrip(".") for name in reader.strings("hostnames")),
        trusted_networks=reader.networks("trusted_networks"),
        thresholds=_thresholds(thresholds, base.thresholds),
        allow=tuple(item.lower() for item in reader.strings("allow")),
        evidence_hold=reader.duration("evidence_hold", base.evidence_hold),
        incident_quiet=reader.duration("incident_quiet", base.incident_quiet),
        freemail_domains=frozenset(
            d.lower() for d in reader.strings("freemail_domains", DEFAULT_FREEMAIL)
        ),
        ratware_helos=frozenset(
            h.lower() for h in reader.strings("ratware_helos", DEFAULT_RATWARE_HELOS)
        ),
        baseline_factor=volume.number("baseline_factor", base.baseline_factor, minimum=1),
        baseline_half_life=volume.duration("baseline_half_life", base.baseline_half_life),
        floor=_limits(volume.sub("floor"), base.floor),
        ceiling=_limits(volume.sub("ceiling"), base.ceiling),
        pickup_floor=_limits(pickup.sub("floor"), base.pickup_floor),
        pickup_ceiling=_limits(pickup.sub("ceiling"), base.pickup_ceiling),
        trusted_uids=frozenset(_trusted_uids(pickup)),
        brute_failures=auth.integer("brute_failures", base.brute_failures, minimum=1),
        brute_usernames=auth.integer("brute_usernames", base.brute_usernames, minimum=1),
        stuffing_usernames=auth.integer("stuffing_usernames", base.stuffing_usernames, minimum=1),
        stuffing_failures=auth.integer("stuffing_failures", base.stuffing_failures, minimum=1),
        account_fail_ips=auth.integer("account_fail_ips", base.account_fail_ips, minimum=1),
        min_history=reader.duration("min_history", base.min_history),
        travel_max_kmh=origins.number("travel_max_kmh", base.travel_max_kmh, minimum=1),
        travel_min_km=origins.number("travel_min_km", base.travel_min_km),
        shared_accounts=origins.integer("shared_accounts", base.shared_accounts, minimum=2),
        login_maps=senders.paths("login_maps"),
        valid_senders=senders.paths("valid_senders"),
    )
    for table in (auth, origins, volume, pickup, senders, thresholds):
        table.check_unknown()
    aliases = reader.sub("aliases")
    settings = replace(
        settings,
        aliases={
            login.lower(): frozenset(a.lower() for a in aliases.strings(login))
            for login in aliases.data
        },
    )
    providers = reader.get("providers", [])
    if not isinstance(providers, list):
        raise reader.fail("must be an array of tables [[detect.providers]]", "providers")
    parsed_providers = []
    for index, item in enumerate(providers):
        if not isinstance(item, Mapping):
            raise reader.fail("must be an array of tables [[detect.providers]]", "providers")
        entry = TableReader(reader.path, reader.text, item, (*reader.where, "providers"))
        name = entry.get("name", f"provider{index + 1}")
        if not isinstance(name, str) or not name:
            raise entry.fail("must be a non-empty string", "name")
        parsed_providers.append(Provider(name, entry.networks("networks")))
        entry.check_unknown()
    overrides_table = reader.sub("overrides")
    overrides = tuple(
        _override(overrides_table.sub(pattern), pattern, settings)
        for pattern in overrides_table.data
    )
    reader.check_unknown()
    return replace(settings, providers=tuple(parsed_providers), overrides=overrides)


def _trusted_uids(reader: TableReader) -> tuple[int, ...]:
    value = reader.get("trusted_uids", [])
    if not isinstance(value, list) or not all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    ):
        raise reader.fail("must be a list of uids (integers)", "trusted_uids")
    return tuple(value)


def parse_store(reader: TableReader) -> StoreSettings:
    """The ``[store]`` table."""
    base = StoreSettings()
    url = reader.get("url", "")
    if not isinstance(url, str):
        raise reader.fail("must be a database URL string", "url")
    state_dir = reader.get("state_dir", str(base.state_dir))
    if not isinstance(state_dir, str) or not state_dir:
        raise reader.fail("must be a directory path", "state_dir")
    settings = StoreSettings(
        url=url,
        state_dir=Path(state_dir),
        retention=reader.duration("retention", base.retention),
        batch_size=reader.integer("batch_size", base.batch_size, minimum=1),
        flush_interval=reader.duration("flush_interval", base.flush_interval),
        refresh_interval=reader.duration("refresh_interval", base.refresh_interval),
    )
    reader.check_unknown()
    return settings


def parse_geo(reader: TableReader) -> GeoSettings:
    """The ``[geo]`` table."""
    base = GeoSettings()
    settings = GeoSettings(
        mmdb=reader.paths("mmdb"),
        builtin=reader.boolean("builtin", True),
        cache_size=reader.integer("cache_size", base.cache_size, minimum=16),
    )
    reader.check_unknown()
    return settings


SECTION_PARSERS: dict[str, Callable[[TableReader], Any]] = {
    "detect": parse_detect,
    "store": parse_store,
    "geo": parse_geo,
    "actions": parse_actions,
}


def load_settings(path: str | Path | None) -> Settings:
    """Read and check a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return Settings()
    return parse_settings(read_text(path), str(path))


def parse_settings(text: str, path: str = "<config>") -> Settings:
    """Settings from TOML text; ``path`` names it in errors."""
    root = TableReader(path, text, parse_toml(text, path), ())
    sections: dict[str, Any] = {}
    for name, parser in SECTION_PARSERS.items():
        sections[name] = parser(root.sub(name))
    root.check_unknown()
    return Settings(path=path, **sections)
