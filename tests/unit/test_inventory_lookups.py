"""FleetInventory's lookups resolved once per group list (its fast path) give, host by host,
what Nornir's own Host lookups give: connection settings for every driver, the driver,
data and variables, platforms, secret references and credentials, over an inventory of
host / group / defaults overrides, nested groups in either order, values written empty,
per-driver connection_options at every level and secret references (env and file); and
a run's redactors, shared by such hosts, mask what each host's own would."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from nornir.core.inventory import Host

from runner.drivers.base import SECRET_EXTRAS
from runner.drivers.registry import builtin_drivers
from runner.execution.device import DeviceRunner
from runner.execution.executor import Work
from runner.inventory import platforms
from runner.inventory.fleet import FleetInventory, dotted_in
from runner.inventory.loading import load_inventory
from runner.inventory.secretref import SecretRef, SecretResolver
from runner.inventory.targets import Targets
from runner.job.spec import JobSpec
from runner.settings import Settings
from tests.support.base import ROOT, write_inventory


def _lookup(host: Host, dotted: str) -> Any:
    """Inventory data by (dotted) key as Nornir's Host gives it (attributes like platform
    too, data through host[key]'s inheritance): the oracle of FleetInventory._value."""
    first, *rest = dotted.split(".")
    if first in ("platform", "hostname", "port", "username", "name"):
        value: Any = getattr(host, first)
    else:
        try:
            value = host[first]
        except KeyError:
            return None
    return dotted_in(value, rest)

NORNIR_DATA = Path(__file__).parent / "data" / "nornir_inventory"
DRIVERS = tuple(builtin_drivers().names())
# connection_options names besides runner's drivers: Nornir resolves any name
CONNECTIONS = (*DRIVERS, "paramiko", "napalm", "unused")
KEYS = ("driver", "site", "role", "region", "nested", "nested.a", "nested.b.c", "nested.x",
        "host_key_checking", "lab", "missing", "platform", "hostname", "port", "username",
        "name")

DEFAULTS = """\
username: admin
password: {env: WT30L_DEFAULT_PW}
platform: cisco_ios
data: {site: none, driver: netmiko, host_key_checking: true, nested: {a: 1, b: {c: 2}},
       lab: ~}
connection_options:
  netmiko: {extras: {secret: {env: WT30L_ENABLE}, fast_cli: false}}
  scrapli: {port: 2222, extras: {auth_strict_key: false}}
  paramiko: {username: para}
"""
GROUPS = """\
core:
  username: coreuser
  data: {site: core, role: core}
  connection_options:
    asyncssh:
      username: core-async
      password: {file: DIR/core.pw}
      extras: {secret: {file: DIR/core-en.pw}, known_hosts: ~}
region:
  groups: [core]
  platform: arista_eos
  data: {region: emea, host_key_checking: false}
site_a:
  groups: [region]
  password: sitepw
  data: {site: a, driver: scrapli}
site_b:
  username:
  data: {site: b, nested: {a: 9}}
  connection_options:
    netmiko: {hostname: jump.example, platform: cisco_xe, extras: {}}
    scrapli: {username: sb-scrapli, extras: {auth_strict_key: true}}
edge:
  groups: [site_b, site_a]
  data: {role: edge}
lone:
  port: 8022
  connection_options:
    napalm: {port: 830, platform: eos}
empty: {}
"""
HOSTS = """\
bare-a1: {hostname: 10.0.0.1, groups: [site_a]}
bare-a2: {hostname: 10.0.0.2, port: 2201, groups: [site_a]}
bare-a3: {groups: [site_a]}
own-user: {hostname: 10.0.0.3, username: alice, groups: [site_a]}
own-pw-ref: {hostname: 10.0.0.4, password: {file: DIR/h4.pw}, groups: [site_b]}
own-options:
  groups: [site_b]
  connection_options:
    netmiko: {port: 2022, extras: {secret: {env: WT30L_HOST_ENABLE}}}
    asyncssh: {username: hx}
    scrapli:
b-then-a: {hostname: 10.0.0.6, groups: [site_b, site_a]}
a-then-b: {hostname: 10.0.0.7, groups: [site_a, site_b]}
b-then-a-2: {hostname: 10.0.0.8, groups: [site_b, site_a], data: {role: spine}}
via-edge: {hostname: 10.0.0.9, groups: [edge], data: {driver: asyncssh, nested: {b: {c: 5}}}}
no-groups: {hostname: 10.0.0.10}
no-groups-2: {hostname: 10.0.0.11, username: bob, password: {env: WT30L_BOB}}
empty-group: {groups: [empty], platform: cisco_nxos, data: {host_key_checking: ~}}
own-platform: {hostname: 10.0.0.12, platform: arista_eos, groups: [region]}
data-null: {groups: [site_a], data: {site: ~, lab: sim}}
lone-1: {groups: [lone, core], hostname: 10.0.0.13}
lone-2: {groups: [core, lone], hostname: 10.0.0.14}
"""
ENV = {"WT30L_DEFAULT_PW": "default-pw-1", "WT30L_ENABLE": "enable-2",
       "WT30L_BOB": "bob-pw-3"}  # WT30L_HOST_ENABLE is unset: unreadable


