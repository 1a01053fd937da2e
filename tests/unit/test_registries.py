"""One registry mechanism for every table of named things: drivers, engines, lab kinds, lab
backends and platforms are each a runner.registry.Registry that refuses a name twice and
names the known ones for an unknown name; each list has one source."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runner.drivers.registry import builtin_drivers
from runner.errors import RunnerError
from runner.inventory import platforms
from runner.job.run import engines
from runner.lab.kinds import default_registry
from runner.lab.service import BACKEND_NAMES, Labs
from runner.registry import Registry
from runner.settings import Settings
from runner.vocab import Driver, Engine


def registries(tmp_path: Path) -> dict[str, Callable[[], Registry[Any]]]:
    return {"driver": builtin_drivers, "engine": engines, "kind": default_registry,
            "backend": lambda: Labs(Settings(lab_index=tmp_path / "labs")).backends,
            "platform": platforms._table}


@pytest.mark.parametrize("what", ["driver", "engine", "kind", "backend", "platform"])
def test_every_table_is_one_registry_refusing_duplicates(tmp_path: Path, what: str) -> None:
    registry = registries(tmp_path)[what]()
    assert isinstance(registry, Registry) and registry.what == what
    first = next(iter(registry))
    with pytest.raises(ValueError, match="is already registered"):
        registry.register(first)
    with pytest.raises(RunnerError) as caught:
        registry.get("no-such-thing")
    assert "'no-such-thing'" in str(caught.value)
    assert registry.names()[0] in str(caught.value)


def test_each_list_has_one_source(tmp_path: Path) -> None:
    """Drivers come from the Driver vocabulary alone; every engine has an entry; the CLI's
    --backend choices are the registered backends' own names."""
    assert builtin_drivers().names() == [d.value for d in Driver]
    assert sorted(engines().names()) == sorted(e.value for e in Engine)
    assert list(BACKEND_NAMES[1:]) == Labs(Settings(lab_index=tmp_path)).backends.names()
