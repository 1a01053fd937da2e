"""The fleet inventory as Nornir resolves it (loaded by runner.inventory.loading): target
selection, per-host connection parameters, credentials, with Nornir's inheritance."""

from __future__ import annotations

import bisect
import fnmatch
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Host,
    Inventory,
    ParentGroups,
)

from runner.drivers.base import SECRET_EXTRAS, ConnectParams
from runner.drivers.registry import builtin_drivers
from runner.errors import InputError, InventoryError
from runner.inventory import platforms
from runner.inventory.secretref import SecretRef, SecretResolver
from runner.inventory.targets import Targets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Where:
    """Where something was written in an inventory file: errors found later name it."""

    path: Path
    line: int | None
    field: str

    def error(self, message: str) -> InventoryError:
        return InventoryError(message, path=self.path, line=self.line, field=self.field)


@dataclass
class Origins:
    """Lines of the loaded files: each host's entry, and each platform where written
    (keys ("host", name), ("group", name), ("defaults", ""))."""

    hosts: dict[str, Where] = field(default_factory=dict)
    platforms: dict[tuple[str, str], Where] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceFacts:
    """What a device search compares (FleetInventory.facts_table)."""

    name: str
    lname: str
    lhostname: str
    groups: frozenset[str]
    platform: str | None


_ATTRS = ("hostname", "port", "username", "password", "platform")  # Nornir's inherited ones
_MISSING = object()


class _Chain:
    """What hosts of the same groups inherit (from those groups, recursively, and the
    defaults), resolved by Nornir itself, once, on a host of those groups that sets nothing
    of its own: a run asks ~10 lookups a device, each walking the groups anew, and a fleet's
    hosts share a few group lists."""

    __slots__ = ("_data", "attrs", "found", "names", "options", "probe")

    def __init__(self, host: Host, defaults: Defaults) -> None:
        self.probe = Host(name="", groups=ParentGroups(host.groups), defaults=defaults)
        self.names = tuple(g.name for g in host.groups)
        self.attrs = {a: getattr(self.probe, a) for a in _ATTRS}
        self.found: dict[str, Any] = {}  # data key -> inherited value, or _MISSING
        self.options: dict[str, ConnectionOptions] = {}  # driver -> inherited options
        self._data: dict[str, Any] | None = None

    def value(self, key: str) -> Any:
        """Inherited data `key` as Host.__getitem__ finds it, else _MISSING."""
        found = self.found.get(key, self.found)
        if found is self.found:
            try:
                found = self.probe[key]
            except KeyError:
                found = _MISSING
            self.found[key] = found
        return found

    def data(self) -> dict[str, Any]:
        """Inherited data in Host.extended_data's order (not to be changed: shared)."""
        if self._data is None:
            self._data = self.probe.extended_data()
        return self._data

    def connection(self, driver: str) -> ConnectionOptions:
        """The groups' and defaults' connection_options for `driver`, merged as Nornir
        merges them under a host without its own entry for it (not to be changed)."""
        found = self.options.get(driver)
        if found is None:
            # never None: a host without its own entry starts from an empty one
            found = self.probe._get_connection_options_recursively(driver) \
                or ConnectionOptions()
            self.options[driver] = found
        return found


MATCHES_FOUND = 1000  # hosts a search finds in the text before testing the rest one by one


