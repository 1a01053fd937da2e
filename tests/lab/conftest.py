"""Lab fixtures: real FRR routers in network namespaces; need root; always torn down."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.lab.converge import wait_converged
from runner.lab.plan import LabPlan
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.settings import Settings
from tests.support.base import LAB_DIR
from tests.support.lab import plan_of, private_copy, remove_dead_runs_labs, runner


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


@dataclass
class RunningLab:
    topology: Path
    plan: LabPlan
    state: LabState
    labs: Labs

    @property
    def lab_dir(self) -> Path:
        return Path(self.plan.lab_dir)

    @property
    def known_hosts(self) -> Path:
        return self.lab_dir / "known_hosts"

    def ip(self, node: str) -> str:
        return self.plan.nodes[node].mgmt_ip


@pytest.fixture(scope="session")
def practice_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    """The shipped practice lab, under a private name and subnet, converged."""
    workdir = tmp_path_factory.mktemp("practice")
    topology = private_copy(LAB_DIR / "practice.clab.yml", workdir, "tpractice", 31)
    try:
        runner("lab", "up", str(topology))
        labs = Labs(Settings.from_env())  # the settings the `runner` CLI reads too
        lab_state = labs.find_lab(str(topology))
        wait_converged(labs, lab_state, timeout=120)
        yield RunningLab(topology, plan_of(topology), lab_state, labs)
    finally:
        runner("lab", "down", str(topology), check=False)
