"""Effective Postfix settings: main.cf over defaults, master.cf ``-o`` over main.cf.

A value is looked up in the service's ``-o`` overrides, then main.cf, then the defaults,
and expanded in that same context: ``-o smtpd_relay_restrictions=$mua_relay_restrictions``
reads ``mua_relay_restrictions`` from main.cf, and ``$mynetworks`` inside a list means the
service's own mynetworks when it overrides it.  :meth:`PostfixConfig.effective` also says
where a value came from, so a finding can point at the line to change.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from postwatch.audit.expansion import Lookup, expand, split_list

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
PORT_ROLES = {
    "smtp": "port25",
    "25": "port25",
    "submission": "submission",
    "587": "submission",
    "smtps": "smtps",
    "submissions": "smtps",
    "465": "smtps",
}
ROLE_NAMES = {
    "port25": "port 25",
    "submission": "submission (587)",
    "smtps": "smtps (465)",
    "local": "loopback-only",
    "other": "other smtpd",
}
_MAX_CLASS_DEPTH = 5


class Service(NamedTuple):
    """One master.cf service entry with its ``-o name=value`` overrides."""

    name: str
    type: str
    private: str
    unpriv: str
    chroot: str
    wakeup: str
    maxproc: str
    command: str
    overrides: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()
    line: int = 0

    @property
    def label(self) -> str:
        """``name/type``, the form ``postconf -P`` and ``-F`` address services by."""
        return f"{self.name}/{self.type}"

    def override(self, parameter: str) -> str | None:
        found = None
        for name, value in self.overrides:
            if name == parameter:
                found = value
        return found


class Effective(NamedTuple):
    """A raw (unexpanded) value and where it was set."""

    raw: str
    origin: str  # "master.cf", "main.cf" or "default"
    service: str | None  # label of the service whose -o set it


class SmtpdService(NamedTuple):
    """An smtpd(8) service and the role its listener plays."""

    service: Service
    role: str  # port25 | submission | smtps | local | other

    @property
    def title(self) -> str:
        return f"the {ROLE_NAMES[self.role]} service {self.service.label}"


class PostfixConfig:
    """One Postfix instance's settings, as seen by each of its services."""

    def __init__(
        self,
        main: Mapping[str, str],
        defaults: Mapping[str, str],
        services: Sequence[Service],
        *,
        defaults_source: str,
        master_source: str,
        master_given: bool = True,
        notes: tuple[str, ...] = (),
    ) -> None:
        self.main = dict(main)
        self.defaults = dict(defaults)
        self.services = tuple(services)
        self.defaults_source = defaults_source
        self.master_source = master_source
        self.master_given = master_given  # False: stock services stand in for master.cf
        self.notes = notes
        self.smtpd = self._classify_smtpd()

    # --- values ----------------------------------------------------------------------

    def effective(self, name: str, service: Service | None = None) -> Effective:
        if service is not None:
            value = service.override(name)
            if value is not None:
                return Effective(value, "master.cf", service.label)
        if name in self.main:
            return Effective(self.main[name], "main.cf", None)
        return Effective(self.defaults.get(name, ""), "default", None)

    def is_explicit(self, name: str, service: Service | None = None) -> bool:
        """Whether main.cf or the service's ``-o`` sets ``name`` (not left at default)."""
        return self.effective(name, service).origin != "default"

    def lookup(self, service: Service | None) -> Lookup:
        def find(name: str) -> str | None:
            if service is not None:
                value = service.override(name)
                if value is not None:
                    return value
            if name in self.main:
                return self.main[name]
            return self.defaults.get(name)

        return find

    def get(self, name: str, service: Service | None = None) -> str:
        """The expanded value of ``name`` in the context of ``service``."""
        return expand(self.effective(name, service).raw, self.lookup(service)).strip()

    def flag(self, name: str, service: Service | None = None) -> bool:
        return self.get(name, service).lower() in ("yes", "true", "on", "1")

    def number(self, name: str, service: Service | None = None) -> int:
        """An integer setting; unset or unparsable counts as 0."""
        try:
            return int(self.get(name, service))
        except ValueError:
            return 0

    def items(self, name: str, service: Service | None = None) -> list[str]:
        """A list setting split at commas and whitespace."""
        return split_list(self.get(name, service))

    def restrictions(self, name: str, service: Service | None = None) -> list[str]:
        """A restriction list with restriction classes replaced by their contents."""
        classes = set(self.items("smtpd_restriction_classes", service))
        return self._inline_classes(self.items(name, service), classes, service, 0)

    def _inline_classes(
        self, tokens: list[str], classes: set[str], service: Service | None, depth: int
    ) -> list[str]:
        out: list[str] = []
        for token in tokens:
            if token in classes and depth < _MAX_CLASS_DEPTH:
                inner = self.items(token, service)
                out += self._inline_classes(inner, classes, service, depth + 1)
            else:
                out.append(token)
        return out

    def tls_mode(self, service: Service | None = None) -> str:
        """``wrapper``, ``encrypt``, ``may`` or ``none`` for an smtpd service."""
        if self.flag("smtpd_tls_wrappermode", service):
            return "wrapper"
        level = self.get("smtpd_tls_security_level", service).lower()
        if level in ("encrypt", "may", "none"):
            return level
        if not level:  # the pre-2.3 parameters decide when the level is empty
            if self.flag("smtpd_enforce_tls", service):
                return "encrypt"
            if self.flag("smtpd_use_tls", service):
                return "may"
        return "none"

    # --- services --------------------------------------------------------------------

    def _classify_smtpd(self) -> tuple[SmtpdService, ...]:
        # postscreen on port 25 hands clients to the pass service named smtpd_service_name
        pass_names = {
            self.get("smtpd_service_name", service) or "smtpd"
            for service in self.services
            if service.type == "inet"
            and service.command == "postscreen"
            and _inet_role(service.name) == "port25"
        }
        found: list[SmtpdService] = []
        for service in self.services:
            if service.command != "smtpd":
                continue
            if service.type == "inet":
                role = _inet_role(service.name)
            elif service.type == "pass" and service.name in pass_names:
                role = "port25"
            else:
                role = "other"
            found.append(SmtpdService(service, role))
        return tuple(found)

    def smtpd_services(self, *roles: str) -> list[SmtpdService]:
        """smtpd services with one of ``roles`` (all public roles when none are given)."""
        wanted = roles or ("port25", "submission", "smtps")
        return [entry for entry in self.smtpd if entry.role in wanted]

    def service(self, name: str, type_: str) -> Service | None:
        for service in self.services:
            if service.name == name and service.type == type_:
                return service
        return None

    def by_command(self, command: str) -> list[Service]:
        return [service for service in self.services if service.command == command]

    # --- fixes -----------------------------------------------------------------------

    def fix(self, name: str, value: str, service: Service | None = None) -> str:
        """The command that sets ``name`` where its current value comes from."""
        if service is not None and service.override(name) is not None:
            return set_in_service(service, name, value)
        return set_in_main(name, value)


def set_in_main(name: str, value: str) -> str:
    return f"postconf -e {shlex.quote(f'{name} = {value}')}"


def set_in_service(service: Service, name: str, value: str) -> str:
    return f"postconf -P {shlex.quote(f'{service.label}/{name}={value}')}"


def _inet_role(name: str) -> str:
    host, colon, port = name.rpartition(":")
    if not colon:
        host, port = "", name
    if host.lower() in LOOPBACK_HOSTS:
        return "local"
    return PORT_ROLES.get(port.lower(), "other")
