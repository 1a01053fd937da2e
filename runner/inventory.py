"""The fleet inventory: Nornir SimpleInventory files (or containerlab's flat file), checked with
file:line errors, target selection, and per-host connection parameters."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

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

from runner import platforms
from runner.drivers.base import ConnectParams
from runner.drivers.registry import DRIVERS
from runner.errors import InputError
from runner.job.spec import Targets
from runner.yamlsrc import LineDict, line_of, load_yaml

HOST_FIELDS = frozenset({"hostname", "port", "username", "password", "platform", "groups",
                         "data", "connection_options"})
CONN_FIELDS = frozenset({"hostname", "port", "username", "password", "platform", "extras"})


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
                raise InputError(f"host {name!r} has no platform (set it on the host, a group "
                                 f"or defaults; runner knows {', '.join(platforms.names())})",
                                 path=self.source)
        return chosen

    def driver_for(self, name: str, default: str) -> str:
        """The host's (or its groups') `driver` data overrides the job's default."""
        value = _lookup(self.nornir.hosts[name], "driver")
        return str(value) if value in DRIVERS else default

    def connect_params(self, name: str, driver: str) -> ConnectParams:
        host = self.nornir.hosts[name]
        opts = host.get_connection_parameters(driver)
        platform = host.platform or ""
        plat = platforms.get(platform)
        driver_platform = opts.platform if opts.platform and opts.platform != platform \
            else (getattr(plat, driver) if plat else platform)
        return ConnectParams(
            host=name, hostname=opts.hostname or name, port=opts.port or 22,
            username=opts.username, password=opts.password, platform=platform,
            driver_platform=driver_platform, extras=dict(opts.extras or {}),
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


class _Checker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, msg: str, where: Any, key: Any = None, fieldname: str | None = None) -> None:
        raise InputError(msg, path=self.path, line=line_of(where, key), field=fieldname)

    def element(self, data: Any, where: Any, key: Any, label: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail("expected a mapping", where, key, label)
        for k in data:
            if k not in HOST_FIELDS:
                self.fail(f"unknown field {k!r} (expected {', '.join(sorted(HOST_FIELDS))})",
                          data, k, f"{label}.{k}")
        if "groups" in data and not (isinstance(data["groups"], list)
                                     and all(isinstance(g, str) for g in data["groups"])):
            self.fail("expected a list of group names", data, "groups", f"{label}.groups")
        if "data" in data and data["data"] is not None and not isinstance(data["data"], dict):
            self.fail("expected a mapping", data, "data", f"{label}.data")
        if "port" in data and (isinstance(data["port"], bool)
                               or not isinstance(data["port"], int)
                               or not 0 < data["port"] < 65536):
            self.fail("expected a TCP port number", data, "port", f"{label}.port")
        conns = data.get("connection_options") or {}
        if not isinstance(conns, dict):
            self.fail("expected a mapping", data, "connection_options",
                      f"{label}.connection_options")
        for cname, copts in conns.items():
            if not isinstance(copts, dict):
                self.fail("expected a mapping", conns, cname, f"{label}.connection_options")
            for k in copts:
                if k not in CONN_FIELDS:
                    self.fail(f"unknown field {k!r}", copts, k,
                              f"{label}.connection_options.{cname}.{k}")
        return cast(dict[str, Any], data)


def _conn_options(data: dict[str, Any]) -> dict[str, ConnectionOptions]:
    return {name: ConnectionOptions(hostname=c.get("hostname"), port=c.get("port"),
                                    username=c.get("username"), password=c.get("password"),
                                    platform=c.get("platform"), extras=c.get("extras"))
            for name, c in (data.get("connection_options") or {}).items()}


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    return {k: data.get(k) for k in ("hostname", "port", "username", "password", "platform")} \
        | {"data": data.get("data"), "connection_options": _conn_options(data)}


def _mapping_file(path: Path, required: bool) -> LineDict:
    if not path.exists():
        if required:
            raise InputError("inventory file not found", path=path)
        return LineDict()
    data = load_yaml(path)
    if data is None:
        return LineDict()
    if not isinstance(data, LineDict):
        raise InputError("expected a mapping of names to entries", path=path,
                         line=line_of(data))
    return data


def load_inventory(path: Path) -> FleetInventory:
    """A directory with hosts.yaml (+ groups.yaml, defaults.yaml), or one hosts file."""
    path = Path(path)
    if path.is_dir():
        host_file, group_file, defaults_file = (path / "hosts.yaml", path / "groups.yaml",
                                                path / "defaults.yaml")
    elif path.exists():
        host_file, group_file, defaults_file = path, path / "-", path / "-"
    else:
        raise InputError("inventory not found (a directory with hosts.yaml, or a hosts file)",
                         path=path)
    raw_defaults = _mapping_file(defaults_file, required=False)
    _Checker(defaults_file).element(raw_defaults, raw_defaults, None, "defaults")
    defaults = Defaults(**_fields(raw_defaults))

    raw_groups = _mapping_file(group_file, required=False)
    raw_hosts = _mapping_file(host_file, required=True)
    groups = Groups()
    gcheck = _Checker(group_file)
    for name, data in raw_groups.items():
        checked = gcheck.element(data, raw_groups, name, str(name))
        groups[str(name)] = Group(name=str(name), groups=None, defaults=defaults,
                                  **_fields(checked))
    for name, data in raw_groups.items():
        for i, parent in enumerate((data or {}).get("groups") or []):
            if parent not in groups:
                gcheck.fail(f"group {parent!r} is not defined", data["groups"], i,
                            f"{name}.groups[{i}]")
        groups[str(name)].groups = ParentGroups(
            [groups[g] for g in (data or {}).get("groups") or []])

    hosts = Hosts()
    hcheck = _Checker(host_file)
    for name, data in raw_hosts.items():
        checked = hcheck.element(data, raw_hosts, name, str(name))
        for i, group in enumerate(checked.get("groups") or []):
            if group not in groups:
                hcheck.fail(f"group {group!r} is not defined in {group_file.name}",
                            checked["groups"], i, f"{name}.groups[{i}]")
        host = Host(name=str(name), groups=ParentGroups(
            [groups[g] for g in checked.get("groups") or []]), defaults=defaults,
            **_fields(checked))
        if host.platform and platforms.get(host.platform) is None:
            hcheck.fail(f"unknown platform {host.platform!r} (runner knows "
                        f"{', '.join(platforms.names())})", checked or raw_hosts,
                        "platform" if "platform" in checked else None, f"{name}.platform")
        hosts[str(name)] = host
    return FleetInventory(Inventory(hosts=hosts, groups=groups, defaults=defaults), path)
