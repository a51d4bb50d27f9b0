"""The address plan: where clients connect from.

Every range below was checked with geoip2fast's ASN database
(``geoip2fast-asn-ipv6.dat.gz``): sixteen evenly spaced addresses of each range resolve to
the country and ASN name stored next to it, so a detector using geoip2fast sees the same
countries and networks the scenario meant.  The table is stored here rather than looked up
at generation time; ``tests/test_traffic.py`` re-checks it.  These addresses only ever
appear in log text.

Our own side uses documentation addresses (RFC 5737) and example domains (RFC 2606).
"""

from __future__ import annotations

import functools
import ipaddress
import random
from typing import NamedTuple

SERVER_IP = "203.0.113.25"  # our MX / submission address (TEST-NET-3)
WEBMAIL_IP = "127.0.0.1"  # the webmail host talks to Postfix and Dovecot over loopback


class Network(NamedTuple):
    """Address ranges of one operator in one country, as geoip2fast names them."""

    kind: str  # residential | mobile | hosting
    country: str
    asn: str
    cidrs: tuple[str, ...]
    ptr: str | None = None  # reverse-DNS template: {a}.{b}.{c}.{d} octets, {h} hex address

    def address(self, rng: random.Random) -> str:
        """A random usable host address inside one of the ranges."""
        first, size = _span(rng.choice(self.cidrs))
        address = first + rng.randrange(1, size - 1)
        if address & 0xFF in (0, 255):
            address += 1
        return str(ipaddress.IPv4Address(address))

    def hostname(self, ip: str) -> str | None:
        """The PTR name this operator gives ``ip``, or None when it has none."""
        if self.ptr is None:
            return None
        a, b, c, d = ip.split(".")
        return self.ptr.format(a=a, b=b, c=c, d=d, h=f"{int(ipaddress.ip_address(ip)):08x}")


@functools.cache
def _span(cidr: str) -> tuple[int, int]:
    network = ipaddress.ip_network(cidr)
    return int(network.network_address), network.num_addresses


