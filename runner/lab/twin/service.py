"""`twin up`, `sync` and `down` behind the CLI: read the backups and the inventory, plan,
write the twin's directory (topology, configs), bring the lab up with `runner lab`'s
machinery, then check the twin is faithful (configs, routing)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import InputError, LabError, LabNotFound
from runner.inventory import platforms
from runner.inventory.fleet import FleetInventory
from runner.inventory.loading import load_inventory
from runner.job.backups import BackupRepo
from runner.job.diffing import normalize, unified
from runner.lab import hostcheck
from runner.lab.backend import LabStatus
from runner.lab.converge import RouterRouting, routing
from runner.lab.impair import Impair
from runner.lab.inventory import INVENTORY_DIR
from runner.lab.kinds.frr import daemons_for
from runner.lab.schema import NAME_RE
from runner.lab.service import Labs
from runner.lab.state import LabState
from runner.lab.topology import FileAccess, Topology, load_topology
from runner.lab.twin import inventory as twin_inventory
from runner.lab.twin import masks, simulated
from runner.lab.twin import production as prod_routing
from runner.lab.twin.plan import SIM_CONFIG_DIR, TwinPlan, build, pick_subnet, twin_dir
from runner.redact import Redactor
from runner.settings import Settings

META = "twin.json"
DEFAULT_NAME = "twin"
# FRR's version line: production's may differ from this host's FRR, and backup jobs drop it.
VOLATILE = (re.compile(r"^frr version .*$", re.M),)
_PLATFORM = "cisco_ios"  # how runner drives vtysh, and which secret lines it masks


@dataclass
class Report:
    """What `twin up` or `sync` did and found, for the CLI to print."""

    plan: TwinPlan
    commit: str
    backups: Path
    status: LabStatus | None = None
    faithful: dict[str, str] = field(default_factory=dict)  # host -> "" or the diff
    routing: list[RouterRouting] = field(default_factory=list)
    converged: bool | None = None  # None: not waited for
    restarted: list[str] = field(default_factory=list)  # sync: routers rebooted
    sim_restarted: list[str] = field(default_factory=list)  # sync: simulated devices changed
    rebuilt: bool = False  # sync: the whole twin was built again
    inventory: Path | None = None
    skipped: list[str] = field(default_factory=list)  # unfaithful hosts left out
    # per twin node, its routing against production's own (--no-production: said so)
    production: dict[str, prod_routing.Comparison] = field(default_factory=dict)
    production_asked: bool = True

    def outside(self) -> dict[str, list[str]]:
        """Per router, its BGP peers whose address is no twin router's: they never come up
        in the twin (production's peers outside the inventory, or left out)."""
        own = {str(a.ip) for node in self.plan.nodes.values() for i in node.interfaces
               for a in i.addresses}
        return {r.node: sorted(p for p in r.bgp if p.split("%")[0] not in own)
                for r in self.routing if any(p.split("%")[0] not in own for p in r.bgp)}

    @property
    def unfaithful(self) -> list[str]:
        return sorted(h for h, diff in self.faithful.items() if diff)

    @property
    def unlike_production(self) -> list[str]:
        """Twin routers whose routing differs from production's, or whose production
        could not be read."""
        return sorted(h for h, c in self.production.items() if c.failed)

    @property
    def as_production(self) -> bool:
        """Every twin router was compared with production and none differs: what has not
        converged is down in production too (or a peer outside the twin, expected)."""
        return bool(self.routing) and not self.unlike_production and all(
            self.production.get(r.node) is not None and self.production[r.node].compared
            for r in self.routing)

    def to_json(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "twin": plan.name, "backups": str(self.backups), "commit": self.commit,
            "subnet": str(plan.subnet), "nodes": list(plan.nodes),
            "simulated": list(plan.simulated),
            "without_backup": plan.without_backup,
            "left_out": [{"host": p.host, "reason": p.reason} for p in plan.problems],
            "links_inferred": plan.inferred,
            "links": [{"a": str(a), "b": str(b), "subnet": str(s) if s else None}
                      for a, b, s in plan.link_ends()],
            "stubs": {str(end): why for end, why in plan.stubs.items()},
            "notes": plan.notes,
            "secrets_replaced": [{"host": h, "line": r.line, "command": r.command}
                                 for h, r in plan.replaced()],
            "lab_secret": masks.LAB_SECRET,
            "config_differs": {h: d for h, d in self.faithful.items() if d},
            "configs_equal": sorted(h for h, d in self.faithful.items() if not d),
            "routing": {r.node: {"ospf": r.ospf, "bgp": r.bgp, "error": r.error}
                        for r in self.routing},
            "converged": self.converged, "peers_outside": self.outside(),
            "production_compared": self.production_asked,
            "as_production": self.as_production,
            "production": {h: c.to_json() for h, c in self.production.items()},
            "restarted": self.restarted,
            "rebuilt": self.rebuilt, "sim_restarted": self.sim_restarted,
            "inventory": str(self.inventory) if self.inventory else None,
        }


def _backups(directory: Path, hosts: list[str]) -> tuple[dict[str, str], str]:
    """Each host's newest backup (the repository's last commit) and that commit."""
    if not directory.is_dir():
        raise InputError(f"{directory}: not a directory (expected the `dir` of a backup job "
                         "that has run)", field="--from-backups")
    repo = BackupRepo(directory)
    if not repo.hosts():
        raise InputError(f"{directory}: not a backup repository with backups in it (expected "
                         "the `dir` of a backup job that has run: a git repository of "
                         "<host>.cfg files)", field="--from-backups")
    found: dict[str, str] = {}
    commit = ""
    for host in hosts:
        latest = repo.latest(host)
        if latest is not None:
            commit, found[host] = latest
    if not found:
        names = repo.hosts()
        shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10
                                         else "")
        raise InputError(f"no host of the inventory has a backup in {directory} (it has "
                         f"backups of {shown}; is it the right inventory?)",
                         field="--from-backups")
    return found, commit