@pytest.fixture
def varied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WT30L_HOST_ENABLE", raising=False)
    inv = write_inventory(tmp_path, "", "", "")
    for name, value in (("core.pw", "core-pw-4"), ("core-en.pw", "core-en-5"),
                        ("h4.pw", "host4-pw-6")):
        (inv / name).write_text(value, encoding="utf-8")
    write_inventory(tmp_path, *(text.replace("DIR", str(inv))
                                for text in (HOSTS, GROUPS, DEFAULTS)))
    return inv


def outcome(fn: Any, *args: Any) -> Any:
    """What a call gives, or the error it raises (its class and text)."""
    try:
        return fn(*args)
    except Exception as exc:
        return type(exc).__name__, str(exc)


def options(host: Host, connection: str) -> tuple[Any, ...]:
    found = host.get_connection_parameters(connection)
    return (found.hostname, found.port, found.username, found.password, found.platform,
            found.extras)


def plain_connect_params(inv: FleetInventory, name: str, driver: str,
                         resolver: SecretResolver) -> tuple[Any, ...]:
    """FleetInventory.connect_params as it was, with Nornir's Host lookups."""
    host = inv.hosts[name]
    opts = host.get_connection_parameters(driver)
    platform = inv.platform_of(name) or ""
    plat = platforms.get(platform)
    attr = builtin_drivers().get(driver).platform_attr
    own = opts.platform if opts.platform != host.platform else None
    extras = {key: resolver.value(value) if key in SECRET_EXTRAS else value
              for key, value in (opts.extras or {}).items()}
    return (name, opts.hostname or name, opts.port or 22, resolver.value(opts.username),
            resolver.value(opts.password), platform,
            own or (getattr(plat, attr) if plat else platform), extras,
            _lookup(host, "host_key_checking") is not False)


def fast_connect_params(inv: FleetInventory, name: str, driver: str,
                        resolver: SecretResolver) -> tuple[Any, ...]:
    p = inv.connect_params(name, driver, resolver)
    return (p.host, p.hostname, p.port, p.username, p.password, p.platform,
            p.driver_platform, p.extras, p.host_key_checking)


def plain_session_refs(inv: FleetInventory, names: list[str], default: str) -> list[SecretRef]:
    refs: dict[SecretRef, None] = {}
    for name in names:
        driver = _lookup(inv.hosts[name], "driver") or default
        opts = inv.hosts[name].get_connection_parameters(driver)
        values = [opts.username, opts.password,
                  *((opts.extras or {}).get(k) for k in SECRET_EXTRAS)]
        refs.update(dict.fromkeys(v for v in values if isinstance(v, SecretRef)))
    return list(refs)


def plain_credentials(inv: FleetInventory, name: str,
                      resolver: SecretResolver | None) -> tuple[set[str], set[str]]:
    """One host's secret values and usernames over every driver, host by host."""
    values: set[str] = set()
    usernames: set[str] = set()
    for driver in DRIVERS:
        opts = inv.hosts[name].get_connection_parameters(driver)
        username: object = opts.username
        found: list[object] = [opts.password,
                               *((opts.extras or {}).get(k) for k in SECRET_EXTRAS)]
        if isinstance(username, SecretRef):
            found.append(username)
        elif isinstance(username, str) and username:
            usernames.add(username)
        for value in found:
            if not isinstance(value, str | SecretRef) or not value:
                continue
            known = resolver.known(value) if resolver else value
            if isinstance(known, str) and known:
                values.add(known)
    return values, usernames