# fmt: off
NETWORKS: tuple[Network, ...] = (
    # customers' home countries
    Network("residential", "DE", "Deutsche Telekom AG",
            ("141.77.0.0/16", "193.158.0.0/16", "193.159.0.0/16", "194.25.0.0/16"),
            "p{h}.dip0.t-ipconnect.de"),
    Network("residential", "DE", "Vodafone GmbH",
            ("109.193.0.0/16", "109.41.0.0/16", "109.42.0.0/16", "109.43.0.0/16")),
    Network("mobile", "DE", "Telefonica Germany",
            ("176.0.0.0/16", "176.1.0.0/16", "176.2.0.0/16", "176.3.0.0/16")),
    Network("residential", "AT", "Telekom Austria",
            ("145.241.0.0/16", "178.188.0.0/16", "178.189.0.0/16", "178.190.0.0/16"),
            "{a}-{b}-{c}-{d}.adsl.highway.telekom.at"),
    Network("residential", "CH", "Bluewin",
            ("138.190.0.0/16", "138.223.0.0/16", "138.81.0.0/16", "146.4.0.0/16")),
    Network("residential", "NL", "KPN B.V.",
            ("137.17.0.0/16", "145.119.0.0/16", "145.13.0.0/16", "145.222.0.0/16")),
    Network("mobile", "NL", "Vodafone Libertel B.V.",
            ("109.32.0.0/16", "109.33.0.0/16", "109.34.0.0/16", "109.35.0.0/16")),
    Network("residential", "FR", "Orange",
            ("109.208.0.0/16", "109.209.0.0/16", "109.210.0.0/16", "109.211.0.0/16")),
    Network("residential", "FR", "Free SAS",
            ("213.36.0.0/16", "62.147.0.0/16", "78.192.0.0/16", "78.193.0.0/16")),
    Network("mobile", "FR", "Bouygues Telecom SA",
            ("128.78.0.0/16", "128.79.0.0/16", "176.128.0.0/16", "176.129.0.0/16")),
    Network("residential", "GB", "British Telecommunications PLC",
            ("109.144.0.0/16", "109.145.0.0/16", "109.146.0.0/16", "109.147.0.0/16"),
            "host{d}-{c}-{b}-{a}.range{a}-{b}.btcentralplus.com"),
    Network("residential", "GB", "Virgin Media",
            ("194.168.0.0/16", "195.188.0.0/16", "212.250.0.0/16", "213.104.0.0/16")),
    Network("residential", "US", "COMCAST-7922",
            ("107.2.0.0/16", "107.3.0.0/16", "107.4.0.0/16", "147.191.0.0/16"),
            "c-{a}-{b}-{c}-{d}.hsd1.ma.comcast.net"),
    Network("mobile", "US", "CELLCO-PART",
            ("137.188.0.0/16", "151.144.0.0/16", "153.114.0.0/16", "155.146.0.0/16")),
    Network("mobile", "US", "T-MOBILE-AS21928",
            ("100.128.0.0/16", "100.129.0.0/16", "100.130.0.0/16", "100.131.0.0/16")),
    # where travellers go
    Network("residential", "ES", "Telefonica De Espana S.a.u.",
            ("176.80.0.0/16", "176.82.0.0/16", "176.83.0.0/16", "176.84.0.0/16"),
            "{d}.red-{a}-{b}-{c}.dynamicip.rima-tde.net"),
    Network("residential", "IT", "Telecom Italia",
            ("109.52.0.0/16", "109.53.0.0/16", "109.54.0.0/16", "138.132.0.0/16")),
    Network("residential", "PT", "Nos Comunicacoes, S.A.",
            ("109.48.0.0/16", "109.49.0.0/16", "109.50.0.0/16", "109.51.0.0/16"),
            "a{a}-{b}-{c}-{d}.cpe.netcabo.pt"),
    Network("residential", "GR", "OTEnet S\\.A\\.",
            ("109.178.0.0/16", "178.146.0.0/16", "178.147.0.0/16", "2.84.0.0/16")),
    # hosting providers: customers' web servers, and attackers' rented machines
    Network("hosting", "FR", "OVH SAS",
            ("109.190.0.0/16", "151.127.0.0/16", "57.130.0.0/16", "57.128.0.0/17"),
            "ip{d}.ip-{a}-{b}-{c}.eu"),
    Network("hosting", "DE", "Hetzner Online GmbH",
            ("116.202.0.0/16", "116.203.0.0/16", "144.76.0.0/16", "157.90.0.0/16"),
            "static.{d}.{c}.{b}.{a}.clients.your-server.de"),
    Network("hosting", "US", "DIGITALOCEAN-ASN",
            ("104.131.0.0/16", "104.236.0.0/16", "107.170.0.0/16", "45.55.0.0/16")),
    Network("hosting", "US", "AMAZON-02",
            ("100.20.0.0/16", "100.21.0.0/16", "100.22.0.0/16", "100.23.0.0/16")),
    Network("hosting", "CN", "Shenzhen Tencent Computer Systems Company Limited",
            ("1.116.0.0/16", "1.117.0.0/16", "1.12.0.0/16", "1.13.0.0/16")),
    Network("hosting", "SG", "Hangzhou Alibaba Advertising Co.,Ltd.",
            ("43.16.0.0/16", "43.17.0.0/16", "43.18.0.0/16", "43.19.0.0/16")),
    # residential and mobile networks all over the world: botnets and spam senders
    Network("residential", "BR", "TELEFONICA BRASIL S.A",
            ("152.240.0.0/16", "152.241.0.0/16", "152.242.0.0/16", "152.244.0.0/16")),
    Network("residential", "BR", "Claro NXT Telecomunicacoes Ltda",
            ("177.140.0.0/16", "177.141.0.0/16", "177.142.0.0/16", "177.182.0.0/16")),
    Network("residential", "IN", "Bharti Airtel Ltd., Telemedia Services",
            ("122.164.0.0/16", "122.171.0.0/16", "122.173.0.0/16", "122.176.0.0/16")),
    Network("mobile", "IN", "Reliance Jio Infocomm Limited",
            ("115.240.0.0/16", "115.241.0.0/16", "115.242.0.0/16", "115.243.0.0/16")),
    Network("residential", "VN", "VNPT Corp",
            ("113.160.0.0/16", "113.161.0.0/16", "113.162.0.0/16", "113.163.0.0/16")),
    Network("residential", "VN", "Viettel Group",
            ("115.72.0.0/16", "115.74.0.0/16", "115.75.0.0/16", "115.76.0.0/16")),
    Network("mobile", "ID", "PT. Telekomunikasi Selular",
            ("114.120.0.0/16", "114.121.0.0/16", "114.122.0.0/16", "114.123.0.0/16")),
    Network("residential", "ID", "PT Telekomunikasi Indonesia",
            ("110.136.0.0/16", "110.137.0.0/16", "110.138.0.0/16", "110.139.0.0/16")),
    Network("residential", "CN", "Chinanet",
            ("1.180.0.0/16", "1.181.0.0/16", "1.182.0.0/16", "1.197.0.0/16")),
    Network("residential", "EG", "TE Data",
            ("102.40.0.0/16", "102.41.0.0/16", "102.42.0.0/16", "102.43.0.0/16")),
    Network("residential", "MA", "Itissalat Al-MAGHRIB",
            ("102.48.0.0/16", "102.49.0.0/16", "102.50.0.0/16", "102.54.0.0/16")),
    Network("residential", "DZ", "Telecom Algeria",
            ("105.100.0.0/16", "105.101.0.0/16", "105.102.0.0/16", "105.103.0.0/16")),
    Network("residential", "TR", "Turk Telekom",
            ("195.174.0.0/16", "195.175.0.0/16", "212.175.0.0/16", "78.180.0.0/16")),
    Network("residential", "AR", "Telecom Argentina S.A.",
            ("152.168.0.0/16", "152.169.0.0/16", "152.170.0.0/16", "181.0.0.0/16")),
    Network("mobile", "CO", "COMUNICACION CELULAR S.A. COMCEL S.A.",
            ("181.144.0.0/16", "181.145.0.0/16", "181.146.0.0/16", "181.147.0.0/16")),
    Network("residential", "MX", "UNINET",
            ("148.212.0.0/16", "148.217.0.0/16", "148.223.0.0/16", "187.130.0.0/16")),
    Network("residential", "RU", "Rostelecom",
            ("109.184.0.0/16", "176.209.0.0/16", "176.210.0.0/16", "176.48.0.0/16")),
    Network("residential", "SA", "Saudi Telecom Company JSC",
            ("142.247.0.0/16", "148.111.0.0/16", "149.109.0.0/16", "151.173.0.0/16")),
    Network("residential", "KR", "Korea Telecom",
            ("1.100.0.0/16", "1.101.0.0/16", "1.102.0.0/16", "1.103.0.0/16")),
    Network("residential", "TW", "Data Communication Business Group",
            ("1.160.0.0/16", "1.161.0.0/16", "1.162.0.0/16", "1.163.0.0/16")),
    Network("residential", "PL", "Orange Polska Spolka Akcyjna",
            ("178.43.0.0/16", "178.56.0.0/16", "195.116.0.0/16", "195.117.0.0/16")),
    Network("residential", "UA", "JSC Ukrtelecom",
            ("178.92.0.0/16", "178.93.0.0/16", "178.94.0.0/16", "178.95.0.0/16")),
    Network("residential", "PK", "Pakistan Telecommunication Company Limited",
            ("119.154.0.0/16", "119.158.0.0/16", "182.176.0.0/16", "182.177.0.0/16")),
    Network("residential", "TH", "True Online",
            ("110.168.0.0/16", "110.169.0.0/16", "110.171.0.0/16", "114.109.0.0/16")),
    Network("residential", "PH", "Philippine Long Distance Telephone Company",
            ("112.200.0.0/16", "112.201.0.0/16", "112.202.0.0/16", "112.203.0.0/16")),
    Network("mobile", "ZA", "VODACOM",
            ("105.248.0.0/16", "105.249.0.0/16", "105.250.0.0/16", "105.251.0.0/16")),
    Network("residential", "PE", "Telefonica del Peru S.A.A.",
            ("181.64.0.0/16", "181.65.0.0/16", "181.66.0.0/16", "181.67.0.0/16")),
    Network("residential", "CL", "TELEFONICA CHILE S.A.",
            ("152.172.0.0/16", "152.173.0.0/16", "152.174.0.0/16", "152.175.0.0/16")),
    Network("residential", "IR", "Iran Telecommunication Company PJS",
            ("151.233.0.0/16", "151.235.0.0/16", "2.176.0.0/16", "2.177.0.0/16")),
    Network("residential", "KZ", "JSC Kazakhtelecom",
            ("147.30.0.0/16", "178.88.0.0/16", "178.89.0.0/16", "178.90.0.0/16")),
    Network("residential", "VE", "CANTV Servicios, Venezuela",
            ("161.196.0.0/16", "186.88.0.0/16", "186.89.0.0/16", "186.90.0.0/16")),
    Network("mobile", "KE", "SAFARICOM-LIMITED",
            ("105.160.0.0/16", "105.161.0.0/16", "105.162.0.0/16", "105.163.0.0/16")),
    Network("residential", "RO", "Digi Romania S.A.",
            ("188.24.0.0/16", "188.25.0.0/16", "188.27.0.0/16", "5.12.0.0/16")),
    Network("residential", "JP", "SoftBank Corp.",
            ("1.112.0.0/16", "1.113.0.0/16", "1.114.0.0/16", "1.115.0.0/16")),
)
# fmt: on

