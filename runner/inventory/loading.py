"""Inventory files loaded into a FleetInventory: Nornir SimpleInventory's hosts, groups and
defaults (or containerlab's flat file) checked with file:line errors, and a large hosts
file read through its kept form (runner.inventory.kept)."""

from __future__ import annotations

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

from runner.drivers.base import SECRET_EXTRAS
from runner.drivers.registry import builtin_drivers
from runner.errors import InputError, InventoryError
from runner.inventory import kept
from runner.inventory.files import (
    ConnectionOptionsEntry,
    DefaultsEntry,
    EntriesFile,
    ExtrasEntry,
    HostEntry,
)
from runner.inventory.fleet import FleetInventory, Origins, Where
from runner.inventory.secretref import SecretRef, SecretRefSpec
from runner.source.validation import Loc, YamlSource, shown
from runner.source.yamlsrc import LineDict, line_of, load_yaml, read_text


class _Reader:
    """Turns one file's validated entries into Nornir's objects; secret references keep
    where they were written."""

    def __init__(self, source: YamlSource[InventoryError]) -> None:
        self.source = source

    def where(self, loc: Loc) -> Where:
        name, line = self.source.locate(loc)
        return Where(self.source.path, line, name or "")

    def credential(self, value: str | SecretRefSpec | None, loc: Loc) -> str | SecretRef | None:
        if isinstance(value, SecretRefSpec):
            where = self.where(loc)
            return value.ref(str(where.path), where.line, where.field)
        return value

    def extras(self, extras: ExtrasEntry | None, loc: Loc) -> dict[str, Any] | None:
        if extras is None:
            return None
        # what was written, as model_dump(exclude_unset=True) gives it (the credentials are
        # replaced below), without building this model's own serializer for it
        values = {key: getattr(extras, key) for key in type(extras).model_fields
                  if key in extras.model_fields_set}
        values.update(extras.model_extra or {})
        for key in SECRET_EXTRAS:
            if key in values:
                values[key] = self.credential(getattr(extras, key), (*loc, key))
        return values

    def conn_options(self, entry: DefaultsEntry, loc: Loc) -> dict[str, ConnectionOptions]:
        options = {}
        for name, written in (entry.connection_options or {}).items():
            c = written or ConnectionOptionsEntry()
            at = (*loc, "connection_options", name)
            options[name] = ConnectionOptions(
                hostname=c.hostname, port=c.port,
                username=cast(str | None, self.credential(c.username, (*at, "username"))),
                password=cast(str | None, self.credential(c.password, (*at, "password"))),
                platform=c.platform, extras=self.extras(c.extras, (*at, "extras")))
        return options

    def fields(self, entry: DefaultsEntry, loc: Loc) -> dict[str, Any]:
        return {"hostname": entry.hostname, "port": entry.port,
                "username": self.credential(entry.username, (*loc, "username")),
                "password": self.credential(entry.password, (*loc, "password")),
                "platform": entry.platform, "data": entry.data,
                "connection_options": self.conn_options(entry, loc)}


def _source(path: Path, required: bool, root: str | None = None,
            text: str | None = None) -> YamlSource[InventoryError]:
    """One inventory file's data (an empty mapping when absent and optional; `text`: the
    file's, already read)."""
    if text is None and not path.exists():
        if required:
            raise InventoryError("inventory file not found", path=path)
        return YamlSource(path, LineDict(), InventoryError, root=root)
    data = load_yaml(path, InventoryError, root, text)
    if data is None:
        data = LineDict()
    if not isinstance(data, LineDict):
        raise InventoryError("expected a mapping of names to entries", path=path,
                             line=line_of(data))
    return YamlSource(path, data, InventoryError, root=root)


def _check_driver(source: YamlSource[InventoryError], entry: DefaultsEntry, loc: Loc) -> None:
    """A `driver` named in data, checked where it is written (inherited values were
    checked where they came from). Platforms are checked for the hosts a job targets:
    an inventory may hold hosts of platforms runner does not drive (Nornir's own does)."""
    driver = (entry.data or {}).get("driver")
    if driver is not None:
        try:
            if not isinstance(driver, str):
                known = ", ".join(builtin_drivers().names())
                raise InputError(f"expected a driver name: one of {known} (got {shown(driver)})")
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


def load_inventory(path: Path, keep: Path | None = None) -> FleetInventory:
    """A directory with hosts.yaml (+ groups.yaml, defaults.yaml), or one hosts file such as
    containerlab's nornir-simple-inventory.yml (whose hosts name groups it does not define:
    they are groups without values of their own). `keep`: a directory where the loaded form
    of a large hosts file is kept, and read instead of the YAML while its text is the same
    (runner.inventory.kept)."""
    path = Path(path)
    flat = not path.is_dir()
    if not flat:
        host_file, group_file, defaults_file = (path / "hosts.yaml", path / "groups.yaml",
                                                path / "defaults.yaml")
    elif path.exists():
        host_file, group_file, defaults_file = path, path / "-", path / "-"
    else:
        raise InventoryError("inventory not found (a directory with hosts.yaml, or a hosts "
                             "file)", path=path)
    origins = Origins()
    defaults_src = _source(defaults_file, required=False, root="defaults")
    defaults_entry = defaults_src.validate(DefaultsEntry)
    _check_driver(defaults_src, defaults_entry, ())
    defaults = Defaults(**_Reader(defaults_src).fields(defaults_entry, ()))
    if defaults_entry.platform is not None:
        origins.platforms["defaults", ""] = _Reader(defaults_src).where(("platform",))

    group_src = _source(group_file, required=False)
    host_text = _host_text(host_file)
    kept_name = kept.key(host_text, flat) if keep is not None else ""
    rows = kept.read(keep, kept_name) if keep is not None else None
    host_src = None if rows is not None else _source(host_file, True, text=host_text)
    group_entries = {name: entry or HostEntry()
                     for name, entry in group_src.validate(EntriesFile).root.items()}
    if rows is not None and not _fits(rows, group_entries, flat):
        rows, host_src = None, _source(host_file, True, text=host_text)
    host_entries = {} if host_src is None else {
        name: entry or HostEntry() for name, entry in host_src.validate(EntriesFile).root.items()}
    if flat:
        for groups_of in ([r.groups for r in rows] if rows is not None else
                          [entry.groups or [] for entry in host_entries.values()]):
            for group in groups_of:
                group_entries.setdefault(group, HostEntry())

    groups = _groups(group_src, group_entries, defaults, origins)
    if rows is not None:
        hosts = _kept_hosts(rows, host_file, groups, defaults, origins)
    else:
        assert host_src is not None
        hosts = _hosts(host_src, host_entries, group_file, groups, defaults, origins)
        if keep is not None and len(hosts) >= kept.KEEP_HOSTS:
            _keep(keep, kept_name, hosts, origins)
    return FleetInventory(Inventory(hosts=hosts, groups=groups, defaults=defaults), path,
                          origins)


