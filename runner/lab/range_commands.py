"""`runner lab link|netem|stop|start|capture|graph|save|exercise`: the lab as a practice range."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from runner.cli_common import echo, settings_of
from runner.lab import service, state
from runner.lab.faults import Netem, split_endpoint
from runner.lab.impair import Impair
from runner.lab.state import LabState
from runner.vocab import GraphFormat, LinkState

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
    echo(Impair(labs).link(lab, endpoint, wanted is LinkState.UP))


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
    echo(Impair(labs).netem(_lab_of_endpoint(labs, endpoint, lab_ref), endpoint, spec))


@click.command()
@click.argument("node")
@click.argument("daemon", required=False)
@LAB_OPTION
def stop(node: str, daemon: str | None, lab_ref: str | None) -> None:
    """Kill an FRR daemon of NODE (watchfrr leaves it dead), or the whole router.

    Example: runner lab stop r3 bgpd
    """
    labs = _labs()
    echo(Impair(labs).stop(labs.lab_of(node, lab_ref), node, daemon))


@click.command()
@click.argument("node")
@click.argument("daemon", required=False)
@LAB_OPTION
def start(node: str, daemon: str | None, lab_ref: str | None) -> None:
    """Start what `runner lab stop` stopped: one daemon, all of them, or the router.

    A restarted daemon or router reads the saved config (`write memory`), as FRR does.
    """
    labs = _labs()
    echo(Impair(labs).start(labs.lab_of(node, lab_ref), node, daemon))


@click.command()
@click.argument("endpoint", metavar="NODE:IF")
@click.argument("expression", nargs=-1, metavar="[FILTER]...")
@click.option("-w", "--write", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a pcap file (else: pcap to stdout when it is a pipe, decoded "
                   "packets on a terminal).")
@click.option("-c", "--count", type=click.IntRange(1), help="Stop after this many packets.")
@LAB_OPTION
def capture(endpoint: str, expression: tuple[str, ...], out: Path | None, count: int | None,
            lab_ref: str | None) -> None:
    """Capture packets on a node's interface with tcpdump, inside the node's namespace;
    FILTER is a pcap filter (tcpdump's: icmp, port 179, not arp).

    Examples: runner lab capture r1:eth1 | wireshark -k -i -
              runner lab capture r1:eth1 -w r1-eth1.pcap --count 100 port 179
    """
    from runner.lab.capture import capture as run_capture

    labs = _labs()
    lab = _lab_of_endpoint(labs, endpoint, lab_ref)
    sys.exit(run_capture(lab, endpoint, count, out, sys.stdout.isatty(), list(expression)))


@click.command()
@click.argument("topology", metavar="TOPOLOGY|NAME")
@click.option("-f", "--format", "fmt", type=click.Choice([f.value for f in GraphFormat]),
              help="Default: from --output's suffix, else dot.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write here instead of stdout.")
def graph(topology: str, fmt: str | None, output: Path | None) -> None:
    """Draw the topology: nodes, links with interfaces and addresses; when the lab is up,
    link state and OSPF/BGP adjacencies in colour (green up, orange not Full, red down).

    Example: runner lab graph lab/practice.clab.yml -o practice.svg
    """
    from runner.lab import graph as drawing
    from runner.lab.topology import FileAccess, load_topology

    labs = _labs()
    path = Path(topology)
    lab = None
    if not path.is_file():
        lab = labs.find_lab(topology)
        path = Path(lab.plan.topology)
    topo = load_topology(path, files=FileAccess(allow_outside=True))
    if lab is None:
        lab = state.load(topo.lab_dir)
    if fmt is None:
        suffix = output.suffix.lstrip(".") if output else ""
        fmt = suffix if suffix in [f.value for f in GraphFormat] else GraphFormat.DOT.value
    live = lab is not None and lab.backend == "namespace" and lab.phase == "up"
    picture = drawing.build(topo, labs if live else None, lab if live else None)
    data = drawing.render(picture, GraphFormat(fmt))
    if output is not None:
        output.write_bytes(data)
        echo(f"wrote {output}", err=True)
    elif fmt in ("svg", "png") and sys.stdout.isatty():
        raise click.UsageError(f"{fmt} is binary: give -o FILE, or pipe it")
    else:
        sys.stdout.buffer.write(data)


@click.command()
@click.argument("lab_ref", metavar="TOPOLOGY|NAME")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path),
              help="Save to DIR/<node>/frr.conf instead of the topology's own files.")
@click.option("--allow-outside-files", is_flag=True,
              help="Let a startup-config or bind outside the topology's directory be written.")
def save(lab_ref: str, to: Path | None, allow_outside_files: bool) -> None:
    """`write memory` on every router, and copy each saved config to the topology's
    startup-config or frr.conf bind file (or DIR), so the next `lab up` starts from it."""
    from runner.lab.save import save as save_lab

    labs = _labs()
    for saved in save_lab(labs, labs.find_lab(lab_ref), to, allow_outside_files):
        echo(f"{saved.node}: {saved.path or ''}{saved.note}")


def _commands() -> list[click.Command]:
    from runner.lab.exercise.commands import exercise

    return [link, netem, stop, start, capture, graph, save, exercise]


COMMANDS = _commands()


