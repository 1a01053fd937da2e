"""The fleet inventory: Nornir SimpleInventory files (or containerlab's flat file), checked with
file:line errors, target selection, and per-host connection parameters."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from nornir.core.inventory import (
    ConnectionOptions,
    Defaults,
    Group,
    Groups,
    Host,
    Hosts,
    Inventory,
    ParentGroups,
)
from pydantic import BeforeValidator, ConfigDict, Field, RootModel

from runner import platforms
from runner.drivers.base import ConnectParams
from runner.drivers.registry import DRIVERS, builtin_drivers
from runner.errors import InputError, InventoryError
from runner.job.spec import Targets
from runner.validation import Loc, Strict, YamlSource, problem, shown
from runner.yamlsrc import LineDict, line_of, load_yaml


class FleetInventory:
    """A loaded inventory; hosts keep Nornir's group/default inheritance."""

    def __init__(self, inventory: Inventory, source: Path) -> None:
        self.nornir = inventory
        self.source = source
        self._secrets: dict[str, frozenset[str]] = {}

    @property
    def hosts(self) -> Mapping[str, Host]:
        return self.nornir.hosts

    def select(self, targets: Targets, limit: str | None = None) -> list[str]:
        """Host names for a job's targets (unknown names are InputErrors), then --limit."""
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
            chosen = [n for n in chosen if hosts[n].platform in targets.platforms]
        for key, wanted in targets.where.items():
            accepted = wanted if isinstance(wanted, list) else [wanted]
            chosen = [n for n in chosen if _lookup(hosts[n], key) in accepted]
        chosen = [n for n in chosen if n not in targets.exclude]
        if limit:
            patterns = [p.strip() for p in limit.split(",") if p.strip()]
            chosen = [n for n in chosen if any(
                fnmatch.fnmatchcase(n, p) or hosts[n].has_parent_group(p) for p in patterns)]
        for name in chosen:
            if not hosts[name].platform:
                raise InventoryError(f"host {name!r} has no platform (set it on the host, a "
                                     f"group or defaults; runner knows "
                                     f"{', '.join(platforms.names())})", path=self.source)
        return chosen

    def driver_for(self, name: str, default: str) -> str:
        """The host's (or its groups', or the defaults') `driver` data, else the job's
        default; an unknown driver name was refused where it was written, at load time."""
        value = _lookup(self.nornir.hosts[name], "driver")
        return default if value is None else str(value)

    def connect_params(self, name: str, driver: str) -> ConnectParams:
        host = self.nornir.hosts[name]
        opts = host.get_connection_parameters(driver)
        platform = host.platform or ""
        plat = platforms.get(platform)
        # An explicit per-driver platform wins; else the driver's name for runner's platform.
        attr = builtin_drivers().get(driver).platform_attr
        driver_platform = opts.platform if opts.platform and opts.platform != platform \
            else (getattr(plat, attr) if plat else platform)
        checking = _lookup(host, "host_key_checking")
        return ConnectParams(
            host=name, hostname=opts.hostname or name, port=opts.port or 22,
            username=opts.username, password=opts.password, platform=platform,
            driver_platform=driver_platform, extras=dict(opts.extras or {}),
            host_key_checking=checking is not False,
        )

    def template_vars(self, name: str) -> dict[str, Any]:
        host = self.nornir.hosts[name]
        return {"name": name, "hostname": host.hostname, "platform": host.platform,
                "groups": [g.name for g in host.groups], "data": dict(host.items())}

    def secrets(self, names: list[str]) -> set[str]:
        """Credential values of these hosts, to be masked wherever they might leak."""
        values: set[str] = set()
        for name in names:
            host = self.nornir.hosts[name]
            # Hosts without credentials of their own share their groups' and the defaults':
            # resolved once per group list, not once per host (1,000 hosts, a few groups).
            own = any(object.__getattribute__(host, a) is not None
                      for a in ("username", "password")) or \
                bool(object.__getattribute__(host, "connection_options"))
            key = name if own else "\0groups:" + ",".join(g.name for g in host.groups)
            if key not in self._secrets:
                self._secrets[key] = frozenset(self._host_secrets(name))
            values |= self._secrets[key]
        return values

    def _host_secrets(self, name: str) -> set[str]:
        values: set[str] = set()
        host = self.nornir.hosts[name]
        for driver in DRIVERS:
            opts = host.get_connection_parameters(driver)
            if opts.password and opts.password != opts.username:
                values.add(opts.password)
            for key in ("passphrase", "auth_private_key_passphrase", "secret",
                        "private_key_passphrase"):
                value = (opts.extras or {}).get(key)
                if isinstance(value, str):
                    values.add(value)
        return values


