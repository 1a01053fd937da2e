"""`runner twin ...`: a lab copy of production built from its config backups."""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from pathlib import Path

import click

from runner.cli_common import echo, settings_of
from runner.lab import rules
from runner.lab.twin import masks, uselock
from runner.lab.twin.production import NOT_ASKED, SIMULATED
from runner.lab.twin.service import DEFAULT_NAME, Report, Twins


def _twins() -> Twins:
    return Twins(settings_of(click.get_current_context()))


def _subnet(_ctx: click.Context, _param: click.Parameter,
            value: str | None) -> ipaddress.IPv4Network | None:
    if value is None:
        return None
    try:
        subnet = ipaddress.IPv4Network(value, strict=False)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IPv4 subnet such as 172.20.21.0/24") \
            from None
    why = rules.subnet_problem(subnet) if subnet.prefixlen <= 29 else \
        f"{subnet} is too small for a management network (use /29 or larger)"
    if why is not None:
        raise click.BadParameter(why)
    return subnet


def _print_plan(report: Report) -> None:
    plan = report.plan
    echo(f"twin {plan.name} from {report.backups} (backups commit {report.commit[:12]}): "
         f"{len(plan.nodes)} FRR router(s){': ' + ', '.join(plan.nodes) if plan.nodes else ''}")
    if plan.simulated:
        echo(f"{len(plan.simulated)} simulated device(s) (the fleet simulator, seeded with "
             f"their backups; no links, no routing): {', '.join(plan.simulated)}")
    if plan.without_backup:
        echo(f"not in the twin (no backup): {', '.join(plan.without_backup)}")
    if plan.problems:
        echo("NOT FAITHFUL, left out (--skip-unfaithful):")
        for problem in plan.problems:
            echo(f"  {problem}")
    if plan.nodes:
        echo("links inferred from the configs (point-to-point subnets):" if plan.inferred
             else "links from the topology file:")
        for a, b, subnet in plan.link_ends():
            echo(f"  {a} -- {b}" + (f"  ({subnet})" if subnet else ""))
        if not plan.links:
            echo("  none")
    if plan.stubs:
        echo("interfaces without a peer in the twin (created as dummy interfaces, always up):")
        for end, why in plan.stubs.items():
            echo(f"  {end}: {why}")
    for note in plan.notes:
        echo(f"note: {note}")
    replaced = plan.replaced()
    if replaced:
        echo(f"masked secrets in the backups replaced by the lab value "
             f"{masks.LAB_SECRET!r} ({len(replaced)} line(s)):")
        for host, r in replaced:
            echo(f"  {host} line {r.line}: {r.command} {masks.LAB_SECRET}")


def _print_checks(report: Report) -> None:
    unfaithful = report.unfaithful
    echo(f"running configs equal to their backups: {len(report.faithful) - len(unfaithful)}"
         f"/{len(report.faithful)}")
    for host in unfaithful:
        echo(f"  {host} DIFFERS from its backup:")
        for line in report.faithful[host].splitlines():
            echo(f"    {line}")
    outside = report.outside()
    for state in report.routing:
        echo(f"  {state.summary()}")
        for peer, st in sorted({**state.ospf, **state.bgp}.items()):
            if not (st.startswith("Full") or st == "Established"):
                where = " (no twin router has this address)" if peer in \
                    outside.get(state.node, []) else ""
                echo(f"    {peer}: {st}{where}")
    _print_production(report)
    if report.converged is False and report.as_production:
        echo("routing has not fully converged, as in production: the sessions above that "
             "are not up are not up there either, or never come up in the twin (expected)")
    elif report.converged is False:
        echo("routing has NOT converged (sessions above; a peer outside the twin never "
             "comes up)")
    if report.inventory:
        echo(f"inventory (production's host names): {report.inventory}")


def _print_production(report: Report) -> None:
    if not report.production_asked:
        echo(NOT_ASKED)
        for comparison in report.production.values():
            if comparison.note == SIMULATED:
                echo(f"  {comparison.node}: {SIMULATED}")
        return
    if not report.production:
        return
    routers = [c for c in report.production.values() if c.compared or c.error]
    same = sum(c.same is True for c in routers)
    echo(f"routing compared with production's own `show` output: {same}/{len(routers)} "
         "same" if routers else "routing not compared with production's (no router in the "
         "twin):")
    for comparison in report.production.values():
        for line in comparison.lines():
            echo(f"  {line}")
    bad = report.unlike_production
    if bad:
        echo(f"the twin is NOT as production for {', '.join(bad)} (above)")


