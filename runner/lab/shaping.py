"""Link impairments in a node's namespace: tc netem, or tbf + nftables on kernels without it.

containerlab's `tools netem set` puts one netem qdisc at the interface's root; runner does
the same. Some kernels (WSL2's, small VM kernels) are built without sch_netem: there, a rate
is a tbf qdisc and a loss an nftables egress rule dropping that share of packets at random,
while delay and jitter cannot be emulated and are refused with the reason.
"""

from __future__ import annotations

from runner.errors import LabError
from runner.lab.faults import Netem
from runner.lab.system import run
from runner.vocab import NetemMethod

NFT_TABLE = "runner_netem"


def _chain(iface: str) -> str:
    return "e_" + iface.encode().hex()  # interface names may hold '-' or '.': nft names not


def _tc(netns: str, *args: str, check: bool = True) -> str:
    proc = run(["ip", "netns", "exec", netns, "tc", "qdisc", *args], check=False)
    if check and proc.returncode != 0:
        raise LabError(f"tc qdisc {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stderr


def clear(netns: str, iface: str) -> None:
    """Remove whatever apply() set on the interface."""
    _tc(netns, "del", "dev", iface, "root", check=False)
    run(["ip", "netns", "exec", netns, "nft", "delete", "chain", "netdev", NFT_TABLE,
         _chain(iface)], check=False)


def apply(netns: str, iface: str, spec: Netem) -> NetemMethod:
    """Replace the interface's impairments by `spec`; how they were applied."""
    clear(netns, iface)
    err = _tc(netns, "add", "dev", iface, "root", "netem", *spec.tc_args(), check=False)
    if not err:
        return NetemMethod.NETEM
    if "unknown" not in err:
        raise LabError(f"tc netem on {iface}: {err.strip()}")
    if spec.delay is not None:
        raise LabError("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM is off, "
                       "`tc qdisc add ... netem` says the kind is unknown): delay and jitter "
                       "cannot be emulated here; --loss and --rate still can")
    if spec.rate is not None:
        # burst: at least one full frame per timer tick; latency bounds the queue.
        _tc(netns, "add", "dev", iface, "root", "tbf", "rate", spec.rate, "burst", "32kbit",
            "latency", "400ms")
    if spec.loss:
        per_10k = round(spec.loss * 100)
        share = "" if per_10k >= 10000 else f"numgen random mod 10000 < {per_10k} "
        rules = (f"table netdev {NFT_TABLE} {{}}\n"
                 f"add chain netdev {NFT_TABLE} {_chain(iface)} {{ type filter hook egress "
                 f'device "{iface}" priority 0; policy accept; }}\n'
                 f"add rule netdev {NFT_TABLE} {_chain(iface)} {share}counter drop\n")
        proc = run(["ip", "netns", "exec", netns, "nft", "-f", "-"], input_=rules, check=False)
        if proc.returncode != 0:
            clear(netns, iface)
            raise LabError(f"nftables loss rule on {iface}: {proc.stderr.strip()}")
    return NetemMethod.TBF_NFT