def _lookup(host: Host, dotted: str) -> Any:
    """Inventory data by (dotted) key, with inheritance; attributes like platform too."""
    first, *rest = dotted.split(".")
    if first in ("platform", "hostname", "port", "username", "name"):
        value: Any = getattr(host, first)
    else:
        try:
            value = host[first]
        except KeyError:
            return None
    for part in rest:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


# ---- the files' structure ------------------------------------------------------------


def _port(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise problem("expected a TCP port number")
    return value


def _group_names(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise problem("expected a list of group names")
    return value


def _mapping(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise problem("expected a mapping")
    return value


Port = Annotated[int, BeforeValidator(_port)]
# A host's, group's or the defaults' `port:` or `groups:` written without a value is an error
# (the validator runs before pydantic's None check), as it always was.
WrittenPort = Annotated[int | None, BeforeValidator(_port)]
Data = Annotated[dict[Any, Any] | None, BeforeValidator(_mapping)]
Name = Annotated[str, BeforeValidator(str)]  # YAML may read a name such as 7 as a number


class _Entry(Strict):
    not_a_mapping = "expected a mapping"


class ExtrasEntry(_Entry):
    """`connection_options.<driver>.extras`: the driver's own options. Those runner or its
    drivers read are typed here (a secret of 12345 is refused where it is written, not
    found by a session); any other key goes to the driver as written."""

    model_config = ConfigDict(extra="allow", frozen=True)
    unknown_field = None

    secret: str | None = None
    passphrase: str | None = None
    private_key_passphrase: str | None = None
    auth_private_key_passphrase: str | None = None
    private_key_path: str | None = None
    key_file: str | None = None
    alt_key_file: str | None = None
    known_hosts: str | None = None
    known_hosts_path: str | None = None
    transport: Literal["bin", "ssh2"] | None = None
    strict_host_keys: bool | None = None
    enable_strict_key: bool | None = None
    ssh_strict: bool | None = None
    system_host_keys: bool | None = None
    alt_host_keys: bool | None = None
    use_keys: bool | None = None
    allow_agent: bool | None = None
    keepalive: Annotated[float, Field(ge=0)] | None = None


class ConnectionOptionsEntry(_Entry):
    """`connection_options.<driver>`: what the driver uses instead of the host's values."""

    hostname: str | None = None
    port: Port | None = None
    username: str | None = None
    password: str | None = None
    platform: str | None = None
    extras: ExtrasEntry | None = None


class DefaultsEntry(_Entry):
    """defaults.yaml: values every host has unless it or one of its groups sets them."""

    unknown_field = "unknown field {key} (expected {expected})"

    hostname: str | None = None
    port: WrittenPort = None
    username: str | None = None
    password: str | None = None
    platform: str | None = None
    data: Data = None
    connection_options: Annotated[dict[str, ConnectionOptionsEntry] | None,
                                  BeforeValidator(_mapping)] = None


class HostEntry(DefaultsEntry):
    """One host (hosts.yaml, containerlab's flat file) or group (groups.yaml)."""

    groups: Annotated[list[str] | None, BeforeValidator(_group_names)] = None


class EntriesFile(RootModel[dict[Name, HostEntry | None]]):
    """hosts.yaml, groups.yaml or containerlab's nornir-simple-inventory.yml: name -> entry."""


# ---- loading ---------------------------------------------------------------------------


def _conn_options(entry: DefaultsEntry) -> dict[str, ConnectionOptions]:
    return {name: ConnectionOptions(hostname=c.hostname, port=c.port, username=c.username,
                                    password=c.password, platform=c.platform,
                                    extras=None if c.extras is None
                                    else c.extras.model_dump(exclude_unset=True))
            for name, c in (entry.connection_options or {}).items()}


def _fields(entry: DefaultsEntry) -> dict[str, Any]:
    return {"hostname": entry.hostname, "port": entry.port, "username": entry.username,
            "password": entry.password, "platform": entry.platform, "data": entry.data,
            "connection_options": _conn_options(entry)}


def _source(path: Path, required: bool, root: str | None = None) -> YamlSource[InventoryError]:
    """One inventory file's data (an empty mapping when absent and optional)."""
    if not path.exists():
        if required:
            raise InventoryError("inventory file not found", path=path)
        return YamlSource(path, LineDict(), InventoryError, root=root)
    data = load_yaml(path, InventoryError, root)
    if data is None:
        data = LineDict()
    if not isinstance(data, LineDict):
        raise InventoryError("expected a mapping of names to entries", path=path,
                             line=line_of(data))
    return YamlSource(path, data, InventoryError, root=root)


def _check_values(source: YamlSource[InventoryError], entry: DefaultsEntry,
                  loc: Loc) -> None:
    """Platform and driver names, checked where they are written (inherited values were
    checked where they came from)."""
    if entry.platform is not None and platforms.get(entry.platform) is None:
        raise source.error(f"unknown platform {entry.platform!r} (runner knows "
                           f"{', '.join(platforms.names())})", (*loc, "platform"))
    driver = (entry.data or {}).get("driver")
    if driver is not None:
        try:
            if not isinstance(driver, str):
                raise InputError(f"expected a driver name: one of {', '.join(DRIVERS)} "
                                 f"(got {shown(driver)})")
            builtin_drivers().get(driver)
        except InputError as exc:
            raise source.error(exc.message, (*loc, "data", "driver")) from None


def _check_groups(source: YamlSource[InventoryError], name: str, entry: HostEntry,
                  known: Groups, where: str) -> ParentGroups:
    for i, group in enumerate(entry.groups or []):
        if group not in known:
            raise source.error(f"group {group!r} is not defined{where}", (name, "groups", i))
    return ParentGroups([known[g] for g in entry.groups or []])


MAX_GROUP_DEPTH = 100  # Nornir resolves inherited values recursively, one call per level


def _check_group_nesting(source: YamlSource[InventoryError],
                         entries: Mapping[str, HostEntry]) -> None:
    """Refuse a group that is its own ancestor, and chains of groups deeper than Nornir can
    follow; iterative, so the check itself cannot run out of stack."""
    parents = {name: entry.groups or [] for name, entry in entries.items()}
    height: dict[str, int] = {}  # levels of groups above and including each one
    for start in parents:
        path, next_index = [start], [0]
        while path:
            name, i = path[-1], next_index[-1]
            if i < len(parents[name]):
                next_index[-1] += 1
                parent = parents[name][i]
                if parent in path:
                    cycle = " -> ".join([*path[path.index(parent):], parent])
                    raise source.error(f"group cycle: {cycle}", (name, "groups", i))
                if parent not in height:
                    path.append(parent)
                    next_index.append(0)
                continue
            height[name] = 1 + max((height[p] for p in parents[name]), default=0)
            if height[name] > MAX_GROUP_DEPTH:
                i, top = max(enumerate(parents[name]), key=lambda item: height[item[1]])
                raise source.error(f"groups nested deeper than {MAX_GROUP_DEPTH} levels "
                                   f"({name} -> {top} -> ...)", (name, "groups", i))
            path.pop()
            next_index.pop()


def load_inventory(path: Path) -> FleetInventory:
    """A directory with hosts.yaml (+ groups.yaml, defaults.yaml), or one hosts file such as
    containerlab's nornir-simple-inventory.yml."""
    path = Path(path)
    if path.is_dir():
        host_file, group_file, defaults_file = (path / "hosts.yaml", path / "groups.yaml",
                                                path / "defaults.yaml")
    elif path.exists():
        host_file, group_file, defaults_file = path, path / "-", path / "-"
    else:
        raise InventoryError("inventory not found (a directory with hosts.yaml, or a hosts "
                             "file)", path=path)
    defaults_src = _source(defaults_file, required=False, root="defaults")
    defaults_entry = defaults_src.validate(DefaultsEntry)
    _check_values(defaults_src, defaults_entry, ())
    defaults = Defaults(**_fields(defaults_entry))

    group_src = _source(group_file, required=False)
    host_src = _source(host_file, required=True)
    group_entries = {name: entry or HostEntry()
                     for name, entry in group_src.validate(EntriesFile).root.items()}
    host_entries = {name: entry or HostEntry()
                    for name, entry in host_src.validate(EntriesFile).root.items()}

    groups = Groups()
    for name, entry in group_entries.items():
        _check_values(group_src, entry, (name,))
        groups[name] = Group(name=name, groups=None, defaults=defaults, **_fields(entry))
    for name, entry in group_entries.items():
        groups[name].groups = _check_groups(group_src, name, entry, groups, "")
    _check_group_nesting(group_src, group_entries)

    hosts = Hosts()
    for name, entry in host_entries.items():
        parents = _check_groups(host_src, name, entry, groups, f" in {group_file.name}")
        _check_values(host_src, entry, (name,))
        hosts[name] = Host(name=name, groups=parents, defaults=defaults, **_fields(entry))
    return FleetInventory(Inventory(hosts=hosts, groups=groups, defaults=defaults), path)
