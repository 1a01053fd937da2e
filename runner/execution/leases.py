"""Device leases and the run ledger in Redis, shared by every worker and local run that has
a broker: one session per device at a time across jobs and machines, and per run which
devices started, which are done (with their records) and whose config push began. Without
a broker, a lock file per device on this machine. (Key names: runner.execution.control.keys.)"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigAlreadyAttempted, DeviceBusy
from runner.execution.control.keys import (
    LEASE_TTL_MS,
    LEDGER_TTL_S,
    RunKeys,
    ShardKeys,
    lease_holder,
    lease_key,
    lease_token,
)

if TYPE_CHECKING:  # Redis is imported where a broker is used: a run without one never does
    import redis

# Delete the lease only if we still hold it (another holder may have it after expiry).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
# Claim the run's config push on a device, in one round trip: returns the claim's owner
# (ours when we may push); counts every push that went ahead.
_START_CONFIG = """
redis.call('set', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
local holder = redis.call('get', KEYS[1])
if holder == ARGV[1] then
  redis.call('incr', KEYS[2])
  redis.call('expire', KEYS[2], ARGV[2])
end
return holder
"""
# Delete a device's lease only if a given shard holds it (its token holds the task id).
_FREE_SHARD_LEASE = """
local v = redis.call('get', KEYS[1])
if v and string.find(v, ARGV[1], 1, true) then return redis.call('del', KEYS[1]) end
return 0
"""
# A device's record if it is done in this run; else mark it started, in one round trip.
_BEGIN = """
local done = redis.call('get', KEYS[1])
if done then return done end
if redis.call('sadd', KEYS[2], ARGV[1]) == 1 then
  redis.call('rpush', KEYS[3], ARGV[1])
  redis.call('expire', KEYS[3], ARGV[2])
end
redis.call('expire', KEYS[2], ARGV[2])
return false
"""


# The same, and then (when not done) the device's lease if it is free: a device that needs
# no rendering first takes both in one round trip. Returns {record or '', leased 1|0}.
_BEGIN_AND_LEASE = """
local done = redis.call('get', KEYS[1])
if done then return {done, 0} end
if redis.call('sadd', KEYS[2], ARGV[1]) == 1 then
  redis.call('rpush', KEYS[3], ARGV[1])
  redis.call('expire', KEYS[3], ARGV[2])
end
redis.call('expire', KEYS[2], ARGV[2])
if redis.call('set', KEYS[4], ARGV[3], 'NX', 'PX', ARGV[4]) then return {'', 1} end
return {'', 0}
"""


class Coordination:
    """One Redis connection pool per engine run (one event loop)."""

    def __init__(self, url: str, run_id: str, owner: str) -> None:
        # A bounded pool that waits for a free connection: hundreds of devices at once
        # would otherwise open a connection each (redis-py 8 refuses past 100).
        import redis.asyncio as aioredis

        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=60, socket_timeout=10, socket_connect_timeout=10,
            decode_responses=True)
        self.redis = aioredis.Redis(connection_pool=pool)
        self.keys = RunKeys(run_id)
        self.run_id = run_id
        self.owner = owner

    async def close(self) -> None:
        await self.redis.aclose(close_connection_pool=True)

    # -- device lease ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(self, address: str, wait: float,
                    held: str | None = None) -> AsyncIterator[None]:
        """Hold the lease of the device at `address` (its device_key) while the block runs;
        DeviceBusy after `wait` seconds. `held`: the token begin() already took it with."""
        key = lease_key(address)
        token = held or lease_token(self.owner, self.run_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while not held and not await self.redis.set(key, token, nx=True, px=LEASE_TTL_MS):
            if loop.time() >= deadline:
                holder = await self.redis.get(key)
                who = lease_holder(str(holder)) if holder else "another run"
                raise DeviceBusy(f"device busy: its lease is held by {who}"
                                 + (f"; waited {wait:g}s" if wait else ""))
            await asyncio.sleep(0.2)
        renew = asyncio.ensure_future(self._renew(key, token))
        try:
            yield
        finally:
            renew.cancel()
            with contextlib.suppress(Exception):
                await self.redis.eval(_RELEASE, 1, key, token)

    async def _renew(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(LEASE_TTL_MS / 3000)
            await self.redis.eval(_RENEW, 1, key, token, str(LEASE_TTL_MS))

    # -- run ledger -----------------------------------------------------------------------

    async def begin(self, host: str) -> dict[str, Any] | None:
        """The device's record if an earlier attempt of this run finished it; else None,
        and the device is marked started (the dispatcher reads that if this worker is
        lost: started devices may be partly changed) and, the first time, announced in
        the order devices began (the run page's devices in progress)."""
        raw = await self.redis.eval(_BEGIN, 3, self.keys.device("done", host),
                                    self.keys.started, self.keys.began, host,
                                    str(LEDGER_TTL_S))
        record: dict[str, Any] | None = json.loads(raw) if raw else None
        return record

    async def begin_and_lease(self, host: str,
                              address: str) -> tuple[dict[str, Any] | None, str | None]:
        """begin(), and when the device is not done, its lease if free, in one round trip
        (a round trip less per device for a job that renders nothing first): (the
        record of an earlier attempt or None, the token of the lease taken or None; a
        lease held by another is waited for in lease() as usual)."""
        token = lease_token(self.owner, self.run_id)
        raw, leased = await self.redis.eval(
            _BEGIN_AND_LEASE, 4, self.keys.device("done", host), self.keys.started,
            self.keys.began, lease_key(address), host, str(LEDGER_TTL_S), token,
            str(LEASE_TTL_MS))
        if raw:
            return json.loads(raw), None
        return None, token if int(leased) else None

    async def mark_done(self, host: str, record: dict[str, Any]) -> None:
        pipe = self.redis.pipeline(transaction=True)  # the record before its announcement
        pipe.set(self.keys.device("done", host), json.dumps(record), ex=LEDGER_TTL_S)
        pipe.rpush(self.keys.finished, host)
        pipe.expire(self.keys.finished, LEDGER_TTL_S)
        await pipe.execute()

    async def start_config(self, host: str) -> None:
        """Called right before config is first sent to `host` in this run."""
        holder = str(await self.redis.eval(
            _START_CONFIG, 2, self.keys.device("config", host),
            self.keys.device("pushes", host), self.owner, str(LEDGER_TTL_S)) or "")
        if holder != self.owner:
            raise ConfigAlreadyAttempted(
                "an earlier attempt of this run began configuring this device and was "
                f"lost ({holder}); not configured a second time")


def free_shard_leases(client: redis.Redis, addresses: list[str], shard: ShardKeys) -> None:
    """Let go of the leases a shard the dispatcher gave up still holds on these devices (by
    their device_key), not to wait them out; a lease another run took since is left."""
    for address in addresses:
        client.eval(_FREE_SHARD_LEASE, 1, lease_key(address), shard.marker)


class LocalLeases:
    """Device leases without a broker: an exclusive lock (flock) on a file per device
    address in a machine-wide directory, with the Redis lease's wait semantics. The kernel
    drops the lock when its holder dies, so a killed run never leaves a device locked."""

    _UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

    def __init__(self, directory: Path, owner: str) -> None:
        self.directory = directory
        self.owner = owner

    @contextlib.asynccontextmanager
    async def lease(self, address: str, wait: float) -> AsyncIterator[None]:
        """Hold the lock for `address` (the device_key) while the block runs; DeviceBusy
        after `wait` seconds."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / (self._UNSAFE.sub("_", address) + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait
            while not _try_lock(fd):
                if loop.time() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    raise DeviceBusy(f"device busy: {holder or 'another run'} holds its "
                                     f"lock on this machine"
                                     + (f"; waited {wait:g}s" if wait else ""))
                await asyncio.sleep(0.2)
            os.ftruncate(fd, 0)
            os.pwrite(fd, self.owner.encode(), 0)  # who holds it, for the busy message
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lease_of(address: str, broker_url: str | None, lock_dir: Path) -> dict[str, Any] | None:
    """Who holds the lease of the device at `address` (its device_key) now: the Redis lease
    with a broker, else this machine's lock file; None when nobody does. Only reads: a
    look never takes the lease (a run that does not wait would find the device busy)."""
    if broker_url:
        import redis

        client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5,
                                      decode_responses=True)
        try:
            token = client.get(lease_key(address))
            expires = client.pttl(lease_key(address)) if token else None
        except redis.RedisError as exc:
            return {"holder": None, "via": "redis", "error": f"broker unreachable: {exc}"}
        finally:
            client.close()
        if token is None:
            return None
        return {"holder": lease_holder(str(token)), "via": "redis",
                "expires_in_s": round(int(str(expires)) / 1000, 1) if expires else None}
    path = lock_dir / (LocalLeases._UNSAFE.sub("_", address) + ".lock")
    try:
        st = os.stat(path)
        # the kernel's table of locks held: flock entries by device and inode (waiters, ->)
        ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
        with open("/proc/locks", encoding="ascii", errors="replace") as fh:
            held = any("FLOCK" in line and "->" not in line and ident in line for line in fh)
    except OSError:
        return None
    if not held:
        return None
    try:
        holder = path.read_text(errors="replace").strip()[:200]
    except OSError:
        holder = ""
    return {"holder": holder or "another run", "via": "lock file", "expires_in_s": None}
