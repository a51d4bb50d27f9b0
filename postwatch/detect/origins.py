"""Client origins of an account: where its successful logins and messages come from.

For each success from a foreign address (not private, loopback, trusted, or the account's
own trusted networks):

- ``new_country`` (15) / ``new_asn`` (10): the account has a history (learned, or watched for
  ``min_history``) and never confirmed this country / network operator;
- ``client_diversity``: in 24 h, 3+ countries (15, +10 each more), 4+ ASNs (10, +5 each),
  8+ /24 (v4) or /48 (v6) networks (5), at most 35 together;
- ``impossible_travel`` (25): two countries at least ``travel_min_km`` apart within less
  time than ``travel_max_kmh`` allows (the distance is a lower bound: nearest zone cities),
  unless both are confirmed origins of the account (a VPN at home and a phone, say), and
  only for an account with a history;
- ``no_rdns`` (5): the client has no reverse DNS name (``unknown``) and is not in one of
  the account's confirmed networks (a sending server without a PTR is its normal).

Addresses in a provider's rotating ranges count as one origin named after the provider.
"""

from __future__ import annotations

from postwatch.detect.alerts import Finding
from postwatch.detect.state import SubjectState
from postwatch.detect.windows import Distinct
from postwatch.geo import Geo, GeoInfo

SPAN = 86400.0
EVIDENCE_CAP = 10
SAME_CLIENT = 1800.0  # the same address again within this: nothing new to judge


class Places:
    """Distinct origins of one account over the last day."""

    __slots__ = ("asns", "countries", "ips", "last_by_country", "nets")

    def __init__(self) -> None:
        self.ips = Distinct(SPAN, 1000)
        self.nets = Distinct(SPAN, 1000)
        self.asns = Distinct(SPAN, 500)
        self.countries = Distinct(SPAN, 250)
        self.last_by_country: dict[str, tuple[float, GeoInfo]] = {}


class OriginSignal:
    """Judges where an account's successful logins come from."""

    def __init__(
        self, geo: Geo, min_history: float, travel_max_kmh: float, travel_min_km: float
    ) -> None:
        self.geo = geo
        self.min_history = min_history
        self.travel_max_kmh = travel_max_kmh
        self.travel_min_km = travel_min_km

    def on_success(
        self,
        now: float,
        state: SubjectState,
        info: GeoInfo,
        client_name: str,
        learning: bool,
        out: list[Finding],
    ) -> bool:
        """A successful login or message from ``info`` (already known to be foreign);
        False when it was the same client as just before, so nothing was judged."""
        if info.ip == state.last_ip and now - state.last_ip_at < SAME_CLIENT:
            return False
        state.last_ip, state.last_ip_at = info.ip, now
        profile = state.profile
        keys: tuple[tuple[str, str], ...]
        if info.provider:
            keys = (("provider", info.provider),)
        else:
            keys = (
                ("country", info.country),
                ("asn", info.asn),
                ("net", info.netblock),
                ("ip", info.ip),
            )
        if learning:
            for kind, value in keys:
                if value:
                    profile.see_origin(kind, value, now, True)
            return True
        established = profile.established(now, self.min_history)
        novel: dict[str, bool] = {}
        for kind, value in keys:
            if value and not profile.visit_origin(kind, value, now, self.min_history):
                novel[kind] = established
        subject = state.subject
        if novel.get("country") and state.due("new_country", 15, now):
            out.append(
                Finding(subject, "new_country", 15, f"first login from {info.country} ({info.ip})")
            )
        if novel.get("asn") and state.due("new_asn", 10, now):
            out.append(
                Finding(subject, "new_asn", 10, f"first login from network {info.asn} ({info.ip})")
            )
        if novel.get("provider") and state.due("new_asn", 5, now):
            out.append(Finding(subject, "new_asn", 5, f"first login via {info.provider}"))
        unfamiliar = not established or novel.get("net") or novel.get("provider")
        if client_name == "unknown" and unfamiliar and state.due("no_rdns", 5, now):
            out.append(Finding(subject, "no_rdns", 5, f"client {info.ip} has no reverse DNS name"))
        if info.provider:
            return True
        places = state.places
        if places is None:
            places = state.places = Places()
        fresh = places.ips.add(now, info.ip) | places.nets.add(now, info.netblock)
        if info.asn:
            fresh |= places.asns.add(now, info.asn)
        if info.country:
            fresh |= places.countries.add(now, info.country)
            last = places.last_by_country.get(info.country)
            if established and (last is None or len(places.last_by_country) > 1):
                self._travel(now, state, places, info, out)
            else:  # without history, a second device abroad is no news
                places.last_by_country[info.country] = (now, info)
        if fresh:  # the counts only change when something new enters the window
            self._diversity(now, state, places, out)
        return True

    def _diversity(
        self, now: float, state: SubjectState, places: Places, out: list[Finding]
    ) -> None:
        countries, asns, nets = len(places.countries), len(places.asns), len(places.nets)
        points = 0
        if countries >= 3:
            points += 15 + 10 * (countries - 3)
        if asns >= 4:
            points += 10 + 5 * (asns - 4)
        if nets >= 8:
            points += 5
        points = min(points, 35)
        if points and state.due("client_diversity", points, now):
            out.append(
                Finding(
                    state.subject,
                    "client_diversity",
                    points,
                    f"{len(places.ips)} IPs, {nets} networks, {asns} ASNs, "
                    f"{countries} countries in 24h",
                )
            )

    def _travel(
        self, now: float, state: SubjectState, places: Places, info: GeoInfo, out: list[Finding]
    ) -> None:
        last = places.last_by_country
        for country, (seen, where) in list(last.items()):
            if now - seen > SPAN:
                del last[country]
                continue
            if country == info.country or (
                state.profile.origin_known("country", country, now, self.min_history)
                and state.profile.origin_known("country", info.country, now, self.min_history)
            ):
                continue  # both places are the account's usual ones: a habit, not travel
            distance = self.geo.distance_km(where, info)
            if distance is None or distance < self.travel_min_km:
                continue
            hours = max(now - seen, 60.0) / 3600
            if distance / hours > self.travel_max_kmh:
                if state.due("impossible_travel", 25, now):
                    out.append(
                        Finding(
                            state.subject,
                            "impossible_travel",
                            25,
                            f"{where.country} ({where.ip}) and {info.country} "
                            f"({info.ip}) {distance:.0f} km apart within "
                            f"{hours * 60:.0f} min",
                        )
                    )
                break
        last[info.country] = (now, info)

    @staticmethod
    def evidence(state: SubjectState, now: float) -> dict[str, list[str]]:
        places = state.places
        if places is None:
            return {}
        for window in (places.ips, places.nets, places.asns, places.countries):
            window.advance(now)
        return {
            "ips": sorted(map(str, places.ips.keys()))[:EVIDENCE_CAP],
            "countries": sorted(map(str, places.countries.keys()))[:EVIDENCE_CAP],
            "asns": sorted(map(str, places.asns.keys()))[:EVIDENCE_CAP],
        }
