"""Lab operations behind the CLI: pick a backend, then up, down, status and exec."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

from runner.errors import BackendUnavailable, LabError, LabNotFound
from runner.lab import state
from runner.lab.backend import Backend, LabStatus
from runner.lab.clab import ContainerlabBackend
from runner.lab.netns import NamespaceBackend
from runner.lab.plan import make_plan
from runner.lab.topology import FileAccess, load_topology
from runner.registry import Registry
from runner.settings import Settings

# --backend: auto, or one of the backends below (their names are theirs)
BACKEND_NAMES = ("auto", ContainerlabBackend.name, NamespaceBackend.name)
# status and down need only a lab's names: the files its topology names are not opened.
NAMES_ONLY = FileAccess(read=False)
log = logging.getLogger(__name__)


class Labs:
    """The labs of this machine, with the settings the CLI read (where the index of labs is,
    how long routers may take to be ready) passed down to the backends."""

    def __init__(self, settings: Settings) -> None:
        self.index = state.LabIndex(settings.lab_index)
        self.namespace = NamespaceBackend(self.index, settings.lab_ready_timeout)
        self.backends: Registry[Backend] = Registry(
            "backend", lambda b: b.name, (ContainerlabBackend(self.index), self.namespace),
            error=BackendUnavailable)

    def choose_backend(self, name: str = "auto") -> Backend:
        """`auto`: containerlab when it and a Docker engine are usable, else namespaces."""
        if name == "auto":
            clab = self.backends.get("containerlab")
            return clab if clab.unusable_reason() is None else self.namespace
        backend = self.backends.get(name)
        reason = backend.unusable_reason()
        if reason:
            raise BackendUnavailable(f"the {name} backend cannot run here: {reason}")
        return backend

    def up(self, path: Path, backend: str = "auto", *, reconfigure: bool = False,
           allow_outside_files: bool = False) -> LabStatus:
        """allow_outside_files: the topology may name files outside its own directory."""
        # A bad file fails here, before anything is created.
        topo = load_topology(path, files=FileAccess(allow_outside=allow_outside_files))
        for warning in topo.warnings:
            log.warning("%s", warning)
        return self.choose_backend(backend).up(topo, reconfigure=reconfigure)

    def find_lab(self, ref: str) -> state.LabState:
        """A lab by topology file or by name."""
        path = Path(ref)
        if path.is_file():
            topo = load_topology(path, files=NAMES_ONLY)
            found = state.load(topo.lab_dir)
            if found is None:
                raise LabNotFound(f"lab {topo.name!r} from {path} is not up")
            return found
        return self.index.load_by_name(ref)

    def down(self, ref: str) -> bool:
        """Remove a lab; False when there was nothing to remove. Safe to repeat."""
        try:
            lab = self.find_lab(ref)
        except LabNotFound:
            path = Path(ref)
            if not path.is_file():
                return False
            # No state: still sweep anything left under this lab's names (e.g. a killed up).
            if self.namespace.unusable_reason() is None:
                topo = load_topology(path, files=NAMES_ONLY)
                self.namespace.teardown(make_plan(topo), only_marked=True)
            return False
        self.backends.get(lab.backend).down(lab)
        return True

    def status(self, ref: str | None = None) -> list[LabStatus]:
        labs = [self.find_lab(ref)] if ref else self.index.all_labs()
        return [self.backends.get(lab.backend).status(lab) for lab in labs]

    def lab_of(self, node: str, lab_ref: str | None = None) -> state.LabState:
        """The lab holding `node`; lab_ref may be omitted when exactly one lab has it."""
        if lab_ref:
            return self.find_lab(lab_ref)
        labs = [lab for lab in self.index.all_labs() if node in lab.plan.nodes]
        if not labs:
            raise LabNotFound(f"no lab that is up has a node named {node!r}")
        if len(labs) > 1:
            raise LabError(f"node {node!r} is in several labs "
                           f"({', '.join(lab.plan.lab for lab in labs)}); pass --lab")
        return labs[0]

    def exec_on(self, node: str, command: list[str], lab_ref: str | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run a program (argv) inside a node's namespaces."""
        return self.exec_in(self.lab_of(node, lab_ref), node, command, timeout)

    def exec_in(self, lab: state.LabState, node: str, command: list[str],
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """exec_on() for a lab already found."""
        return self.backends.get(lab.backend).exec(lab, node, command, timeout)