_NO_PRODUCTION = click.option(
    "--no-production", is_flag=True,
    help="Do not read production's routing to compare the twin's with it (production "
         "not reachable from here); said in the output.")


@click.group()
def twin() -> None:
    """Twins: a lab copy of production built from its config backups."""


@twin.command()
@click.option("--from-backups", "backups", required=True,
              type=click.Path(path_type=Path), metavar="DIR",
              help="The backup repository (a backup job's `dir`); its newest commit is used.")
@click.option("-i", "--inventory", required=True, type=click.Path(path_type=Path),
              help="Production's inventory: one twin node per host with a backup.")
@click.option("--name", default=DEFAULT_NAME, show_default=True, help="The twin's lab name.")
@click.option("--topology", type=click.Path(dir_okay=False, path_type=Path),
              help="A containerlab file whose links cable the twin (default: links "
                   "inferred from the configs' point-to-point subnets).")
@click.option("--mgmt-subnet", callback=_subnet,
              help="The twin's management subnet (default: the first free /24 from "
                   "172.20.21.0/24).")
@click.option("--skip-unfaithful", is_flag=True,
              help="Build the twin without the hosts that cannot be made faithful (listed), "
                   "instead of refusing.")
@click.option("--wait", type=click.FloatRange(0, 3600), default=90, show_default=True,
              help="Seconds to wait for OSPF and BGP to converge before reporting.")
@_NO_PRODUCTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def up(backups: Path, inventory: Path, name: str, topology: Path | None,
       mgmt_subnet: ipaddress.IPv4Network | None, skip_unfaithful: bool, wait: float,
       no_production: bool, as_json: bool) -> None:
    """Build a twin of the inventory's hosts from their newest backups.

    Exits 1 when a router's running config differs from its backup, its routing differs
    from production's own (or production could not be read), or routing does not converge
    and production was not compared (the twin stays up: look at it); 2 on bad input
    (nothing is created).
    """
    started = time.monotonic()
    report = _twins().up(name, backups, inventory, topology, mgmt_subnet,
                         skip_unfaithful=skip_unfaithful, wait=wait,
                         against_production=not no_production)
    if as_json:
        echo(json.dumps(report.to_json(), indent=2))
        _exit(report)
        return
    _print_plan(report)
    echo(f"twin {name} is up in {time.monotonic() - started:.1f}s")
    _print_checks(report)
    echo(f"sync: runner twin sync {name}   tear down: runner twin down {name}")
    _exit(report)


@twin.command()
@click.argument("name", default=DEFAULT_NAME)
@click.option("--wait", type=click.FloatRange(0, 3600), default=90, show_default=True,
              help="Seconds to wait for OSPF and BGP to converge before reporting.")
@click.option("--reset", is_flag=True,
              help="Also put back what was changed on the twin (a rehearsal kept with "
                   "--keep, a change tried by hand): routers whose running config differs "
                   "from their backup reboot with it; the simulator restarts.")
@_NO_PRODUCTION
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def sync(name: str, wait: float, reset: bool, no_production: bool, as_json: bool) -> None:
    """Reload the newest backups into twin NAME: changed routers reboot with them."""
    twins = _twins()
    with uselock.held(twins.home, name, f"`runner twin sync {name}`"):
        report = twins.sync(name, wait=wait, reset=reset,
                            against_production=not no_production)
    if as_json:
        echo(json.dumps(report.to_json(), indent=2))
        _exit(report)
        return
    _print_plan(report)
    if report.rebuilt:
        echo(f"the twin's shape changed (nodes, links, interfaces or daemons): rebuilt {name}")
    elif report.restarted:
        echo(f"restarted with their {'backup' if reset else 'new backup'}: "
             f"{', '.join(report.restarted)}")
    if report.sim_restarted:
        echo(f"simulator restarted with the newest backups ("
             f"{'reset' if reset else 'changed'}: {', '.join(report.sim_restarted)})")
    if not (report.rebuilt or report.restarted or report.sim_restarted):
        echo("no backup changed: the twin is as it was")
    _print_checks(report)
    _exit(report)


@twin.command()
@click.argument("name", default=DEFAULT_NAME)
def down(name: str) -> None:
    """Remove twin NAME: its routers, namespaces and files. Safe to run twice."""
    twins = _twins()
    with uselock.held(twins.home, name, f"`runner twin down {name}`"):
        removed = twins.down(name)
    if removed:
        echo(f"twin {name} removed")
    else:
        echo(f"twin {name} is not up; nothing left to remove")


def _exit(report: Report) -> None:
    if report.unfaithful or report.unlike_production or (
            report.converged is False and not report.as_production):
        sys.exit(1)



