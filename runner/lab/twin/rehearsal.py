"""A twin as a rehearsal uses it (runner.job.rehearse.Twin): its inventory, a database for
the rehearsals' own records, and its reset (`twin sync`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from runner.errors import InputError, LabNotFound
from runner.lab.inventory import INVENTORY_DIR
from runner.lab.twin import simulated, uselock
from runner.lab.twin.plan import twin_dir
from runner.lab.twin.service import Twins
from runner.settings import Settings

RECORDS = "rehearsals.db"
SYNC_WAIT = 90.0  # seconds a reset waits for the twin's routing to converge again


@dataclass(frozen=True)
class LabTwin:
    """Twin `name`, up: routers in a lab, simulated devices, or both."""

    twins: Twins
    name: str
    inventory: Path

    @property
    def records(self) -> str:
        return f"sqlite:///{twin_dir(self.twins.home, self.name) / RECORDS}"

    def hold(self, what: str, cancel: threading.Event | None,
             on_wait: Callable[[str], None]) -> AbstractContextManager[bool]:
        return uselock.waiting_for(self.twins.home, self.name, what, cancel, on_wait)

    def reset(self) -> str:
        """`twin sync --reset`: the newest backups, and every device the rehearsal moved
        put back."""
        # production is not read: a failed rehearsal must leave it uncontacted
        report = self.twins.sync(self.name, wait=SYNC_WAIT, reset=True,
                                 against_production=False)
        changed = [*report.restarted, *report.sim_restarted]
        shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more"
                                            if len(changed) > 10 else "")
        what = "rebuilt" if report.rebuilt else \
            f"put back: {shown}" if changed else "nothing had moved"
        faithful = "" if not report.unfaithful else \
            f"; configs differing from their backups: {', '.join(report.unfaithful)}"
        routing = "; routing has NOT converged" if report.converged is False else ""
        return f"synced with backups commit {report.commit[:12]} ({what}){faithful}{routing}"


def open_twin(settings: Settings, name: str) -> LabTwin:
    """Twin `name` if it is up; InputError (exit 2) naming what is wrong otherwise."""
    twins = Twins(settings)
    try:
        twins.meta(name)
    except LabNotFound:
        known = sorted(p.parent.name for p in (twins.home / "twins").glob("*/twin.json"))
        raise InputError(f"no twin named {name!r} ("
                         + (f"twins here: {', '.join(known)}" if known else
                            "none here: `runner twin up --from-backups DIR -i INVENTORY` "
                            "builds one") + "): nothing was run", field="--rehearse") \
            from None
    directory = twin_dir(twins.home, name)
    try:
        lab = twins.labs.index.load_by_name(name)
    except LabNotFound:
        lab = None
    if lab is not None:
        inventory = Path(lab.plan.lab_dir) / INVENTORY_DIR
    elif simulated.running(directory) is not None:
        inventory = directory / INVENTORY_DIR
    else:
        raise InputError(f"twin {name!r} is not up (`runner twin sync {name}` brings it back "
                         f"from the backups, `runner twin down {name}` removes it): nothing "
                         "was run", field="--rehearse")
    if not (inventory / "hosts.yaml").is_file():
        raise InputError(f"twin {name!r} has no inventory at {inventory} (`runner twin sync "
                         f"{name}` writes it again): nothing was run", field="--rehearse")
    return LabTwin(twins, name, inventory)
