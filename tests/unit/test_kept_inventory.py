"""A large hosts file's kept form (runner.inventory.kept): read instead of the YAML while the
file's text is unchanged, it gives every host exactly what the YAML gives; any change to
the text, a torn or foreign kept file, or a groups file that no longer fits sends the load
back to the YAML and its errors; a file with a credential in it is never kept."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from runner.errors import InventoryError
from runner.inventory import kept, loading
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from tests.support.base import write_inventory

HOSTS = kept.KEEP_HOSTS + 20
GROUPS = """\
core: {platform: cisco_ios, data: {tier: 1, tags: [a, b]}}
edge: {groups: [core], port: 2222, data: {tier: 2}}
lab:
  connection_options:
    scrapli: {port: 2022, extras: {transport: ssh2}}
"""
DEFAULTS = """\
username: admin
password: defaults-pass-9Q
connection_options:
  asyncssh: {extras: {known_hosts: /tmp/none, secret: enable-pass-3Z}}
"""


def varied_hosts(count: int = HOSTS, extra: str = "") -> str:
    """Hosts that set values of their own, inherit them, merge and alias anchored blocks,
    name several groups, carry nested data and per-driver options without credentials."""
    # anchors written in the first host's data (a hosts file's top level holds hosts only)
    lines = ["h_anchor:\n  data:\n    common: &common {site: lon, vlans: [10, 20], "
             "nested: {a: {b: [1, {c: d}]}}}\n    opts: &opts {asyncssh: {port: 2200, "
             "extras: {keepalive: 5}}}"]
    for i in range(count):
        kind = i % 6
        if kind == 0:
            lines.append(f"h{i}: {{hostname: 10.0.{i // 250}.{i % 250}, groups: [core]}}")
        elif kind == 1:
            lines.append(f"h{i}:\n  groups: [edge, lab]\n  port:\n  platform: arista_eos\n"
                         f"  data:\n    <<: *common\n    rack: {i}")
        elif kind == 2:
            lines.append(f"h{i}: {{groups: [lab], connection_options: *opts, "
                         f"data: {{note: 'x: y', num: 1.5, flag: true, none: null}}}}")
        elif kind == 3:
            lines.append(f"h{i}:\n  connection_options:\n    netmiko:\n      platform: "
                         f"cisco_xe\n      extras: {{fast_cli: false, global_delay: 2}}")
        elif kind == 4:
            lines.append(f"h{i}: {{data: {{driver: scrapli, set: !!set {{a, b}}}}}}")
        else:
            lines.append(f"h{i}:")  # an entry without values: everything inherited
    return "\n".join(lines) + "\n" + extra


def inventory(tmp_path: Path, hosts: str | None = None, groups: str = GROUPS) -> Path:
    return write_inventory(tmp_path, varied_hosts() if hosts is None else hosts, groups,
                           DEFAULTS)


def resolved(inv: FleetInventory) -> list[Any]:
    """Every host as a session and a template see it, and where it was written."""
    out = []
    for name, host in inv.hosts.items():
        drivers = {d: (o.hostname, o.port, o.username, o.password, o.platform, o.extras)
                   for d, o in host.connection_options.items()}
        params = {d: inv.connect_params(name, d) for d in ("asyncssh", "netmiko", "scrapli")}
        out.append((name, host.hostname, host.port, host.username, host.password,
                    host.platform, dict(host.data), [g.name for g in host.groups], drivers,
                    params, inv.template_vars(name), inv.origins.hosts[name],
                    inv.origins.platforms.get(("host", name)), inv.driver_for(name, "none")))
    return out


def not_from_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on, reading a hosts file as YAML fails the test."""
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("the hosts file was read as YAML")
    monkeypatch.setattr(loading, "_hosts", refuse)


def test_the_kept_form_gives_every_host_what_the_yaml_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    from_yaml = resolved(load_inventory(inv))
    assert len(from_yaml) == HOSTS + 1
    assert resolved(load_inventory(inv, keep)) == from_yaml  # loaded as YAML, then kept
    assert len(list(keep.iterdir())) == 1
    not_from_yaml(monkeypatch)
    assert resolved(load_inventory(inv, keep)) == from_yaml
    # values a kept host shares with no other: changing one host changes only it
    again = load_inventory(inv, keep)
    again.hosts["h1"].data["rack"] = -1
    assert load_inventory(inv, keep).hosts["h1"].data["rack"] == 1


