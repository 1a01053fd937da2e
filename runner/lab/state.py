"""Where a deployed lab's state lives: its lab dir, and an index of labs up on this machine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import LabNotFound
from runner.lab.plan import LabPlan

STATE_FILE = "runner-lab.json"


@dataclass
class LabState:
    backend: str
    plan: LabPlan
    phase: str  # "deploying" until `up` finished, then "up"

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "phase": self.phase, "plan": self.plan.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(data["backend"], LabPlan.from_json(data["plan"]), data["phase"])


def load(lab_dir: Path) -> LabState | None:
    """The state a lab keeps in its own directory, if it is (being) deployed."""
    path = lab_dir / STATE_FILE
    if not path.exists():
        return None
    return LabState.from_json(json.loads(path.read_text(encoding="utf-8")))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


class LabIndex:
    """Labs up on this machine, one entry per lab name in a directory (the settings' lab_index,
    under /run by default because namespaces do not survive a reboot)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def save(self, state: LabState) -> None:
        """Written before anything is created, so `down` can undo a failed or killed `up`."""
        lab_dir = Path(state.plan.lab_dir)
        lab_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(state.to_json(), indent=2)
        _atomic_write(lab_dir / STATE_FILE, text)
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.directory / f"{state.plan.lab}.json", text)

    def load_by_name(self, name: str) -> LabState:
        path = self.directory / f"{name}.json"
        if not path.exists():
            raise LabNotFound(f"no lab named {name!r} is up on this machine")
        return LabState.from_json(json.loads(path.read_text(encoding="utf-8")))

    def all_labs(self) -> list[LabState]:
        if not self.directory.is_dir():
            return []
        return [LabState.from_json(json.loads(p.read_text(encoding="utf-8")))
                for p in sorted(self.directory.glob("*.json"))]

    def forget(self, plan: LabPlan) -> None:
        """Drop the lab from the index, unless the entry is now another lab of that name."""
        path = self.directory / f"{plan.lab}.json"
        try:
            current = json.loads(path.read_text(encoding="utf-8"))["plan"]["lab_dir"]
        except (OSError, ValueError, KeyError):
            current = plan.lab_dir
        if current == plan.lab_dir:
            path.unlink(missing_ok=True)
