"""IP geography: local addresses, the bundled database, a MaxMind file, distances."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest

from postwatch.errors import ConfigError
from postwatch.geo import Geo, address_of, haversine_km, load_country_points


@pytest.fixture(scope="module")
def geo() -> Geo:
    return Geo(
        trusted_networks=[ipaddress.ip_network("198.51.100.0/24")],
        providers=[("gmail", [ipaddress.ip_network("209.85.128.0/17")])],
    )


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "192.168.7.9",
        "172.20.0.5",
        "100.64.3.4",
        "fd00::5",
        "fe80::1",
        "198.51.100.7",
    ],
)
def test_private_loopback_and_trusted_are_local(geo: Geo, ip: str) -> None:
    """Private, loopback, CGNAT, link-local and trusted addresses are never foreign."""
    info = geo.lookup(ip)
    assert info.local and info.country == "" and info.asn == ""


def test_documentation_ranges_stay_foreign(geo: Geo) -> None:
    """TEST-NET addresses are outside clients (examples and tests use them)."""
    assert not geo.lookup("203.0.113.5").local
    assert not geo.lookup("2001:db8::5").local


def test_bundled_database_gives_country_and_asn(geo: Geo) -> None:
    """The geoip2fast data shipped on PyPI resolves public addresses."""
    info = geo.lookup("8.8.8.8")
    assert info.country == "US"
    assert "GOOGLE" in info.asn.upper()
    assert info.netblock == "8.8.8.0/24"
    assert geo.lookup("2a00:1450:4001::1").netblock == "2a00:1450:4001::/48"


def test_ipv4_mapped_addresses_are_unwrapped(geo: Geo) -> None:
    """::ffff:a.b.c.d is looked up as a.b.c.d."""
    assert geo.lookup("::ffff:8.8.4.4").ip == "8.8.4.4"


def test_provider_ranges_are_named(geo: Geo) -> None:
    """Addresses of a rotating provider carry its name."""
    assert geo.lookup("209.85.130.1").provider == "gmail"


def test_a_provider_range_names_only_its_own_ip_version() -> None:
    """A provider's IPv6 range names its IPv6 clients, and never an IPv4 client whose
    number happens to fall in it."""
    geo = Geo(
        providers=[("v6", [ipaddress.ip_network("::/96"), ipaddress.ip_network("2001:4860::/32")])]
    )
    assert geo.lookup("2001:4860:4860::8888").provider == "v6"
    assert geo.lookup("8.8.8.8").provider == ""


HOSTILE_ADDRESSES = [
    "01.2.3.4", "1.2.3.0004", "1.2.3.256", "1.2.3", "1.2.3.4.5", "1..3.4", "+1.2.3.4",
    "\u0661.2.3.4", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4\n", "1.2.3.4%eth0", "0.0.0.0",
    "255.255.255.255", "unknown", "",
]  # fmt: skip


def _reference(ip: str) -> tuple[int, int, str] | None:
    try:
        address = ipaddress.IPv4Address(ip.split("%", 1)[0])
    except ValueError:
        return None
    return 4, int(address), str(address)


def test_addresses_read_as_the_ipaddress_module_reads_them(corpus: Path) -> None:
    """Every IPv4 client address of the real corpus, and hostile look-alikes (leading zeros,
    an Arabic digit, spaces, a zone), read as :mod:`ipaddress` reads them: the same number
    and text, or not an address (IPv6 is read by :mod:`ipaddress` itself)."""
    found = re.compile(r"\[([0-9.]+)\]|rip=([0-9.]+)")
    addresses = set(HOSTILE_ADDRESSES)
    for path in corpus.rglob("*"):
        if path.is_file() and path.suffix in (".log", ".txt", ""):
            for match in found.finditer(path.read_text(errors="replace")):
                addresses.add(match.group(1) or match.group(2))
    assert len(addresses) > 300
    for ip in sorted(addresses):
        assert address_of(ip) == _reference(ip), ip


def test_invalid_address_is_marked(geo: Geo) -> None:
    """Attacker text that is not an address is flagged, not raised."""
    info = geo.lookup("999.1.1.1")
    assert not info.valid and not info.local


def test_lookups_are_cached_in_a_bounded_lru() -> None:
    """The cache has the configured bound."""
    small = Geo(builtin=False, cache_size=16)
    for last in range(40):
        small.lookup(f"10.0.0.{last}")
    info = small.lookup.cache_info()  # type: ignore[attr-defined]
    assert info.maxsize == 16 and info.currsize == 16


def _write_mmdb(path: Path) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type="GeoLite2-City",
        languages=["en"],
        description="postwatch test",
    )
    writer.insert_network(
        IPSet(["203.0.113.0/24"]),
        {
            "country": {"iso_code": "NZ"},
            "location": {"latitude": -41.29, "longitude": 174.78},
            "autonomous_system_number": 64500,
            "autonomous_system_organization": "Example Net",
        },
    )
    writer.insert_network(
        IPSet(["192.0.2.0/24"]),
        {
            "country": {"iso_code": "IS"},
            "location": {"latitude": 64.15, "longitude": -21.94},
        },
    )
    writer.to_db_file(str(path))


def test_mmdb_file_wins_over_the_bundled_data(tmp_path: Path) -> None:
    """A configured .mmdb gives country, location and ASN; gaps fall back to the bundle."""
    path = tmp_path / "tiny.mmdb"
    _write_mmdb(path)
    geo = Geo(mmdb=[path])
    nz = geo.lookup("203.0.113.77")
    assert nz.country == "NZ" and nz.asn == "AS64500 Example Net"
    assert nz.network == "203.0.113.0/24"
    assert nz.latitude == pytest.approx(-41.29)
    iceland = geo.lookup("192.0.2.1")
    assert iceland.country == "IS" and iceland.asn == ""
    distance = geo.distance_km(nz, iceland)
    assert distance is not None and distance > 15000
    assert geo.lookup("8.8.8.8").country == "US"  # not in the file: the bundle answers
    geo.close()


def test_broken_mmdb_is_a_config_error(tmp_path: Path) -> None:
    """An unreadable .mmdb names the file."""
    path = tmp_path / "broken.mmdb"
    path.write_bytes(b"not a database")
    with pytest.raises(ConfigError, match=r"broken\.mmdb"):
        Geo(mmdb=[path]).open()


def test_country_distances_are_conservative(geo: Geo) -> None:
    """Neighbours are near, other continents far; the nearest zone cities count."""
    near = geo.country_distance("DE", "FR")
    far = geo.country_distance("DE", "US")
    assert near is not None and far is not None
    assert near < 1000 < 5000 < far
    assert geo.country_distance("US", "CA") is not None
    assert geo.country_distance("US", "CA") < 1000  # type: ignore[operator]


def test_zone_table_is_read_from_tzdata() -> None:
    """Country points come from the zone.tab of tzdata; a missing table gives none."""
    points = load_country_points()
    assert len(points) > 200 and "DE" in points
    assert load_country_points(["/nonexistent"]) == {}


def test_haversine() -> None:
    """One degree of latitude is about 111 km."""
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.2, abs=0.5)