class FleetInventory:
    """A loaded inventory; hosts keep Nornir's group/default inheritance. Credentials may
    be secret references (SecretRef), resolved only when a session needs them."""

    def __init__(self, inventory: Inventory, source: Path, origins: Origins | None = None,
                 default_platform: str | None = None) -> None:
        self.nornir = inventory
        self.source = source
        self.origins = origins or Origins()
        # The job's `platform:`, for hosts whose inventory resolves none.
        self.default_platform = default_platform
        self._facts: list[DeviceFacts] | None = None
        self._members: dict[str, list[DeviceFacts]] | None = None
        self._text: tuple[str, list[int]] | None = None
        self._platforms: list[str] | None = None
        self._credentials: dict[tuple[object, ...],
                                tuple[frozenset[object], frozenset[object]]] = {}
        self._platform_of: dict[str, str | None] = {}  # a run asks ~7 times per device
        self._chains: dict[tuple[int, ...], _Chain] = {}  # by the ids of a host's groups
        self._platform_attrs: dict[str, str] = {}  # driver -> its ConnectParams platform attr

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (engine processes) without the caches keyed by objects' ids: there,
        those ids may name other objects."""
        return {**self.__dict__, "_chains": {}, "_credentials": {}}

    def with_platform(self, platform: str | None) -> FleetInventory:
        """This inventory for a job that names a platform for hosts that have none (the
        hosts are shared, not copied)."""
        if platform is None or platform == self.default_platform:
            return self
        view = FleetInventory(self.nornir, self.source, self.origins, platform)
        view._credentials = self._credentials
        view._chains = self._chains
        return view

    @property
    def hosts(self) -> Mapping[str, Host]:
        return self.nornir.hosts

    def facts_table(self) -> list[DeviceFacts]:
        """Each host's name and address (lower case), every group it is in (through its
        groups' groups) and platform, made once per inventory: a search of 100,000 devices
        compares strings and sets instead of resolving each host's inheritance again."""
        if self._facts is None:
            self._facts = [DeviceFacts(
                name, name.lower(), str(host.hostname or "").lower(),
                frozenset(g.name for g in host.extended_groups()), self.platform_of(name))
                for name, host in self.nornir.hosts.items()]
        return self._facts

    def matching(self, needle: str) -> list[DeviceFacts]:
        """The facts of the hosts whose name or address holds `needle` (lower case), in
        inventory order: found in one text of every name and address, made once per
        inventory (str.find over 100,000 devices instead of two tests per device)."""
        table = self.facts_table()
        if not needle or "\n" in needle or "\t" in needle:
            return [f for f in table if needle in f.lname or needle in f.lhostname]
        if self._text is None:
            starts, at = [], 0
            for facts in table:
                starts.append(at)
                at += len(facts.lname) + len(facts.lhostname) + 2
            self._text = ("".join(f"{f.lname}\t{f.lhostname}\n" for f in table), starts)
        text, starts = self._text
        found: list[DeviceFacts] = []
        at = text.find(needle)
        index = 0
        while at >= 0:
            index = bisect.bisect_right(starts, at, index) - 1
            found.append(table[index])
            index += 1  # on to the next host: this one is in
            if len(found) >= MATCHES_FOUND:  # most hosts match: test the rest one by one
                return found + [f for f in table[index:]
                                if needle in f.lname or needle in f.lhostname]
            at = text.find(needle, starts[index]) if index < len(starts) else -1
        return found

    def platforms(self) -> list[str]:
        """The platforms the hosts resolve to, sorted (made once per inventory)."""
        if self._platforms is None:
            self._platforms = sorted({f.platform for f in self.facts_table() if f.platform})
        return self._platforms

    def group_members(self, group: str) -> list[DeviceFacts]:
        """The facts of the hosts in `group` (through groups' groups), in inventory order:
        made once per inventory with the facts (a search of one site of 100,000 devices
        does not test every device's groups)."""
        if self._members is None:
            members: dict[str, list[DeviceFacts]] = {}
            for facts in self.facts_table():
                for name in facts.groups:
                    members.setdefault(name, []).append(facts)
            self._members = members
        return self._members.get(group, [])

    # ---- one host's values, with inheritance: what Nornir's Host gives, without walking
    # the groups for each value (tests/unit/test_inventory_lookups.py compares the two)

    def _chain(self, host: Host) -> _Chain:
        """The inherited values of hosts with the groups of `host`, made once."""
        key = tuple(map(id, object.__getattribute__(host, "groups")))
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = _Chain(host, self.nornir.defaults)
        return chain

    @staticmethod
    def _attr(host: Host, chain: _Chain, attr: str) -> Any:
        """host.<attr> (hostname, port, username, password, platform) as Nornir gives it;
        `chain`: the host's."""
        own = object.__getattribute__(host, attr)
        return own if own is not None else chain.attrs[attr]

    def _value(self, host: Host, dotted: str, chain: _Chain | None = None) -> Any:
        """Inventory data by (dotted) key, with inheritance, attributes like platform too;
        None when not found. `chain`: the host's, when the caller has it."""
        first, *rest = dotted.split(".") if "." in dotted else (dotted,)
        own = object.__getattribute__(host, "data")
        value: Any
        if first == "name":
            value = host.name
        elif first in ("platform", "hostname", "port", "username"):
            value = self._attr(host, chain or self._chain(host), first)
        elif first in own:
            value = own[first]
        else:
            value = (chain or self._chain(host)).value(first)
            if value is _MISSING:
                return None
        return dotted_in(value, rest)

    def _options(self, host: Host, chain: _Chain, driver: str) -> ConnectionOptions:
        """host.get_connection_parameters(driver), as Nornir gives it; `chain`: the
        host's."""
        if driver in object.__getattribute__(host, "connection_options"):
            return host.get_connection_parameters(driver)  # its own entry: Nornir merges it
        r = chain.connection(driver)
        attr = self._attr
        return ConnectionOptions(
            hostname=r.hostname if r.hostname is not None else attr(host, chain, "hostname"),
            port=r.port if r.port is not None else attr(host, chain, "port"),
            username=r.username if r.username is not None else attr(host, chain, "username"),
            password=r.password if r.password is not None else attr(host, chain, "password"),
            platform=r.platform if r.platform is not None else attr(host, chain, "platform"),
            extras=r.extras if r.extras is not None else {})

    def platform_of(self, name: str) -> str | None:
        """The host's platform as Nornir resolves it (host, groups, defaults), else the
        job's."""
        if name in self._platform_of:
            return self._platform_of[name]
        host = self.nornir.hosts[name]
        raw = self._attr(host, self._chain(host), "platform") or self.default_platform
        # runner's name for napalm's `eos` and the like; an unknown name stays for the error
        found = self._platform_of[name] = (platforms.canonical(raw) or raw) if raw else raw
        return found

    def select(self, targets: Targets, limit: str | None = None) -> list[str]:
        """Host names for a job's targets (unknown names are InputErrors), then --limit.
        A chosen host without a platform runner knows is an InventoryError naming it."""
        hosts = self.nornir.hosts
        for key, names in (("hosts", targets.hosts), ("exclude", targets.exclude)):
            for i, name in enumerate(names):
                if name not in hosts:
                    raise InputError(f"host {name!r} is not in the inventory ({self.source})",
                                     field=f"{key}[{i}]")
        for i, group in enumerate(targets.groups):
            if group not in self.nornir.groups:
                raise InputError(f"group {group!r} is not in the inventory ({self.source})",
                                 field=f"groups[{i}]")
        if targets.hosts or targets.groups:
            chosen = [n for n, h in hosts.items()
                      if n in targets.hosts or any(h.has_parent_group(g) for g in targets.groups)]
        else:
            chosen = list(hosts)
        if targets.platforms:
            chosen = [n for n in chosen if self.platform_of(n) in targets.platforms]
        for key, wanted in targets.where.items():
            accepted = wanted if isinstance(wanted, list) else [wanted]
            if key == "platform":
                accepted = [platforms.canonical(str(a)) or a for a in accepted]
            chosen = [n for n in chosen if (self.platform_of(n) if key == "platform"
                                            else self._value(hosts[n], key)) in accepted]
        chosen = [n for n in chosen if n not in targets.exclude]
        if limit:
            patterns = [p.strip() for p in limit.split(",") if p.strip()]
            chosen = [n for n in chosen if any(
                fnmatch.fnmatchcase(n, p) or hosts[n].has_parent_group(p) for p in patterns)]
        self._check_platforms(chosen)
        return chosen

    def _check_platforms(self, chosen: list[str]) -> None:
        """Every chosen host has a platform runner knows: else one error naming the first
        such host, where its platform was written (or the host, when it has none)."""
        missing = [n for n in chosen if not self.platform_of(n)]
        unknown = [n for n in chosen if n not in missing
                   and platforms.get(self.platform_of(n) or "") is None]
        known = ", ".join(platforms.names())
        if missing:
            name = missing[0]
            where = self.origins.hosts.get(name, Where(self.source, None, name))
            raise where.error(
                f"host {name!r} has no platform (set it on the host, a group or defaults, or "
                f"give the job a `platform:`; runner knows {known})" + _more(missing))
        if unknown:
            name = unknown[0]
            raise self._platform_origin(name).error(
                f"host {name!r}: {platforms.unknown(self.platform_of(name) or '')}"
                + _more(unknown))
        untested = set(platforms.untested())
        for platform in sorted({self.platform_of(n) or "" for n in chosen} & untested):
            hosts = [n for n in chosen if self.platform_of(n) == platform]
            log.warning("platform %s (hosts %s) is untested: its settings in platforms.yaml "
                        "are IOS's and no test has run against such a device",
                        platform, ", ".join(hosts[:5]) + (f" and {len(hosts) - 5} more"
                                                          if len(hosts) > 5 else ""))

    def _platform_origin(self, name: str) -> Where:
        """Where the host's platform was written, in Nornir's order of resolution."""
        host = self.nornir.hosts[name]
        keys = [("host", name)]
        if object.__getattribute__(host, "platform") is None:
            keys = [("group", g.name) for g in host.extended_groups()
                    if object.__getattribute__(g, "platform") is not None] + [("defaults", "")]
        return self.origins.platforms.get(keys[0], Where(self.source, None, f"{name}.platform"))

    def driver_for(self, name: str, default: str) -> str:
        """The host's (or its groups', or the defaults') `driver` data, else the job's
        default; an unknown driver name was refused where it was written, at load time."""
        value = self._value(self.nornir.hosts[name], "driver")
        return default if value is None else str(value)

    def address(self, name: str, driver: str) -> tuple[str, int]:
        """(hostname, port) a session to the host goes to; no secret is read."""
        host = self.nornir.hosts[name]
        opts = self._options(host, self._chain(host), driver)
        return opts.hostname or name, opts.port or 22

    @property
    def directory(self) -> Path:
        """The inventory's directory (of its hosts file, for a single-file inventory):
        where its `{file: ...}` secret references may point without RUNNER_SECRETS_DIR."""
        return self.source if self.source.is_dir() else self.source.parent

    def secret_refs(self, name: str, driver: str) -> list[SecretRef]:
        """The secret references a session to the host with this driver reads."""
        host = self.nornir.hosts[name]
        opts = self._options(host, self._chain(host), driver)
        values: list[object] = [opts.username, opts.password,
                                *((opts.extras or {}).get(k) for k in SECRET_EXTRAS)]
        return [v for v in values if isinstance(v, SecretRef)]

    def session_refs(self, names: list[str], default_driver: str) -> list[SecretRef]:
        """Each secret reference the sessions to these hosts read, once, in host order
        (secret_refs with each host's driver_for): looked up once per group list for hosts
        with no driver, credentials or connection_options of their own (100,000 hosts that
        share their defaults' password name it once)."""
        refs: dict[SecretRef, None] = {}
        shared: set[tuple[int, ...]] = set()  # group lists looked up
        hosts = self.nornir.hosts
        for name in names:
            host = hosts[name]
            if "driver" in object.__getattribute__(host, "data") \
                    or object.__getattribute__(host, "connection_options") \
                    or object.__getattribute__(host, "username") is not None \
                    or object.__getattribute__(host, "password") is not None:
                refs.update(dict.fromkeys(self.secret_refs(
                    name, self.driver_for(name, default_driver))))
                continue
            key = tuple(map(id, object.__getattribute__(host, "groups")))
            if key not in shared:  # its driver and credentials are its groups' (defaults')
                shared.add(key)
                refs.update(dict.fromkeys(self.secret_refs(
                    name, self.driver_for(name, default_driver))))
        return list(refs)

    def connect_params(self, name: str, driver: str,
                       resolver: SecretResolver | None = None) -> ConnectParams:
        """What a session needs; secret references are read now, on this machine
        (SecretUnavailable when one cannot be)."""
        resolver = resolver or SecretResolver([self.directory])
        host = self.nornir.hosts[name]
        chain = self._chain(host)
        opts = self._options(host, chain, driver)
        platform = self.platform_of(name) or ""
        plat = platforms.get(platform)
        # An explicit per-driver platform wins; else the driver's name for runner's platform.
        attr = self._platform_attrs.get(driver)
        if attr is None:
            attr = self._platform_attrs[driver] = builtin_drivers().get(driver).platform_attr
        own = opts.platform if opts.platform != self._attr(host, chain, "platform") else None
        driver_platform = own or (getattr(plat, attr) if plat else platform)
        checking = self._value(host, "host_key_checking", chain)
        extras = {key: resolver.value(value) if key in SECRET_EXTRAS else value
                  for key, value in (opts.extras or {}).items()}
        return ConnectParams(
            host=name, hostname=opts.hostname or name, port=opts.port or 22,
            username=resolver.value(opts.username), password=resolver.value(opts.password),
            platform=platform, driver_platform=driver_platform, extras=extras,
            host_key_checking=checking is not False,
        )

    def template_vars(self, name: str) -> dict[str, Any]:
        host = self.nornir.hosts[name]
        chain = self._chain(host)
        inherited = chain.data()
        own = object.__getattribute__(host, "data")
        # Host.extended_data's order: the host's own keys, then the inherited others
        data = {**own, **{k: v for k, v in inherited.items() if k not in own}} if own \
            else dict(inherited)
        return {"name": name, "hostname": self._attr(host, chain, "hostname"),
                "platform": self.platform_of(name), "groups": list(chain.names),
                "data": data}

    def credentials(self, names: list[str], resolver: SecretResolver | None
                    ) -> tuple[set[str], set[str]]:
        """(secret values, usernames) of these hosts, to be masked wherever they might leak.
        Secret references count when `resolver` can read them here; without a resolver
        (a dispatcher: workers read them) they are left out."""
        values: set[str] = set()
        usernames: set[str] = set()
        for name in names:
            found, users, _ = self.host_credentials(name, resolver)
            values |= found
            usernames |= users
        return values, usernames

    def credentials_key(self, name: str) -> tuple[object, ...]:
        """What the host's credentials (every driver's) depend on: the host itself when it
        has credentials or connection_options of its own, else its groups (the same groups
        and defaults give the same credentials)."""
        host = self.nornir.hosts[name]
        own = object.__getattribute__(host, "username") is not None \
            or object.__getattribute__(host, "password") is not None \
            or bool(object.__getattribute__(host, "connection_options"))
        return ("host", name) if own else ("groups", *map(id, host.groups))

    def host_credentials(self, name: str, resolver: SecretResolver | None
                         ) -> tuple[set[str], set[str], bool]:
        """credentials([name], resolver), and whether they are settled: every reference
        among them read already (or left out: no resolver), so that asking again for a host
        of the same credentials_key gives the same (a reference not read yet may be readable
        later)."""
        key = self.credentials_key(name)
        # Resolved once per group list, not once per host (1,000 hosts, a few groups).
        if key not in self._credentials:
            self._credentials[key] = self._raw_credentials(name)
        raw_values, raw_users = self._credentials[key]
        values: set[str] = set()
        settled = True
        for value in raw_values:
            known = resolver.known(value) if resolver else value
            if isinstance(known, str) and known:
                values.add(known)
            elif known is None and resolver is not None:
                settled = False
        return values, {u for u in raw_users if isinstance(u, str)}, settled

    def _raw_credentials(self, name: str) -> tuple[frozenset[object], frozenset[object]]:
        """Secret values (or references) and plain usernames, for every driver."""
        values: set[object] = set()
        usernames: set[object] = set()
        host = self.nornir.hosts[name]
        for driver in builtin_drivers().names():
            opts = host.get_connection_parameters(driver)
            # references are kept in Nornir's str fields (see _Reader)
            password: object = opts.password
            username: object = opts.username
            if password:
                values.add(password)
            if isinstance(username, SecretRef):  # referenced: a secret like the rest
                values.add(username)
            elif username:
                usernames.add(username)
            for key in SECRET_EXTRAS:
                value = (opts.extras or {}).get(key)
                if isinstance(value, str | SecretRef):
                    values.add(value)
        return frozenset(values), frozenset(usernames)


def _more(names: list[str]) -> str:
    rest = names[1:]
    if not rest:
        return ""
    shown_names = ", ".join(rest[:5]) + (", ..." if len(rest) > 5 else "")
    return f"; {len(rest)} more targeted host(s) too: {shown_names}"


def dotted_in(value: Any, parts: list[str]) -> Any:
    """`value`'s nested item under `parts` (keys of mappings, one level each), or None."""
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value