def test_containerlabs_flat_file_is_kept_with_its_implied_groups(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "nornir-simple-inventory.yml"
    flat.write_text("".join(f"r{i}:\n  hostname: 172.20.{i // 250}.{i % 250}\n  platform: "
                            f"cisco_ios\n  groups: [{'spine' if i % 2 else 'leaf'}]\n"
                            for i in range(kept.KEEP_HOSTS)), encoding="utf-8")
    keep = tmp_path / "kept"
    from_yaml = resolved(load_inventory(flat, keep))
    not_from_yaml(monkeypatch)
    loaded = load_inventory(flat, keep)
    assert resolved(loaded) == from_yaml
    assert set(loaded.nornir.groups) == {"spine", "leaf"}


def test_any_change_to_the_text_is_read_from_the_yaml(tmp_path: Path) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    load_inventory(inv, keep)
    text = (inv / "hosts.yaml").read_text(encoding="utf-8")
    # one character: a port, a comment, trailing space
    for changed in (text.replace("h3:\n", "h3:\n  port: 2323\n", 1), text + "# note\n",
                    text + " \n"):
        (inv / "hosts.yaml").write_text(changed, encoding="utf-8")
        assert resolved(load_inventory(inv, keep)) == resolved(load_inventory(inv))
    assert load_inventory(inv, keep).hosts["h3"].port is None  # the last text's, not 2323


def test_a_groups_file_that_no_longer_fits_gives_the_yamls_error(tmp_path: Path) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    load_inventory(inv, keep)
    (inv / "groups.yaml").write_text(GROUPS.replace("edge:", "border:"), encoding="utf-8")
    with pytest.raises(InventoryError) as kept_load:
        load_inventory(inv, keep)
    with pytest.raises(InventoryError) as yaml_load:
        load_inventory(inv)
    assert str(kept_load.value) == str(yaml_load.value)
    assert "group 'edge' is not defined in groups.yaml" in str(kept_load.value)
    assert "hosts.yaml" in str(kept_load.value)


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "foreign owner mode"])
def test_a_damaged_or_unsafe_kept_form_is_not_read(tmp_path: Path, damage: str) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    expected = resolved(load_inventory(inv, keep))
    (kept_file,) = keep.iterdir()
    blob = kept_file.read_bytes()
    if damage == "truncate":
        kept_file.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        kept_file.write_bytes(blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:])
    elif damage == "empty":
        kept_file.write_bytes(b"")
    else:  # a directory others may write in: what is there may not be this user's
        keep.chmod(0o777)
    name = kept_file.name
    assert kept.read(keep, name) is None
    assert resolved(load_inventory(inv, keep)) == expected
    if damage != "foreign owner mode":  # rewritten whole by the load that read the YAML
        assert kept.read(keep, name) is not None


CREDENTIALS = {  # where a hosts file can write a credential: a file with one is not kept
    "password": "  password: host-pass-7K\n",
    "username": "  username: host-user-5J\n",
    "username reference": "  username: {env: RUNNER_TEST_USER_REF}\n",
    "password reference": "  password: {file: /etc/runner/pass.txt}\n",
    "driver password": "  connection_options:\n    netmiko: {password: conn-pass-2W}\n",
    "driver username": "  connection_options:\n    scrapli: {username: conn-user-8P}\n",
    **{f"extras {key}": f"  connection_options:\n    asyncssh: {{extras: {{{key}: x-{key}-6M}}}}\n"
       for key in ("secret", "passphrase", "private_key_passphrase",
                   "auth_private_key_passphrase")},
}


@pytest.mark.parametrize("where", sorted(CREDENTIALS))
def test_a_hosts_file_with_a_credential_is_never_kept(tmp_path: Path, where: str) -> None:
    hosts = varied_hosts(extra="last:\n" + CREDENTIALS[where])
    inv, keep = inventory(tmp_path, hosts), tmp_path / "kept"
    loaded = load_inventory(inv, keep)
    assert "last" in loaded.hosts
    assert not keep.exists() or not any(keep.iterdir())


def test_what_is_kept_holds_no_credential_of_the_other_files(tmp_path: Path) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    load_inventory(inv, keep)
    (kept_file,) = keep.iterdir()
    blob = kept_file.read_bytes()
    for secret in (b"defaults-pass-9Q", b"enable-pass-3Z", b"admin"):
        assert secret not in blob
    assert oct(kept_file.stat().st_mode & 0o777) == oct(0o600)
    assert oct(keep.stat().st_mode & 0o777) == oct(0o700)


def test_small_files_and_unkeepable_values_are_read_as_yaml_each_time(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    (tmp_path / "small").mkdir()
    small = write_inventory(tmp_path / "small", "a: {hostname: 10.0.0.1}\n", "", DEFAULTS)
    load_inventory(small, keep)
    assert not keep.exists()
    dated = varied_hosts(extra="last: {data: {since: 2026-12-08}}\n")
    inv = inventory(tmp_path, dated)
    assert resolved(load_inventory(inv, keep)) == resolved(load_inventory(inv))
    assert not keep.exists() or not any(keep.iterdir())


def test_kept_forms_are_bounded_least_recently_used_first(tmp_path: Path) -> None:
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    text = (inv / "hosts.yaml").read_text(encoding="utf-8")
    names = []
    for i in range(kept.KEPT_FILES + 3):
        (inv / "hosts.yaml").write_text(text + f"# version {i}\n", encoding="utf-8")
        load_inventory(inv, keep)
        names.append(kept.key((inv / "hosts.yaml").read_text(encoding="utf-8"), False))
        os.utime(keep / names[-1], (i, i))  # written in this order, whatever the clock
        (keep / f".{names[-1]}.1").write_bytes(b"")  # a dead writer's temporary
        os.utime(keep / f".{names[-1]}.1", (i, i))
    # the last load pruned the oldest kept forms and every stale temporary before it
    assert sorted(p.name for p in keep.iterdir()) == \
        sorted([*names[-kept.KEPT_FILES:], f".{names[-1]}.1"])


def test_loads_at_once_keep_one_whole_form(tmp_path: Path) -> None:
    """`runner serve` prepares several runs at once: each load gives every host, and one
    kept form is left, whole, with no writer's temporary beside it."""
    inv, keep = inventory(tmp_path), tmp_path / "kept"
    expected = resolved(load_inventory(inv))
    with ThreadPoolExecutor(4) as pool:
        loads = list(pool.map(lambda _: resolved(load_inventory(inv, keep)), range(8)))
    assert all(load == expected for load in loads)
    (kept_file,) = keep.iterdir()
    assert kept.read(keep, kept_file.name) is not None