def compare(directory: Path, resolver_roots: list[Path]) -> int:
    """Every lookup, host by host, fast path (asked first, on its own copy of the
    inventory, in a shuffled host order) against Nornir's; the number of comparisons."""
    fast, plain = load_inventory(directory), load_inventory(directory)
    names = list(plain.hosts)
    order = names[1::2] + names[::2][::-1]  # hosts of one group list asked apart
    fast_res, plain_res = SecretResolver(resolver_roots), SecretResolver(resolver_roots)
    compared = 0
    for name in order:
        host = plain.hosts[name]
        assert fast.platform_of(name) == plain_platform(plain, name), name
        for default in DRIVERS:
            assert fast.driver_for(name, default) == \
                (str(v) if (v := _lookup(host, "driver")) is not None else default), name
        for key in KEYS:
            assert fast._value(fast.hosts[name], key) == _lookup(host, key), (name, key)
        seen = fast.template_vars(name)
        assert list(seen["data"].items()) == list(host.items()), name
        assert seen == {"name": name, "hostname": host.hostname,
                        "platform": plain_platform(plain, name),
                        "groups": [g.name for g in host.groups],
                        "data": dict(host.items())}, name
        for connection in CONNECTIONS:
            fast_host = fast.hosts[name]
            got = fast._options(fast_host, fast._chain(fast_host), connection)
            assert (got.hostname, got.port, got.username, got.password, got.platform,
                    got.extras) == options(host, connection), (name, connection)
            compared += 1
        for driver in DRIVERS:
            assert fast.address(name, driver) == (
                host.get_connection_parameters(driver).hostname or name,
                host.get_connection_parameters(driver).port or 22), (name, driver)
            assert outcome(fast_connect_params, fast, name, driver, fast_res) == \
                outcome(plain_connect_params, plain, name, driver, plain_res), (name, driver)
            opts = host.get_connection_parameters(driver)
            assert fast.secret_refs(name, driver) == [
                v for v in (opts.username, opts.password,
                            *((opts.extras or {}).get(k) for k in SECRET_EXTRAS))
                if isinstance(v, SecretRef)], (name, driver)
            compared += 1
        for resolver in (fast_res, None):
            found, users, _ = fast.host_credentials(name, resolver)
            assert (found, users) == plain_credentials(
                plain, name, plain_res if resolver else None), name
    for default in DRIVERS:
        for chosen in (names, order, names[:3]):
            assert fast.session_refs(chosen, default) == \
                plain_session_refs(plain, chosen, default), default
    return compared


def plain_platform(inv: FleetInventory, name: str) -> str | None:
    raw = inv.hosts[name].platform or inv.default_platform
    return (platforms.canonical(raw) or raw) if raw else raw


def test_the_fast_lookups_give_what_nornir_gives_over_a_varied_inventory(varied: Path) -> None:
    assert compare(varied, [varied]) > 100
    inv = load_inventory(varied)
    # hosts of one group list share their lookups; other group lists, or the same groups in
    # another order, do not (Nornir resolves them in order)
    assert inv._chain(inv.hosts["bare-a1"]) is inv._chain(inv.hosts["bare-a3"])
    assert inv._chain(inv.hosts["b-then-a"]) is not inv._chain(inv.hosts["a-then-b"])
    assert [inv.connect_params(n, "scrapli").extras for n in ("b-then-a", "a-then-b")] == \
        [{"auth_strict_key": True}, {"auth_strict_key": False}]
    assert [inv.template_vars(n)["data"]["site"] for n in ("b-then-a", "a-then-b")] == \
        ["b", "a"]


def test_the_fast_lookups_give_what_nornir_gives_over_nornirs_own_inventory() -> None:
    assert compare(NORNIR_DATA, [NORNIR_DATA]) > 10


def test_a_jobs_platform_and_where_select_through_the_fast_lookups(varied: Path) -> None:
    base = load_inventory(varied)
    inv = base.with_platform("cisco_nxos")
    assert inv._chains is base._chains  # a view shares the hosts and what they inherit
    chosen = inv.select(Targets(where={"site": "a"}))
    assert chosen == [n for n, h in load_inventory(varied).hosts.items()
                      if _lookup(h, "site") == "a"] and len(chosen) >= 4
    assert inv.select(Targets(where={"nested.b.c": 5})) == ["via-edge"]


