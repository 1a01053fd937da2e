"""Where a deployed lab's state lives: its lab dir, and an index of labs up on this machine."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import LabError, LabNotFound
from runner.lab.faults import Faults
from runner.lab.plan import LabPlan

STATE_FILE = "runner-lab.json"


@dataclass
class LabState:
    backend: str
    plan: LabPlan
    phase: str  # "deploying" until `up` finished, then "up"
    faults: Faults = field(default_factory=Faults)  # broken on purpose: `lab status` shows it
    exercise: str | None = None  # the practice exercise started on this lab, if any

    def to_json(self) -> dict[str, Any]:
        return {"backend": self.backend, "phase": self.phase, "plan": self.plan.to_json(),
                "faults": self.faults.to_json(), "exercise": self.exercise}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(data["backend"], LabPlan.from_json(data["plan"]), data["phase"],
                   Faults.from_json(data.get("faults")), data.get("exercise"))


def untrusted(path: Path) -> str | None:
    """Why `path` cannot be trusted as written by runner, or None: it must not be a symlink,
    and must belong to root or this user with no one else allowed to write it. A lab's state
    says what `down` deletes; a file another user could write must not decide that."""
    try:
        info = os.lstat(path)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return f"{path} is a symbolic link"
    if info.st_uid not in (0, os.geteuid()):
        return f"{path} belongs to uid {info.st_uid}"
    if info.st_mode & 0o022:
        return f"{path} is writable by others (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def prepare_dir(lab_dir: Path) -> None:
    """Create the lab's directory for this user only; an existing one must be trusted."""
    try:
        lab_dir.mkdir(mode=0o700)
    except FileExistsError:
        why = untrusted(lab_dir)
        if why is not None:
            raise LabError(f"refusing to use {lab_dir}: {why}; remove it and try again") \
                from None


def load(lab_dir: Path) -> LabState | None:
    """The state a lab keeps in its own directory, if it is (being) deployed."""
    path = lab_dir / STATE_FILE
    if not path.exists():
        return None
    why = untrusted(lab_dir) or untrusted(path)
    if why is not None:
        raise LabError(f"refusing to read lab state {path}: {why}")
    found = LabState.from_json(json.loads(path.read_text(encoding="utf-8")))
    if Path(found.plan.lab_dir) != lab_dir:
        raise LabError(f"refusing to read lab state {path}: it is the state of "
                       f"{found.plan.lab_dir}")
    return found


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
        prepare_dir(lab_dir)
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