HOME_COUNTRIES = ("DE", "AT", "CH", "NL", "FR", "GB", "US")
"""Where the hosting company's customers live (weights in ``population``)."""

ABROAD_COUNTRIES = ("ES", "IT", "PT", "GR")
"""Where travelling customers log in from."""


def networks(kind: str | None = None, country: str | None = None) -> list[Network]:
    """The networks of one kind and/or country, in table order."""
    return [
        network
        for network in NETWORKS
        if (kind is None or network.kind == kind)
        and (country is None or network.country == country)
    ]


def network(country: str, asn: str) -> Network:
    """The one network of ``country`` named ``asn``."""
    for candidate in NETWORKS:
        if candidate.country == country and candidate.asn == asn:
            return candidate
    raise KeyError(f"{country} {asn}")


def foreign_networks(kind: str | None = None) -> list[Network]:
    """Networks outside the customers' home and travel countries (botnets, spam senders)."""
    ours = set(HOME_COUNTRIES) | set(ABROAD_COUNTRIES)
    return [
        network
        for network in NETWORKS
        if network.country not in ours and (kind is None or network.kind == kind)
    ]


class Platform(NamedTuple):
    """A well-known mail platform that delivers to us on port 25."""

    name: str  # reverse-DNS template: {a}..{d} octets, {n} a small number, {x}{y} letters
    cidr: str