def test_credentials_say_whether_a_reference_is_still_to_read(varied: Path) -> None:
    """A host whose secret reference cannot be read yet is not settled (a redactor shared
    by its group list would miss the value once it can be read); read, it is."""
    inv = load_inventory(varied)
    resolver = SecretResolver([varied])
    found, _, settled = inv.host_credentials("own-options", resolver)
    assert not settled and found == {"default-pw-1"}  # its own extras replace netmiko's
    os.environ["WT30L_HOST_ENABLE"] = "host-enable-7"
    try:
        found, _, settled = inv.host_credentials("own-options", resolver)
        assert settled and "host-enable-7" in found
    finally:
        del os.environ["WT30L_HOST_ENABLE"]
    assert inv.host_credentials("bare-a1", resolver)[2]
    assert inv.host_credentials("bare-a1", None)[2]  # nothing is read without a resolver
    assert inv.credentials_key("bare-a1") == inv.credentials_key("bare-a2") != \
        inv.credentials_key("own-user")


def a_runner(inventory: Path, tmp_path: Path, **spec: Any) -> DeviceRunner:
    job = JobSpec.model_validate({"name": "show", "steps": [{"command": "show version"}],
                                  **spec})
    return DeviceRunner(Work(job, load_inventory(inventory), ROOT / "templates", "t",
                             Settings(lock_dir=tmp_path / "locks")))


SEEN = ("default-pw-1 enable-2 bob-pw-3 core-pw-4 core-en-5 host4-pw-6 host-enable-7 "
        "derived-8 sitepw admin coreuser core-async alice bob hx para sb-scrapli\n"
        "username alice password 0 sitepw\nenable secret 5 $1$abc$def\n"
        "snmp-server community c0mm RO\nusername admin privilege 15 secret 0 enable-2\n")


def test_a_runs_redactors_shared_by_group_list_mask_as_each_hosts_own_would(
        varied: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run reuses one redactor for the hosts of a platform and group list once what it
    masks is settled: each host's text is masked as a redactor made for that host alone
    masks it; a host's own secrets, derived secrets, or a secret read later are not
    missed."""
    shared = a_runner(varied, tmp_path)
    names = list(load_inventory(varied).hosts)
    for name in names[1::2] + names[::2][::-1] + names:
        alone = a_runner(varied, tmp_path)._redactor(name)
        assert shared._redactor(name).text(SEEN) == alone.text(SEEN), name
    assert shared._redactor("bare-a1") is shared._redactor("bare-a3")
    assert "sitepw" not in shared._redactor("bare-a1").text(SEEN)
    assert "default-pw-1" not in shared._redactor("no-groups").text(SEEN)
    assert "host4-pw-6" not in shared._redactor("own-pw-ref").text(SEEN)
    assert "host4-pw-6" in shared._redactor("bare-a1").text(SEEN)  # another host's
    # a secret a render of this host derived: masked for it, not for its group list
    shared._derived["bare-a1"] = {"derived-8"}
    assert "derived-8" not in shared._redactor("bare-a1").text(SEEN)
    assert "derived-8" in shared._redactor("bare-a3").text(SEEN)
    # a job secret not readable yet: not shared until read, then masked for every host
    later = a_runner(varied, tmp_path, secret_vars={"v": {"env": "WT30L_LATER"}})
    monkeypatch.delenv("WT30L_LATER", raising=False)
    assert "later-9" in later._redactor("bare-a1").text("later-9")
    monkeypatch.setenv("WT30L_LATER", "later-9")
    for name in ("bare-a1", "bare-a3", "bare-a1"):
        assert later._redactor(name).text("later-9") == "********", name


def test_an_inventory_pickled_to_engine_processes_leaves_its_id_keyed_caches(
        varied: Path) -> None:
    """Engine processes receive the inventory pickled: its caches keyed by the groups'
    ids stay behind (there, an id may name another group) and are made anew."""
    inv = load_inventory(varied)
    resolver = SecretResolver([varied])
    before = {name: (inv.template_vars(name), inv.host_credentials(name, resolver)[:2],
                     inv.address(name, "netmiko")) for name in inv.hosts}
    assert inv._chains and inv._credentials
    copy = pickle.loads(pickle.dumps(inv))  # noqa: S301  (its own bytes, as processes get them)
    assert copy._chains == {} and copy._credentials == {} and inv._chains
    assert {name: (copy.template_vars(name), copy.host_credentials(name, resolver)[:2],
                   copy.address(name, "netmiko")) for name in copy.hosts} == before
