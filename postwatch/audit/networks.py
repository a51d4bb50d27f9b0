"""How much a ``mynetworks`` entry trusts: a loopback or single host, or a whole network.

Every client in ``mynetworks`` relays without a password under the usual
``permit_mynetworks`` and is exempt from the anvil rate limits, so the size and kind of
each network decide how bad a broad entry is.  Container ranges get their own label:
a container that is compromised (or merely misconfigured) sits inside them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

from postwatch.audit.expansion import split_list
from postwatch.audit.findings import Severity

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Address pools that container runtimes hand out by default: Docker's bridge pools
# (172.17.0.0/16 to 172.31.0.0/16 and 192.168.0.0/16 in /20 steps), Podman's 10.88.0.0/16,
# and the Kubernetes pod ranges of k3s (10.42.0.0/16) and flannel (10.244.0.0/16).
CONTAINER_POOLS = tuple(
    ipaddress.ip_network(text)
    for text in (
        "172.17.0.0/16",
        "172.18.0.0/15",
        "172.20.0.0/14",
        "172.24.0.0/13",
        "192.168.0.0/16",
        "10.88.0.0/16",
        "10.42.0.0/16",
        "10.244.0.0/16",
    )
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
ULA = ipaddress.ip_network("fc00::/7")
_HOSTNAME = re.compile(r"\.?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9-]+)*\.?\Z")


class NetworkRisk(NamedTuple):
    """One mynetworks entry and what trusting it means."""

    entry: str
    severity: Severity | None  # None: loopback, a single host, or an exclusion
    reason: str


def assess(value: str) -> list[NetworkRisk]:
    """Each entry of an (expanded) mynetworks value, assessed; duplicates once."""
    seen: dict[str, NetworkRisk] = {}
    for entry in split_list(value):
        if entry not in seen:
            seen[entry] = assess_entry(entry)
    return list(seen.values())


def assess_entry(entry: str) -> NetworkRisk:
    if entry.startswith("!"):
        return NetworkRisk(entry, None, "exclusion")
    if entry.startswith("/"):
        return NetworkRisk(entry, Severity.INFO, "a file whose contents this audit cannot see")
    if ":" in entry and not entry.startswith("["):
        return NetworkRisk(entry, Severity.INFO, "a lookup table this audit cannot see into")
    network = parse_network(entry)
    if network is None:
        if _HOSTNAME.match(entry):
            return NetworkRisk(
                entry,
                Severity.MEDIUM,
                "a host or domain name: every client whose verified name matches is trusted",
            )
        return NetworkRisk(entry, Severity.INFO, "not an address Postfix can match")
    return _assess_network(entry, network)


def parse_network(entry: str) -> Network | None:
    """``1.2.3.0/24``, ``1.2.3.4``, ``[2001:db8::]/32`` or ``[::1]``; None otherwise."""
    text = entry
    if text.startswith("["):
        address, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith("/")):
            return None
        text = address + rest
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # [::ffff:127.0.0.0]/104 is 127.0.0.0/8
            return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}", strict=False)
    return network


def _size(network: Network) -> str:
    count = network.num_addresses
    if count >= 2**32:
        return f"2^{network.max_prefixlen - network.prefixlen} addresses"
    return f"{count:,} addresses"


def _assess_network(entry: str, network: Network) -> NetworkRisk:
    host_bits = network.max_prefixlen - network.prefixlen
    if host_bits == 0 or network.is_loopback:
        return NetworkRisk(entry, None, "loopback" if network.is_loopback else "a single host")
    size = _size(network)
    if network.prefixlen < (8 if network.version == 4 else 16):
        return NetworkRisk(entry, Severity.CRITICAL, f"{size}: a large part of the Internet")
    if network.is_link_local:
        return NetworkRisk(entry, Severity.HIGH, "link-local: any device on the local link")
    if network.version == 4:
        return _assess_ipv4(entry, network, size)
    if network.subnet_of(ULA):  # type: ignore[arg-type]
        severity = Severity.HIGH if network.prefixlen <= 48 else Severity.MEDIUM
        return NetworkRisk(entry, severity, f"IPv6 unique-local network, {size}")
    if network.is_global:
        severity = Severity.CRITICAL if network.prefixlen <= 48 else Severity.HIGH
        return NetworkRisk(entry, severity, f"public network, {size}")
    return NetworkRisk(entry, Severity.LOW, f"reserved range, {size}")


def _assess_ipv4(entry: str, network: Network, size: str) -> NetworkRisk:
    container = network.prefixlen <= 20 and any(
        network.subnet_of(pool)  # type: ignore[arg-type]
        for pool in CONTAINER_POOLS
        if pool.version == 4
    )
    if network.is_private or network.subnet_of(CGNAT):  # type: ignore[arg-type]
        if container:
            return NetworkRisk(entry, Severity.HIGH, f"a container network, {size}")
        if network.prefixlen <= 16:
            return NetworkRisk(entry, Severity.HIGH, f"private network, {size}")
        if network.prefixlen <= 24:
            return NetworkRisk(entry, Severity.MEDIUM, f"private network, {size}")
        return NetworkRisk(entry, Severity.LOW, f"private network, {size}")
    if network.is_global:
        if network.prefixlen <= 16:
            return NetworkRisk(entry, Severity.CRITICAL, f"public network, {size}")
        if network.prefixlen <= 24:
            return NetworkRisk(entry, Severity.HIGH, f"public network, {size}")
        return NetworkRisk(entry, Severity.MEDIUM, f"public network, {size}")
    return NetworkRisk(entry, Severity.LOW, f"reserved range, {size}")
