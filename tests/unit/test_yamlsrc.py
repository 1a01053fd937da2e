"""YAML files built to exhaust the loader: refused with file, line and field, quickly, before
anything recursive (PyYAML's C composer, the constructor, pydantic) sees them."""

from __future__ import annotations

import os
import time
import tracemalloc
from pathlib import Path

import pytest

from runner.errors import InputError, InventoryError
from runner.source import yamlsrc
from runner.source.yamlsrc import MAX_BYTES, load_yaml


def test_a_million_levels_is_refused_not_a_crash(tmp_path: Path) -> None:
    """PyYAML's C composer recurses in C: this file ended the process (SIGSEGV) before."""
    path = tmp_path / "deep.yml"
    path.write_text("[" * 1_000_000, encoding="utf-8")
    started = time.monotonic()
    with pytest.raises(InputError) as info:
        load_yaml(path)
    assert str(info.value) == f"{path}:1: [0][0][0]...: nested deeper than 100 levels"
    assert time.monotonic() - started < 5


def test_a_hundred_levels_are_fine_and_one_more_is_not(tmp_path: Path) -> None:
    path = tmp_path / "ok.yml"
    path.write_text("a: " + "[" * 99 + "]" * 99 + "\n", encoding="utf-8")  # 1 + 99 levels
    data = load_yaml(path)["a"]
    for _ in range(98):
        data = data[0]
    assert data == []
    path.write_text("a: " + "[" * 100 + "]" * 100 + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"ok\.yml:1: a\[0\]\[0\]\.\.\.: nested deeper than"):
        load_yaml(path)


def test_aliases_used_as_a_fleet_uses_them_are_fine(tmp_path: Path) -> None:
    """Anchors shared by thousands of hosts are a normal inventory, not a bomb."""
    path = tmp_path / "hosts.yaml"
    lines = ["_common: &common {platform: cisco_ios, data: {site: ams, role: edge}}"]
    lines += [f"r{i}: {{<<: *common, hostname: 10.0.{i // 256}.{i % 256}}}"
              for i in range(5000)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_yaml(path)["r4999"]["data"]["site"] == "ams"


def test_aliases_may_expand_a_file_ten_times_past_the_fixed_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound is max(MAX_ALIASED, 10 x values written): a big file may use aliases as
    much, relatively, as a small one."""
    monkeypatch.setattr(yamlsrc, "MAX_ALIASED", 1000)
    path = tmp_path / "x.yml"
    anchor = "a: &a [" + ", ".join(["1"] * 99) + "]\n"  # 100 values
    aliases = "b: [" + ", ".join(["*a"] * 30) + "]\n"  # + 3,000 through aliases
    path.write_text(anchor + aliases, encoding="utf-8")
    # at the 11th alias: 115 values written so far, 1,150 allowed, 1,204 reached
    with pytest.raises(InputError, match=r"x\.yml:2: b\[10\]: aliases expand this file to "
                                         r"more than 1150 values"):
        load_yaml(path)
    filler = "c: [" + ", ".join(["2"] * 300) + "]\n"  # 300 more values written first
    path.write_text(filler + anchor + aliases, encoding="utf-8")
    assert len(load_yaml(path)["b"]) == 30


def test_a_file_too_large_and_an_endless_device(tmp_path: Path) -> None:
    path = tmp_path / "huge.yml"
    with path.open("wb") as fh:
        fh.truncate(MAX_BYTES + 1)  # sparse: takes no disk space
    with pytest.raises(InventoryError, match=r"huge\.yml: file too large \(over 64 MiB\)$"):
        load_yaml(path, InventoryError)
    if os.path.exists("/dev/zero"):
        with pytest.raises(InputError, match=r"^/dev/zero: file too large"):
            load_yaml(Path("/dev/zero"))


def test_a_value_python_cannot_build_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yml"
    path.write_text("a: 1\nwhen: 2026-02-30\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"x\.yml:2: invalid YAML: cannot read this value: "
                                         r"day is out of range for month$"):
        load_yaml(path)


def test_a_big_mapping_is_built_entry_by_entry_not_as_one_graph(tmp_path: Path) -> None:
    """A hosts file of 10,000 entries: the memory loading takes at its peak stays near what
    the loaded data itself holds. Composing the whole file's nodes first (two marks each)
    peaked at ~2.8x the data (measured at 100,000 hosts: 515 MiB for 184 MiB of data), and
    the process kept that peak resident after it was freed."""
    path = tmp_path / "hosts.yaml"
    path.write_text("".join(f"r{i}:\n  hostname: 10.{i // 65536}.{i // 256 % 256}.{i % 256}\n"
                            f"  port: {20000 + i}\n  groups: [edge]\n" for i in range(10_000)),
                    encoding="utf-8")
    tracemalloc.start()
    try:
        data = load_yaml(path)
        live, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) == 10_000
    assert data["r9999"] == {"hostname": "10.0.39.15", "port": 29999, "groups": ["edge"]}
    assert (data.line_of("r9999"), data["r9999"].line_of("port")) == (39997, 39999)
    assert peak - live < live / 2, f"peak {peak >> 20} MiB for {live >> 20} MiB of data"


def test_a_top_level_mapping_keeps_what_yaml_says(tmp_path: Path) -> None:
    """Built an entry at a time, it is what the whole file built at once was: anchored
    values shared by every later entry that merges or aliases them (one object, not a copy
    per host), a top-level merge key's entries first, duplicates and undefined aliases
    refused naming the line (and the alias)."""
    path = tmp_path / "hosts.yaml"
    path.write_text("_c: &c {platform: ios, data: {site: ams}}\n"
                    "r1: {<<: *c, hostname: a}\nr2: {<<: *c}\nr3: {data: *c}\n",
                    encoding="utf-8")
    data = load_yaml(path)
    assert data["r1"] == {"platform": "ios", "data": {"site": "ams"}, "hostname": "a"}
    assert data["r1"]["data"] is data["r2"]["data"] is data["_c"]["data"]
    assert data["r3"]["data"] is data["_c"]
    path.write_text("_c: &c {p: 1}\n<<: *c\nq: 2\n", encoding="utf-8")
    assert list(load_yaml(path)) == ["p", "_c", "q"]
    path.write_text("a: 1\nb: 2\na: 3\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"hosts\.yaml:3: duplicate key 'a' \(first defined "
                                         r"on line 1\)"):
        load_yaml(path)
    path.write_text("a: 1\nb: *nope\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"hosts\.yaml:2: invalid YAML: found undefined "
                                         r"alias 'nope'"):
        load_yaml(path)
    path.write_text("a: 1\n---\nb: 2\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"hosts\.yaml:2: invalid YAML: but found another "
                                         r"document"):
        load_yaml(path)