def _taken_subnets(labs: Labs) -> list[ipaddress.IPv4Network]:
    taken = [ipaddress.IPv4Network(lab.plan.subnet) for lab in labs.index.all_labs()]
    for route in hostcheck.host_routes():
        dst = str(route.get("dst", ""))
        if dst in ("", "default") or route.get("type") in ("broadcast", "multicast"):
            continue
        try:
            net = ipaddress.IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 1 and not net.is_loopback:
            taken.append(net)
    return taken


class Twins:
    """The twins of this machine: each a lab whose files live in RUNNER_HOME/twins/NAME."""

    def __init__(self, settings: Settings) -> None:
        self.labs = Labs(settings)
        self.secrets_dirs = settings.secrets_dirs
        self.home = settings.home.resolve()

    def _dir(self, name: str) -> Path:
        return twin_dir(self.home, name)

    # ---- up -----------------------------------------------------------------------------

    def up(self, name: str, backups: Path, inventory: Path, topology: Path | None = None,
           subnet: ipaddress.IPv4Network | None = None, *, skip_unfaithful: bool = False,
           wait: float | None = 90, against_production: bool = True) -> Report:
        """Build the twin. Every input is checked before anything is created; a failure
        after that removes what was created. `against_production`: the twin's routing is
        compared with production's own, read over the inventory's sessions."""
        if not NAME_RE.match(name):
            raise InputError(f"{name!r} is not a valid twin name (letters, digits, '.', '_', "
                             "'-')", field="--name")
        try:
            other = self.labs.index.load_by_name(name)
        except LabNotFound:
            other = None
        if other is not None:
            raise InputError(f"a lab named {name!r} is already up (from {other.plan.topology}); "
                             f"`runner twin down {name}` removes a twin, or choose another "
                             "--name", field="--name")
        if simulated.running(self._dir(name)) is not None:
            raise InputError(f"twin {name!r} is already up (its simulated devices serve); "
                             f"`runner twin down {name}` removes it, or choose another "
                             "--name", field="--name")
        meta: dict[str, Any] = {
            "name": name, "backups": str(backups.resolve()),
            "inventory": str(inventory.resolve()),
            "topology": str(topology.resolve()) if topology else None,
            "skip_unfaithful": skip_unfaithful}
        plan, commit, production = self._plan(meta, subnet or pick_subnet(
            _taken_subnets(self.labs)))
        meta["subnet"] = str(plan.subnet)
        directory = self._dir(name)
        shutil.rmtree(directory, ignore_errors=True)  # a twin that is not up: files only
        try:
            path = self._write(directory, plan, meta, commit)
            status = self.labs.up(path) if plan.nodes else None
            sim = simulated.start(directory) if plan.simulated else None
            inv = self._inventory(directory, plan, production, status, sim)
        except BaseException:
            self._remove(name, directory)
            raise
        report = Report(plan, commit, backups, status, inventory=inv,
                        skipped=[p.host for p in plan.problems])
        self._check(report, wait)
        self._against(report, production, against_production)
        return report

    def _plan(self, meta: dict[str, Any], subnet: ipaddress.IPv4Network
              ) -> tuple[TwinPlan, str, FleetInventory]:
        production = load_inventory(Path(meta["inventory"]))
        hosts = list(production.hosts)
        found, commit = _backups(Path(meta["backups"]), hosts)
        topo: Topology | None = None
        if meta["topology"]:
            topo = load_topology(Path(meta["topology"]), files=FileAccess(read=False))
        plan = build(meta["name"], subnet, found,
                     {h: production.platform_of(h) for h in hosts}, topo)
        left = bool(plan.nodes or plan.simulated)
        if plan.problems and (not meta["skip_unfaithful"] or not left):
            lines = "\n  ".join(map(str, plan.problems))
            hint = ("" if left else " (no host left to build)") if \
                meta["skip_unfaithful"] else "; --skip-unfaithful builds the others"
            raise InputError(f"{len(plan.problems)} host(s) cannot be made faithful in the "
                             f"twin{hint}:\n  {lines}", field="--from-backups")
        return plan, commit, production

    def _write(self, directory: Path, plan: TwinPlan, meta: dict[str, Any],
               commit: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)  # configs hold the lab's secret value
        for rel, text in plan.files().items():
            target = directory / rel
            target.parent.mkdir(exist_ok=True, mode=0o700)
            target.write_text(text, encoding="utf-8")
            target.chmod(0o600)
        path = directory / f"{plan.name}.clab.yml"
        path.write_text(plan.topology_text(), encoding="utf-8")
        (directory / META).write_text(json.dumps({**meta, "commit": commit}, indent=2),
                                      encoding="utf-8")
        return path

    def _inventory(self, directory: Path, plan: TwinPlan, production: FleetInventory,
                   status: LabStatus | None, sim: dict[str, Any] | None) -> Path:
        """The twin's inventory: in its lab's directory when it has routers."""
        target = Path(status.lab_dir) / INVENTORY_DIR if status else directory / INVENTORY_DIR
        return twin_inventory.write(
            target, plan.name, production, lab=status is not None, sim=sim,
            sim_platforms={h: n.platform for h, n in plan.simulated.items()})

    def _remove(self, name: str, directory: Path) -> None:
        """Take down what an interrupted up or sync built, then the twin's files."""
        simulated.stop(directory)
        try:
            lab = self.labs.index.load_by_name(name)
        except LabNotFound:
            lab = None
        if lab is not None and Path(lab.plan.lab_dir).parent == directory:
            self.labs.backends.get(lab.backend).down(lab)
        shutil.rmtree(directory, ignore_errors=True)

    # ---- faithfulness -------------------------------------------------------------------

    def _check(self, report: Report, wait: float | None) -> None:
        """Each router's running config against its backup; then routing, waited for up
        to `wait` seconds to converge (None: read once, not waited for)."""
        plan = report.plan
        report.faithful = self.compare_simulated(plan)
        if not plan.nodes:
            report.converged = None
            return
        lab = self.labs.index.load_by_name(plan.name)
        report.faithful = self.compare(lab, plan) | report.faithful
        routers = list(plan.nodes)
        deadline = time.monotonic() + (wait or 0)
        while True:
            report.routing = [routing(self.labs, lab, r) for r in routers]
            done = all(r.converged for r in report.routing)
            if done or wait is None or time.monotonic() > deadline:
                report.converged = done if wait is not None else None
                return
            time.sleep(1)

    def _against(self, report: Report, production: FleetInventory, asked: bool) -> None:
        """Each twin router's routing against production's own `show` output (read only
        for the daemons its backup runs); simulated devices said as not compared."""
        plan = report.plan
        report.production_asked = asked
        if not asked:
            report.production = prod_routing.not_asked(plan.nodes, plan.simulated)
            return
        read = prod_routing.read(production, {h: _daemons(plan, h) for h in plan.nodes},
                                 self.secrets_dirs)
        report.production = prod_routing.comparisons(read, report.routing, report.outside(),
                                                     plan.simulated)

    def compare_simulated(self, plan: TwinPlan) -> dict[str, str]:
        """compare() for the simulated devices: the running config the simulator serves
        for each (it builds the device from the config the same way)."""
        redactor, volatile = _masker(), _volatile()
        out = {}
        for host, node in plan.simulated.items():
            served = normalize(redactor.text(simulated.served_config(host, node.config)),
                               volatile)
            backup = normalize(node.backup, volatile)
            out[host] = "" if served == backup else unified(backup, served,
                                                            f"{host} backup vs twin")
        return out

    def compare(self, lab: LabState, plan: TwinPlan) -> dict[str, str]:
        """host -> "" when its running config equals its backup (volatile lines dropped,
        the lab's secret value masked as the backup's were), else the unified diff."""
        redactor, volatile = _masker(), _volatile()
        out = {}
        for host, node in plan.nodes.items():
            proc = self.labs.exec_in(lab, host, ["vtysh", "-c", "show running-config"],
                                     timeout=60)
            if proc.returncode != 0:
                out[host] = f"could not read its running config: {proc.stderr.strip()}"
                continue
            running = normalize(redactor.text(proc.stdout), volatile)
            backup = normalize(node.backup, volatile)
            out[host] = "" if running == backup else unified(
                backup, running, f"{host} backup vs twin")
        return out

    # ---- sync ---------------------------------------------------------------------------

    def meta(self, name: str) -> dict[str, Any]:
        path = self._dir(name) / META
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabNotFound(f"no twin named {name!r} (`runner twin up` builds one)") from None
        if not isinstance(data, dict):
            raise LabError(f"{path} is damaged; `runner twin down {name}` removes the twin")
        return data

    def sync(self, name: str, wait: float | None = 90, *, reset: bool = False,
             against_production: bool = True) -> Report:
        """Reload the newest backups: routers whose backup changed are rebooted with it;
        a change of the twin's shape (nodes, links, interfaces, daemons) rebuilds its lab;
        the simulator is restarted when a simulated device's backup changed. `reset` (after
        a rehearsal changed the twin): also every router whose running config differs
        from its backup is rebooted with it, and the simulator is restarted.
        `against_production`: routing is compared with production's, as by up()."""
        meta = self.meta(name)
        directory = self._dir(name)
        try:
            lab: LabState | None = self.labs.index.load_by_name(name)
        except LabNotFound:
            lab = None
        sim_up = simulated.running(directory) is not None
        if lab is None and not sim_up:
            raise LabNotFound(f"twin {name!r} is not up (its files are in {directory}; "
                              f"`runner twin down {name}` removes them)")
        plan, commit, production = self._plan(meta, ipaddress.IPv4Network(meta["subnet"]))
        path = directory / f"{name}.clab.yml"
        report = Report(plan, commit, Path(meta["backups"]),
                        skipped=[p.host for p in plan.problems])
        old_shape = _read(path) if lab is not None else None
        changed = [h for h, text in plan.files().items() if _read(directory / h) != text]
        routers = [h for h, n in plan.nodes.items() if n.config_file in changed]
        if reset and lab is not None:  # what a rehearsal left: running configs that moved
            moved = self.compare(lab, plan)
            routers += [h for h in plan.nodes if moved.get(h) and h not in routers]
        seeded = sorted(p.name for p in (directory / SIM_CONFIG_DIR).glob("*.cfg"))
        sims_changed = bool(reset and plan.simulated) or any(
            n.config_file in changed for n in plan.simulated.values()) or seeded != sorted(
                Path(n.config_file).name for n in plan.simulated.values())
        same = lab is not None and old_shape == plan.topology_text() and all(
            sorted(lab.plan.nodes[h].daemons) == sorted(_daemons(plan, h)) for h in plan.nodes)
        try:
            if sims_changed:
                simulated.stop(directory)
                shutil.rmtree(directory / SIM_CONFIG_DIR, ignore_errors=True)
            self._write(directory, plan, meta, commit)
            if lab is not None and same:
                impair = Impair(self.labs)
                for host in routers:
                    impair.stop(lab, host, None)
                    _install(lab.plan.node_dir(host) / "etc-frr" / "frr.conf",
                             plan.nodes[host].config)
                    impair.start(lab, host, None)
                    report.restarted.append(host)
            elif plan.nodes:
                self.labs.up(path, reconfigure=True)
                report.rebuilt = True
            elif lab is not None:
                self.labs.backends.get(lab.backend).down(lab)
                report.rebuilt = True
            sim = simulated.running(directory)
            if plan.simulated and sim is None:
                sim = simulated.start(directory)
                report.sim_restarted = sorted(
                    h for h, n in plan.simulated.items() if reset or n.config_file in changed)
        except BaseException:
            self._remove(name, directory)
            raise
        report.status = self.labs.status(name)[0] if plan.nodes else None
        report.inventory = self._inventory(directory, plan, production, report.status, sim)
        self._check(report, wait)
        self._against(report, production, against_production)
        return report

    # ---- down ---------------------------------------------------------------------------

    def down(self, name: str) -> bool:
        """Remove the twin: its lab and its files. False when there was nothing."""
        directory = self._dir(name)
        try:
            lab = self.labs.index.load_by_name(name)
        except LabNotFound:
            lab = None
        if lab is not None and Path(lab.plan.lab_dir).parent != directory:
            raise InputError(f"lab {name!r} is not a twin (it is up from {lab.plan.topology}); "
                             f"`runner lab down {name}` removes it", field="NAME")
        if lab is None and not directory.exists():
            return False
        self._remove(name, directory)
        return True




def _masker() -> Redactor:
    """Masks a twin's configs as the backups were masked: the lab value where a secret
    was, and every secret line of the platform."""
    platform = platforms.get(_PLATFORM)
    assert platform is not None
    return Redactor(values=[masks.LAB_SECRET], patterns=platform.secret_lines)


def _volatile() -> tuple[re.Pattern[str], ...]:
    platform = platforms.get(_PLATFORM)
    assert platform is not None
    return (*platform.volatile, *VOLATILE)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


@dataclass(frozen=True)
class _Config:
    """A twin router's config as its kind reads it to choose daemons (no binds)."""

    startup_config: str
    daemons: list[str] | None = None

    def frr_file(self, name: str) -> None:
        return None


def _daemons(plan: TwinPlan, host: str) -> list[str]:
    return daemons_for(_Config(plan.nodes[host].config))


def _install(path: Path, text: str) -> None:
    """A router's /etc/frr/frr.conf replaced, owner and mode kept."""
    info = path.stat()
    tmp = path.with_suffix(".new")
    tmp.write_text(text, encoding="utf-8")
    os.chown(tmp, info.st_uid, info.st_gid)
    tmp.chmod(info.st_mode & 0o777)
    tmp.replace(path)