# Name shapes copied from real inbound sessions (Postfix client= lines of public logs).
INBOUND_PLATFORMS: tuple[Platform, ...] = (
    Platform("mail-{x}{y}0-f{d}.google.com", "209.85.128.0/17"),
    Platform("mail-{x}{y}{n}on0{d}.outbound.protection.outlook.com", "40.107.0.0/16"),
    Platform("a{c}-{d}.smtp-out.amazonses.com", "54.240.0.0/18"),
    Platform("o{n}x{d}.outbound-mail.sendgrid.net", "167.89.0.0/17"),
    Platform("mail{d}.suw{n}.mcsv.net", "198.2.128.0/18"),
    Platform("mx{d}.g.outbound.createsend.com", "103.28.42.0/24"),
    Platform("mail{x}-{y}{x}.linkedin.com", "108.174.0.0/20"),
)


def platform_client(rng: random.Random) -> tuple[str, str]:
    """``(name, ip)`` of a sending platform's outbound host (forward-confirmed)."""
    platform = rng.choice(INBOUND_PLATFORMS)
    network = ipaddress.ip_network(platform.cidr)
    ip = str(network.network_address + rng.randrange(2, network.num_addresses - 2))
    if ip.endswith((".0", ".255")):
        ip = ip.rpartition(".")[0] + ".7"
    a, b, c, d = ip.split(".")
    letters = "abcdefghijklmnopqrstuvwxyz"
    name = platform.name.format(
        a=a, b=b, c=c, d=d, n=rng.randrange(1, 13), x=rng.choice(letters), y=rng.choice(letters)
    )
    return name, ip
