"""Every name runner gives a thing in Redis, and how long each lives: device leases, the run
ledger, a run's cancel and dispatcher keys, shard holders, worker presence; and the
identities written into them (lease tokens, shard owners, worker incarnations), so the
process that writes a name and the one that reads it agree by construction."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

LEASE_TTL_MS = 30_000  # a device lease lapses this long after its holder stops renewing it
LEDGER_TTL_S = 7 * 86400  # a run's ledger, shard and cancel keys are kept this long
LEASES = "runner:lease:*"  # every device lease (a SCAN pattern)
WORKERS = "runner:workers"  # the set of worker incarnations that announced themselves


def ledger_id(run_id: str, restore: bool) -> str:
    """The name of a run's ledger: the pass that rolls back a stopped rollout's changes
    keeps its own, so its devices are worked once more."""
    return f"{run_id}:restore" if restore else run_id


@dataclass(frozen=True)
class RunKeys:
    """Names of one run's keys (the dispatcher and the workers share them), by its
    ledger_id()."""

    run_id: str

    def device(self, kind: str, host: str) -> str:
        """kind: done (the record) | config (who began the push) | pushes (a count)."""
        return f"runner:run:{self.run_id}:{kind}:{host}"

    @property
    def started(self) -> str:
        """The set of hosts a worker began: a lost worker's may be partly changed."""
        return f"runner:run:{self.run_id}:started"

    @property
    def began(self) -> str:
        """A list of hosts in the order a worker first began them: the dispatcher streams
        it into the run's devices in progress."""
        return f"runner:run:{self.run_id}:began"

    @property
    def finished(self) -> str:
        """A list of hosts in the order they finished: the dispatcher streams records
        from it (and their done keys) while shards run."""
        return f"runner:run:{self.run_id}:finished"

    @property
    def cancel(self) -> str:
        return f"runner:run:{self.run_id}:cancel"

    @property
    def closed(self) -> str:
        """Set when the dispatcher finished: a shard delivered later does nothing."""
        return f"runner:run:{self.run_id}:closed"

    @property
    def dispatcher(self) -> str:
        """Set while the dispatcher runs: gone means Redis lost its data."""
        return f"runner:run:{self.run_id}:dispatcher"

    @property
    def alive(self) -> str:
        """Renewed by the dispatcher's process while it lives (a short TTL): gone, the
        workers stop the run's shards, for nobody controls the run any more."""
        return f"runner:run:{self.run_id}:alive"


@dataclass(frozen=True)
class ShardKeys:
    """Names of one shard's keys (a shard is one Celery task)."""

    task_id: str

    @property
    def holder(self) -> str:
        """The incarnation of the worker that received (and runs) the shard."""
        return f"runner:shard:{self.task_id}:holder"

    @property
    def dropped(self) -> str:
        """Set by the dispatcher when it gave the shard up (its devices went elsewhere)."""
        return f"runner:shard:{self.task_id}:dropped"

    @property
    def marker(self) -> str:
        """What every lease token of this shard's devices contains (see shard_owner)."""
        return f":{self.task_id}:"


def device_key(hostname: str, port: int) -> str:
    """One name per device, whatever an inventory calls it: the address its sessions go to
    (`hostname:port`, the hostname lower-cased without a trailing dot; an IPv6 address in
    brackets). Redis leases and local locks both use it, so two inventories naming one
    device differently still wait for each other."""
    name = hostname.strip().lower().rstrip(".")
    if ":" in name and not name.startswith("["):
        name = f"[{name}]"
    return f"{name}:{port}"


def lease_key(address: str) -> str:
    """The Redis lease of a device, by its device_key()."""
    return f"runner:lease:{address}"


def lease_token(owner: str, run_id: str) -> str:
    """What a lease holds: who holds it (the busy message names them), for which run, and
    a nonce of this holding."""
    return f"{owner}:{run_id}:{secrets.token_hex(4)}"


def lease_holder(token: str) -> str:
    """Who holds a lease, from its token."""
    return token.rsplit(":", 1)[0]


def shard_owner(worker: str, task_id: str) -> str:
    """The owner of one delivery of a shard: each delivery is its own (a redelivered shard
    must not pass for the lost one), and its task id lets the dispatcher free the leases
    of a shard it gave up (ShardKeys.marker)."""
    return f"{worker}:{task_id}:{secrets.token_hex(3)}"


def presence_key(incarnation: str) -> str:
    """A worker incarnation's presence: alive while its heartbeat renews it."""
    return f"runner:worker:{incarnation}"


def incarnation(worker: str, pid: int) -> str:
    """A worker process's identity in heartbeats: a restarted worker is a new incarnation,
    so shards the old one held are known to be lost though the name is the same."""
    return f"{worker}#{pid}.{secrets.token_hex(3)}"


def worker_of(incarnation: str) -> str:
    """The worker name in an incarnation (name#pid.random)."""
    return incarnation.rsplit("#", 1)[0]
