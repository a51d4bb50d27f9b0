"""IP geography: country, ASN, network block, and whether an address is ours.

Sources, first answer wins per field:

1. configured MaxMind ``.mmdb`` files (GeoLite2 City/Country/ASN), via ``maxminddb``;
2. the offline database bundled with ``geoip2fast`` (``geoip2fast-asn-ipv6.dat.gz``:
   country code, ASN name and CIDR), loaded once, on the first public address.

Private, loopback, link-local and configured trusted networks are ``local``: never foreign,
never a new origin, never banned.  Provider ranges whose sending IPs rotate (Gmail "send mail
as") collapse into one origin named after the provider.  Lookups are cached in a bounded LRU.

Distances between countries come from the time zone table (``zone.tab``) that every tzdata
install carries: each country is the set of its zone cities, and the distance between two
countries is the smallest distance between their cities, so a neighbour is never "far".
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import zoneinfo
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from postwatch.configfile import IPNetwork
from postwatch.errors import ConfigError

log = logging.getLogger(__name__)

BUILTIN_DATA_FILE = "geoip2fast-asn-ipv6.dat.gz"
# Never foreign: private (RFC 1918, ULA), carrier-grade NAT, link-local, unspecified.
# Documentation ranges (192.0.2.0/24, 2001:db8::/32 ...) are left foreign on purpose: they
# never reach a real server, and examples and tests use them as outside clients.
LOCAL_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
EARTH_RADIUS_KM = 6371.0


class GeoInfo(NamedTuple):
    """What is known about one client address."""

    ip: str
    country: str = ""  # ISO 3166 code, "" when unknown or local
    asn: str = ""  # "AS64500 Example Net" from an ASN mmdb, or the builtin ASN name
    network: str = ""  # the announced network (CIDR) when known
    netblock: str = ""  # the /24 (IPv4) or /48 (IPv6) the address belongs to
    local: bool = False  # private, loopback, link-local or trusted: never foreign
    provider: str = ""  # a configured provider whose addresses rotate
    latitude: float | None = None
    longitude: float | None = None
    valid: bool = True


class Geo:
    """Look up IP addresses; build once, share between stages."""

    def __init__(
        self,
        *,
        mmdb: Sequence[str | Path] = (),
        builtin: bool = True,
        trusted_networks: Iterable[IPNetwork] = (),
        providers: Iterable[tuple[str, Iterable[IPNetwork]]] = (),
        cache_size: int = 65536,
    ) -> None:
        self._mmdb_paths = [Path(path) for path in mmdb]
        self._readers: list[Any] | None = None
        self._builtin_wanted = builtin
        self._builtin: Any = None
        self._trusted = tuple(trusted_networks)
        # (version, first, last) address numbers of each network: cheap to test
        self._local_ranges = _ranges(LOCAL_NETWORKS + self._trusted)
        self._providers = tuple((name, _ranges(nets)) for name, nets in providers)
        self.lookup = functools.lru_cache(maxsize=cache_size)(self._lookup)
        self._country_points: dict[str, list[tuple[float, float]]] | None = None
        self.country_distance = functools.lru_cache(maxsize=4096)(self._country_distance)

    @classmethod
    def from_settings(cls, geo: Any, detect: Any) -> Geo:
        """A Geo from ``GeoSettings`` and ``DetectSettings`` (trusted networks, providers)."""
        return cls(
            mmdb=geo.mmdb,
            builtin=geo.builtin,
            cache_size=geo.cache_size,
            trusted_networks=detect.trusted_networks,
            providers=[(p.name, p.networks) for p in detect.providers],
        )

    def open(self) -> None:
        """Open the configured mmdb files now (else on first use); errors name the file."""
        if self._readers is not None:
            return
        import maxminddb

        readers = []
        for path in self._mmdb_paths:
            try:
                readers.append(maxminddb.open_database(str(path)))
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
                for reader in readers:
                    reader.close()
                raise ConfigError(
                    f"cannot open MaxMind database: {exc}", path=str(path), key="geo.mmdb"
                ) from exc
        self._readers = readers

    def close(self) -> None:
        for reader in self._readers or ():
            reader.close()
        self._readers = None

    # --- lookups -------------------------------------------------------------------------

    def _lookup(self, ip: str) -> GeoInfo:
        parsed = address_of(ip)
        if parsed is None:
            return GeoInfo(ip, netblock=ip, valid=False)
        version, number, text = parsed
        if version == 4:
            netblock = text[: text.rfind(".")] + ".0/24"
        else:
            netblock = str(ipaddress.IPv6Network((number >> 80 << 80, 48)))
        if _within(self._local_ranges, version, number):
            return GeoInfo(text, netblock=netblock, local=True)
        provider = next(
            (name for name, ranges in self._providers if _within(ranges, version, number)), ""
        )
        fields: dict[str, Any] = {}
        self._from_mmdb(text, fields)
        if self._builtin_wanted and ("country" not in fields or "asn" not in fields):
            self._from_builtin(text, fields)
        return GeoInfo(
            text,
            fields.get("country", ""),
            fields.get("asn", ""),
            fields.get("network", ""),
            netblock,
            False,
            provider,
            fields.get("latitude"),
            fields.get("longitude"),
        )

    def _from_mmdb(self, ip: str, fields: dict[str, Any]) -> None:
        if self._readers is None:
            self.open()
        for reader in self._readers or ():
            try:
                record, prefix = reader.get_with_prefix_len(ip)
            except ValueError:
                continue
            if not isinstance(record, dict):
                continue
            country = record.get("country") or record.get("registered_country") or {}
            code = country.get("iso_code") if isinstance(country, dict) else None
            if code and "country" not in fields:
                fields["country"] = str(code).upper()
            location = record.get("location")
            if isinstance(location, dict) and "latitude" not in fields:
                lat, lon = location.get("latitude"), location.get("longitude")
                if isinstance(lat, int | float) and isinstance(lon, int | float):
                    fields["latitude"], fields["longitude"] = float(lat), float(lon)
            number = record.get("autonomous_system_number")
            if number and "asn" not in fields:
                org = record.get("autonomous_system_organization") or ""
                fields["asn"] = f"AS{number} {org}".strip()
                fields["network"] = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))

    def _from_builtin(self, ip: str, fields: dict[str, Any]) -> None:
        if self._builtin is None:
            self._builtin = _load_builtin()
            if self._builtin is False:
                log.warning("the geoip2fast database could not be loaded; no builtin geography")
        if self._builtin is False:
            return
        result = self._builtin.lookup(ip)
        code = result.country_code or ""
        if len(code) == 2 and code.isalpha() and "country" not in fields:
            fields["country"] = code.upper()
        if result.asn_name and result.asn_name != "IANA.ORG" and "asn" not in fields:
            fields["asn"] = result.asn_name
            fields["network"] = result.asn_cidr or ""

    # --- distances -----------------------------------------------------------------------

    def distance_km(self, a: GeoInfo, b: GeoInfo) -> float | None:
        """A lower bound of the distance between two located addresses (None: unknown)."""
        if (
            a.latitude is not None
            and a.longitude is not None
            and b.latitude is not None
            and b.longitude is not None
        ):
            return haversine_km(a.latitude, a.longitude, b.latitude, b.longitude)
        if a.country and b.country:
            return self.country_distance(a.country, b.country)
        return None

    def _country_distance(self, a: str, b: str) -> float | None:
        if a == b:
            return 0.0
        if self._country_points is None:
            self._country_points = load_country_points()
        points_a = self._country_points.get(a)
        points_b = self._country_points.get(b)
        if not points_a or not points_b:
            return None
        return min(haversine_km(*pa, *pb) for pa in points_a for pb in points_b)


def address_of(ip: str) -> tuple[int, int, str] | None:
    """(version, number, canonical text) of an address as the log writes it (an IPv4-mapped
    IPv6 address as its IPv4 address, an IPv6 zone dropped); None when it is not one.

    A dotted quad as :mod:`ipaddress` prints it is read here, a few times faster: most
    clients are IPv4, and a replay looks up tens of thousands of them.
    """
    parts = ip.split(".")
    if len(parts) == 4 and ip.isascii():
        number = 0
        for part in parts:
            if not part.isdigit() or len(part) > 3 or (part[0] == "0" and part != "0"):
                break
            value = int(part)
            if value > 255:
                break
            number = number << 8 | value
        else:
            return 4, number, ip
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address), str(address)


def _ranges(networks: Iterable[IPNetwork]) -> tuple[tuple[int, int, int], ...]:
    return tuple(
        (net.version, int(net.network_address), int(net.broadcast_address)) for net in networks
    )


def _within(ranges: tuple[tuple[int, int, int], ...], version: int, number: int) -> bool:
    return any(v == version and low <= number <= high for v, low, high in ranges)


def _load_builtin() -> Any:
    try:
        from geoip2fast import GeoIP2Fast

        return GeoIP2Fast(geoip2fast_data_file=BUILTIN_DATA_FILE, verbose=False)
    except Exception as exc:  # a broken optional data file must not stop detection
        log.warning("geoip2fast: %s", exc)
        return False


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlmb = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _iso6709(text: str) -> tuple[float, float] | None:
    """``+4030-07400`` or ``+403045-0740015`` -> (latitude, longitude) in degrees."""
    split = max(text.rfind("+"), text.rfind("-"))
    if split <= 0:
        return None
    lat, lon = text[:split], text[split:]

    def degrees(part: str, degree_digits: int) -> float:
        sign = -1.0 if part[0] == "-" else 1.0
        digits = part[1:]
        value = float(digits[:degree_digits])
        rest = digits[degree_digits:]
        if rest:
            value += float(rest[:2]) / 60
        if len(rest) > 2:
            value += float(rest[2:4]) / 3600
        return sign * value

    try:
        return degrees(lat, 2), degrees(lon, 3)
    except (ValueError, IndexError):
        return None


def load_country_points(paths: Iterable[str] | None = None) -> dict[str, list[tuple[float, float]]]:
    """Country code -> coordinates of its zone cities, from tzdata's ``zone.tab``."""
    for folder in paths if paths is not None else zoneinfo.TZPATH:
        path = Path(folder) / "zone.tab"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        points: dict[str, list[tuple[float, float]]] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) < 3:
                continue
            coords = _iso6709(parts[1])
            if coords is not None:
                points.setdefault(parts[0].upper(), []).append(coords)
        return points
    log.warning("no zone.tab found in %s: country distances unknown", zoneinfo.TZPATH)
    return {}