def _groups(group_src: YamlSource[InventoryError], group_entries: dict[str, HostEntry],
            defaults: Defaults, origins: Origins) -> Groups:
    """The groups, each checked with its parents."""
    groups = Groups()
    reader = _Reader(group_src)
    for name, entry in group_entries.items():
        _check_driver(group_src, entry, (name,))
        groups[name] = Group(name=name, groups=None, defaults=defaults,
                             **reader.fields(entry, (name,)))
        if entry.platform is not None:
            origins.platforms["group", name] = reader.where((name, "platform"))
    for name, entry in group_entries.items():
        groups[name].groups = _check_groups(group_src, name, entry, groups, "")
    _check_group_nesting(group_src, group_entries)
    return groups


def _host_text(host_file: Path) -> str:
    if not host_file.exists():
        raise InventoryError("inventory file not found", path=host_file)
    return read_text(host_file, InventoryError)


def _hosts(host_src: YamlSource[InventoryError], host_entries: dict[str, HostEntry],
           group_file: Path, groups: Groups, defaults: Defaults, origins: Origins) -> Hosts:
    """The hosts of a hosts file read as YAML, checked against the groups."""
    hosts = Hosts()
    reader = _Reader(host_src)
    for name, entry in host_entries.items():
        parents = _check_groups(host_src, name, entry, groups, f" in {group_file.name}")
        _check_driver(host_src, entry, (name,))
        hosts[name] = Host(name=name, groups=parents, defaults=defaults,
                           **reader.fields(entry, (name,)))
        origins.hosts[name] = reader.where((name,))
        if entry.platform is not None:
            origins.platforms["host", name] = reader.where((name, "platform"))
    return hosts


def _fits(rows: list[kept.KeptHost], groups: Mapping[str, HostEntry], flat: bool) -> bool:
    """Kept hosts name only groups the groups file (still) defines, and drivers runner has;
    otherwise the file is read as YAML, whose checks name what is wrong where."""
    drivers = None
    for row in rows:
        if not flat and any(g not in groups for g in row.groups):
            return False
        driver = (row.data or {}).get("driver")
        if driver is not None:
            drivers = drivers or set(builtin_drivers().names())
            if driver not in drivers:
                return False
    return True


def _kept_hosts(rows: list[kept.KeptHost], host_file: Path, groups: Groups,
                defaults: Defaults, origins: Origins) -> Hosts:
    """The hosts of a kept form, as _hosts builds them from the YAML."""
    hosts = Hosts()
    for row in rows:
        hosts[row.name] = Host(
            name=row.name, groups=ParentGroups([groups[g] for g in row.groups]),
            defaults=defaults, hostname=row.hostname, port=row.port, username=None,
            password=None, platform=row.platform, data=row.data,
            connection_options={
                driver: ConnectionOptions(hostname=o.hostname, port=o.port, username=None,
                                          password=None, platform=o.platform, extras=o.extras)
                for driver, o in row.options.items()})
        origins.hosts[row.name] = Where(host_file, row.line, row.field)
        if row.platform_field is not None:
            origins.platforms["host", row.name] = Where(host_file, row.platform_line,
                                                        row.platform_field)
    return hosts


def _keep(directory: Path, name: str, hosts: Hosts, origins: Origins) -> None:
    """Keep the hosts file's loaded form (each host's own values, as _hosts built them),
    unless a host writes a credential of its own (a password, or a reference to one):
    credentials are read from the inventory's files only."""
    rows = []
    for host in hosts.values():
        def own(attr: str, host: Host = host) -> Any:
            return object.__getattribute__(host, attr)  # its own value, nothing inherited

        options = {}
        for driver, c in own("connection_options").items():
            if c.username is not None or c.password is not None or any(
                    (c.extras or {}).get(k) is not None for k in SECRET_EXTRAS):
                return
            options[driver] = kept.KeptOptions(c.hostname, c.port, c.platform,
                                               kept.plain(c.extras))
        if own("username") is not None or own("password") is not None:
            return
        where, platform = origins.hosts[host.name], origins.platforms.get(("host", host.name))
        rows.append(kept.KeptHost(
            host.name, [g.name for g in own("groups")], own("hostname"), own("port"),
            own("platform"), kept.plain(own("data")), options, where.line, where.field,
            platform.line if platform else None, platform.field if platform else None))
    kept.write(directory, name, rows)
