"""`runner lab ...`: bring a lab up, tear it down, show it, run commands on its nodes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from runner.cli_common import echo, settings_of
from runner.lab import service
from runner.lab.backend import LabStatus, NodeStatus
from runner.lab.converge import wait_converged
from runner.lab.faults import ROUTER, Faults
from runner.logsetup import terminal_safe


def _labs() -> service.Labs:
    """This machine's labs, with the settings the `runner` group read from the environment."""
    return service.Labs(settings_of(click.get_current_context()))


def _print_status(st: LabStatus) -> None:
    echo(f"lab {st.lab}  backend: {st.backend}  topology: {st.topology}")
    if st.inventory:
        echo(f"inventory: {st.inventory}")
    rows = [("NODE", "KIND", "ROLE", "MGMT IPV4", "STATE", "DAEMONS", "SSH")]
    for n in st.nodes:
        rows.append((n.name, n.kind, n.role, n.mgmt_ip or "-", _node_state(n),
                     _daemons(n), "-" if n.ssh is None else ("up" if n.ssh else "DOWN")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    lines = Faults.from_json(st.faults).describe()
    if lines:
        echo("faults (`runner lab link|netem|start` mends them):")
        for line in lines:
            echo(f"  {line}")
    if st.exercise:
        echo(f"exercise: {st.exercise} (`runner lab exercise check {st.exercise}`)")


def _node_state(n: NodeStatus) -> str:
    if not n.running:
        return "absent"
    return "STOPPED" if ROUTER in n.stopped else "running"


def _daemons(n: NodeStatus) -> str:
    if not n.daemons or ROUTER in n.stopped:
        return "-"
    down = [d for d, ok in n.daemons.items() if not ok and d not in n.stopped]
    up = sum(n.daemons.values())
    parts = [f"{up} up"] if not down else [f"DOWN: {' '.join(down)}"]
    if n.stopped:
        parts.append(f"stopped: {' '.join(n.stopped)}")
    return ", ".join(parts)


@click.group()
def lab() -> None:
    """Labs of emulated routers from containerlab topology files."""


@lab.command()
@click.argument("topology", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--backend", type=click.Choice(service.BACKEND_NAMES), default="auto",
              show_default=True, help="containerlab needs Docker; namespace needs root.")
@click.option("--reconfigure", is_flag=True, help="Tear the lab down first if it is up.")
@click.option("--allow-outside-files", is_flag=True,
              help="Let the topology read files outside its own directory (startup-config, "
                   "binds); device files and FIFOs stay refused.")
@click.option("--json", "as_json", is_flag=True, help="Print the lab status as JSON.")
def up(topology: Path, backend: str, reconfigure: bool, allow_outside_files: bool,
       as_json: bool) -> None:
    """Bring up the lab described by TOPOLOGY (a *.clab.yml file)."""
    started = time.monotonic()
    st = _labs().up(topology, backend, reconfigure=reconfigure,
                    allow_outside_files=allow_outside_files)
    if as_json:
        echo(json.dumps(st.to_json(), indent=2))
        return
    echo(f"lab {st.lab} is up: {len(st.nodes)} nodes in "
         f"{time.monotonic() - started:.1f}s\n")
    _print_status(st)
    echo(f"\nssh: ssh -F {Path(st.lab_dir) / 'ssh_config'} <node>   "
         f"tear down: runner lab down {topology}")


@lab.command()
@click.argument("lab_ref", metavar="TOPOLOGY|NAME")
def down(lab_ref: str) -> None:
    """Remove a lab and everything it created. Safe to run twice."""
    if _labs().down(lab_ref):
        echo(f"lab {lab_ref} removed")
    else:
        echo(f"lab {lab_ref} is not up; nothing left to remove")


@lab.command()
@click.argument("lab_ref", metavar="[TOPOLOGY|NAME]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(lab_ref: str | None, as_json: bool) -> None:
    """Nodes, management addresses, kinds, and whether daemons and SSH are up (twins'
    simulated devices too)."""
    from runner.lab.twin.listing import statuses

    labs = statuses(settings_of(click.get_current_context()), lab_ref)
    if as_json:
        echo(json.dumps([st.to_json() for st in labs], indent=2))
        return
    if not labs:
        echo("no labs are up")
    for i, st in enumerate(labs):
        if i:
            echo()
        _print_status(st)
    if any(not n.healthy for st in labs for n in st.nodes):
        sys.exit(1)


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("--lab", "lab_ref", metavar="TOPOLOGY|NAME",
              help="Which lab, when several are up.")
@click.option("--shell", is_flag=True, help="On a router, run COMMAND as a program, not vtysh.")
@click.option("--timeout", type=float, default=60, show_default=True)
@click.option("--raw", is_flag=True, help="Write the command's output as it is, control "
              "characters and escape sequences included (by default they are shown "
              "escaped, as in all of runner's output).")
def exec_(node: str, command: tuple[str, ...], lab_ref: str | None, shell: bool,
          timeout: float, raw: bool) -> None:
    """Run COMMAND on NODE: a vtysh command on a router, a program on a host.

    Example: runner lab exec r1 -- show ip route
    """
    argv = list(command)
    labs = _labs()
    lab_state = labs.lab_of(node, lab_ref)
    cli = lab_state.plan.nodes[node].kind_impl.cli if node in lab_state.plan.nodes else None
    if cli is not None and not shell:
        argv = [cli, "-c", " ".join(argv)]
    proc = labs.exec_in(lab_state, node, argv, timeout)
    # A node's output is the node's: escaped like every device output runner prints.
    sys.stdout.write(proc.stdout if raw else terminal_safe(proc.stdout))
    sys.stderr.write(proc.stderr if raw else terminal_safe(proc.stderr))
    sys.exit(proc.returncode)


@lab.command()
@click.argument("lab_ref", metavar="TOPOLOGY|NAME")
@click.option("--timeout", type=float, default=120, show_default=True)
def wait(lab_ref: str, timeout: float) -> None:
    """Wait until OSPF neighbours are Full and BGP sessions Established on every router."""
    started = time.monotonic()
    labs = _labs()
    states = wait_converged(labs, labs.find_lab(lab_ref), timeout)
    for st in states:
        echo(st.summary())
    echo(f"converged after {time.monotonic() - started:.1f}s")


@lab.command()
@click.option("-n", "--devices", type=click.IntRange(1, 100_000), default=10,
              show_default=True, help="How many devices to serve.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=Path(".runner/sim"), show_default=True,
              help="Where the inventory, known_hosts, host key and state file go.")
@click.option("--address", default="127.100.0.1", show_default=True,
              help="First device's loopback address; the others follow it.")
@click.option("--port", type=click.IntRange(1, 65535), default=2022, show_default=True,
              help="SSH port every device listens on.")
@click.option("--per-process", type=click.IntRange(1, 100_000), default=None,
              help="Devices per simulator process. Default: as many as the open-files "
                   "limit allows (a listening socket and a session each), so fleets past "
                   "it are spread over several processes behind this one command; fewer "
                   "per process also uses more cores.")
@click.option("--fault", "faults", multiple=True, metavar="NAME=SHARE%|COUNT",
              help="Inject a fault: slow, refuse (logins), drop (session mid-command), hang. "
                   "Repeatable, e.g. --fault slow=2% --fault refuse=5.")
@click.option("--slow-delay", type=click.FloatRange(0, 3600), default=2.0, show_default=True,
              help="Seconds a slow device waits before each answer.")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Which devices get the faults (same seed, same devices).")
@click.option("--username", default="admin", show_default=True)
@click.option("--password", envvar="RUNNER_SIM_PASSWORD", default=None,
              help="Login password (env RUNNER_SIM_PASSWORD); default: a random one, "
                   "written to the inventory.")
@click.option("--enable-secret", envvar="RUNNER_SIM_ENABLE_SECRET", default=None,
              help="Logins land in user exec (>) and `enable` asks for this secret "
                   "(env RUNNER_SIM_ENABLE_SECRET); written to the inventory as `secret`.")
@click.option("--configs", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Seed the devices from a directory of <name>.cfg files (a backup "
                   "repository's, or a twin's): one device per file, named after it, with "
                   "that running config; --devices, --fault and --seed do not apply.")
def sim(devices: int, directory: Path, address: str, port: int, per_process: int | None,
        faults: tuple[str, ...], slow_delay: float, seed: int, username: str,
        password: str | None, enable_secret: str | None, configs: Path | None) -> None:
    """Serve N simulated IOS-style devices over SSH on loopback, until Ctrl-C.

    For fleets larger than the FRR lab can hold: each device has its own address,
    hostname, CLI and running configuration. Writes a Nornir inventory to DIR/inventory.
    Up to 100,000 devices: past what one process's open-files limit allows, the devices
    are spread over several processes, all stopped with this command (Ctrl-C, SIGTERM);
    if one of them dies, the others are stopped and the command says which.
    """
    import asyncio
    import secrets

    from runner.lab.sim import fleet as fleet_files
    from runner.lab.sim import limits
    from runner.lab.sim.server import FleetConfig

    # Everything is checked before a single process starts.
    if configs is not None:
        if faults:
            raise click.BadParameter("faults are not injected into a seeded fleet",
                                     param_hint="--fault")
        slots = fleet_files.seeded_layout(fleet_files.read_configs(configs), address, port)
    else:
        slots = fleet_files.layout(devices, address, port, fleet_files.parse_faults(faults),
                                   seed)
    limits.check_port(port)
    budget = limits.open_files_budget()
    parts = limits.spread(len(slots), per_process, budget)
    creds = FleetConfig(username=username, password=password or secrets.token_urlsafe(12),
                        slow_delay=slow_delay, enable_secret=enable_secret)

    def ready(state: dict[str, Any]) -> None:
        processes = state["processes"]
        spread = (f" in {len(processes)} processes of up to "
                  f"{max(p['devices'] for p in processes)} (open-files limit "
                  f"{state['open_files']})" if len(processes) > 1 else "")
        echo(f"simulator: {state['devices']} devices on {state['first']}.."
             f"{state['last']} port {state['port']}{spread}, up in {state['start_s']}s, "
             f"{state['rss_mib']} MiB")
        if state["faults"]:
            counts: dict[str, int] = {}
            for fault in state["faults"].values():
                counts[fault] = counts.get(fault, 0) + 1
            echo("faults: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        echo(f"inventory: {state['inventory']}\nCtrl-C (or SIGTERM) stops it.")

    if len(parts) == 1:
        from runner.lab.sim.process import run as run_sim

        fleet = fleet_files.serving(slots, creds.username, creds.password, slow_delay,
                                    enable_secret)
        asyncio.run(run_sim(directory, fleet, ready, budget))
    else:
        from runner.lab.sim.spread import run_spread

        asyncio.run(run_spread(directory, slots, parts, creds, ready, budget))


def _register() -> None:
    """The practice-range commands (faults, capture, graph, save, exercises) live apart."""
    from runner.lab import range_commands

    for command in range_commands.COMMANDS:
        lab.add_command(command)


_register()
