"""Helpers for the practice-range tests: a private practice lab per module, polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from runner.lab.converge import wait_converged
from runner.lab.service import Labs
from runner.settings import Settings
from tests.support.base import LAB_DIR
from tests.lab.conftest import RunningLab
from tests.support.lab import plan_of, private_copy, runner

T = TypeVar("T")


@contextmanager
def practice_copy(workdir: Path, name: str, octet: int) -> Iterator[RunningLab]:
    """The shipped practice lab as `name` on 172.20.<octet>.0/24, converged; always down."""
    topology = private_copy(LAB_DIR / "practice.clab.yml", workdir, name, octet)
    try:
        runner("lab", "up", str(topology))
        labs = Labs(Settings.from_env())
        state = labs.find_lab(str(topology))
        wait_converged(labs, state, timeout=120)
        yield RunningLab(topology, plan_of(topology), state, labs)
    finally:
        runner("lab", "down", str(topology), check=False)


def poll(probe: Callable[[], T], until: Callable[[T], bool], bound: float = 90,
         interval: float = 1.0) -> T:
    """probe() until `until` holds of its result or `bound` seconds passed: the last result
    (the caller's assertion says what was expected)."""
    deadline = time.monotonic() + bound
    while True:
        result = probe()
        if until(result) or time.monotonic() > deadline:
            return result
        time.sleep(interval)


def status(lab: RunningLab) -> dict[str, Any]:
    data = json.loads(runner("lab", "status", "--json", lab.plan.lab, check=False).stdout)
    assert isinstance(data, list) and len(data) == 1
    result: dict[str, Any] = data[0]
    return result
