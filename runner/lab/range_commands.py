"""`runner lab link|netem|stop|start|capture|graph|save|exercise`: the lab as a practice range."""

from __future__ import annotations

import click

from runner.cli_common import settings_of
from runner.lab import service
from runner.lab.faults import Netem, split_endpoint
from runner.lab.impair import Impair
from runner.lab.state import LabState
from runner.vocab import LinkState

LAB_OPTION = click.option("--lab", "lab_ref", metavar="TOPOLOGY|NAME",
                          help="Which lab, when several are up.")


def _labs() -> service.Labs:
    return service.Labs(settings_of(click.get_current_context()))


def _lab_of_endpoint(labs: service.Labs, endpoint: str, lab_ref: str | None) -> LabState:
    node, _ = split_endpoint(endpoint)
    return labs.lab_of(node, lab_ref)


@click.command(name="link")
@click.argument("args", nargs=-1, required=True, metavar="[LAB] NODE:IF up|down")
def link(args: tuple[str, ...]) -> None:
    """Set a link down (its peer loses carrier, as with a pulled cable) or up again.

    Example: runner lab link practice r1:eth1 down
    """
    if len(args) not in (2, 3):
        raise click.UsageError("expected [LAB] NODE:IF up|down")
    *lab_ref, endpoint, word = args
    try:
        wanted = LinkState(word)
    except ValueError:
        raise click.BadParameter(f"{word!r} is not up or down", param_hint="state") from None
    labs = _labs()
    lab = _lab_of_endpoint(labs, endpoint, lab_ref[0] if lab_ref else None)
    click.echo(Impair(labs).link(lab, endpoint, wanted is LinkState.UP))


@click.command()
@click.argument("endpoint", metavar="NODE:IF")
@click.option("--delay", metavar="TIME", help="Added latency: 50ms, 1s, 200us.")
@click.option("--jitter", metavar="TIME", help="The delay's variation: 5ms (needs --delay).")
@click.option("--loss", metavar="PERCENT", help="Packets dropped: 2% (or 2).")
@click.option("--rate", metavar="RATE", help="Egress rate limit: 10mbit, 512kbit.")
@click.option("--clear", is_flag=True, help="Remove every impairment from the interface.")
@LAB_OPTION
def netem(endpoint: str, delay: str | None, jitter: str | None, loss: str | None,
          rate: str | None, clear: bool, lab_ref: str | None) -> None:
    """Impair a link interface's egress with tc netem (as containerlab's `tools netem set`):
    each call replaces the interface's earlier impairments.

    Example: runner lab netem r1:eth1 --delay 50ms --jitter 5ms --loss 2% --rate 10mbit
    """
    given = any(v is not None for v in (delay, jitter, loss, rate))
    if clear == given:
        raise click.UsageError("give --clear, or impairments (--delay, --jitter, --loss, "
                               "--rate), not both")
    spec = None
    if not clear:
        try:
            percent = None if loss is None else float(loss.removesuffix("%"))
        except ValueError:
            raise click.BadParameter(f"{loss!r} is not a percentage such as 2%",
                                     param_hint="--loss") from None
        spec = Netem(delay=delay, jitter=jitter, loss=percent, rate=rate)
    labs = _labs()
    click.echo(Impair(labs).netem(_lab_of_endpoint(labs, endpoint, lab_ref), endpoint, spec))


@click.command()
@click.argument("node")
@click.argument("daemon", required=False)
@LAB_OPTION
def stop(node: str, daemon: str | None, lab_ref: str | None) -> None:
    """Kill an FRR daemon of NODE (watchfrr leaves it dead), or the whole router.

    Example: runner lab stop r3 bgpd
    """
    labs = _labs()
    click.echo(Impair(labs).stop(labs.lab_of(node, lab_ref), node, daemon))


@click.command()
@click.argument("node")
@click.argument("daemon", required=False)
@LAB_OPTION
def start(node: str, daemon: str | None, lab_ref: str | None) -> None:
    """Start what `runner lab stop` stopped: one daemon, all of them, or the router.

    A restarted daemon or router reads the saved config (`write memory`), as FRR does.
    """
    labs = _labs()
    click.echo(Impair(labs).start(labs.lab_of(node, lab_ref), node, daemon))


def _commands() -> list[click.Command]:
    from runner.lab.exercise.commands import exercise

    return [link, netem, stop, start, exercise]


COMMANDS = _commands()


