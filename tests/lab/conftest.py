"""Lab fixtures: real FRR routers in network namespaces; need root; always torn down."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.lab import RunningLab, practice_copy, remove_dead_runs_labs


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/lab/" in str(item.path):
            item.add_marker(pytest.mark.lab)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="lab tests need root"))


@pytest.fixture(scope="session", autouse=True)
def dead_runs_labs_removed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Labs a killed test run left are taken down before any lab test: their names and
    subnets would refuse this run's labs."""
    if os.geteuid() == 0:
        remove_dead_runs_labs(tmp_path_factory.getbasetemp().parent)


@pytest.fixture(scope="session")
def practice_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The shipped practice lab, under a private name and subnet, converged."""
    workdir = tmp_path_factory.mktemp("practice")
    with practice_copy(workdir, "tpractice", 31) as lab:
        yield lab
