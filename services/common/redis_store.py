"""Pieces the Redis adapters share: reply decoding, a leased schedule, rebuild markers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from services.common.ports import RebuildableStore

log = logging.getLogger(__name__)

# KEYS: due (member -> due time), inflight (member -> lease expiry); ARGV: now, limit, lease end.
# Takes members whose lease ran out first (their holder died), then due ones, moving each
# into inflight until the lease end: one claimer at a time, and nothing lost with a claimer.
_CLAIM = """
local out = {}
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(expired) do
  redis.call('ZADD', KEYS[2], ARGV[3], m)
  table.insert(out, m)
end
local left = tonumber(ARGV[2]) - #out
if left > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, left)
  for _, m in ipairs(due) do
    redis.call('ZREM', KEYS[1], m)
    redis.call('ZADD', KEYS[2], ARGV[3], m)
    table.insert(out, m)
  end
end
return out
"""


def text(value: bytes | str) -> str:
    """A Redis reply as text (clients may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value


class LeasedSchedule:
    """Claims due members of a sorted set atomically, leasing each to one claimer."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._claim = client.register_script(_CLAIM)

    async def claim(self, due_key: str, inflight_key: str, *, now: float, limit: int,
                    lease: float) -> list[str]:
        """Up to ``limit`` members due at ``now`` (expired leases first), leased until now + lease."""
        members = await self._claim(keys=[due_key, inflight_key], args=[now, limit, now + lease])
        return [text(m) for m in members]


# KEYS: lock; ARGV: token, lease in ms (renew) -- acts only while the lock is the caller's
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


class Rebuildable:
    """Derived keys under one prefix that can be rebuilt from the topics.

    An epoch marker is written when the keys are known whole; its absence means Redis lost
    them. A leased lock lets one instance rebuild while the others wait; the rebuilder
    renews it while it works, so a rebuilder that dies holds the others up for one lease.
    """

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self._epoch_client, self._epoch_prefix = client, prefix
        self._lock_key = f"{prefix}rebuild-lock"
        self._renew = client.register_script(_RENEW)
        self._unlock = client.register_script(_UNLOCK)

    async def whole(self) -> bool:
        """False when the keys were lost (the epoch marker is gone)."""
        return bool(await self._epoch_client.exists(f"{self._epoch_prefix}epoch"))

    async def mark_whole(self) -> None:
        await self._epoch_client.set(f"{self._epoch_prefix}epoch", str(time.time()))

    async def lock_rebuild(self, token: str, seconds: float) -> bool:
        return bool(await self._epoch_client.set(self._lock_key, token, nx=True, px=int(seconds * 1000)))

    async def renew_rebuild(self, token: str, seconds: float) -> bool:
        return bool(await self._renew(keys=[self._lock_key], args=[token, int(seconds * 1000)]))

    async def unlock_rebuild(self, token: str) -> None:
        await self._unlock(keys=[self._lock_key], args=[token])


async def rebuild_once(store: RebuildableStore, *, token: str, lease: float,
                       rebuild: Callable[[], Awaitable[None]]) -> bool:
    """Run ``rebuild`` here unless another instance holds the lock; then mark the store whole.

    True when this instance rebuilt. The lock is leased for ``lease`` seconds and renewed
    every third of it while ``rebuild`` runs, so a rebuilder killed mid-way (``kill -9``)
    blocks the others for at most one lease, after which one of them starts over.
    """
    if not await store.lock_rebuild(token, lease):
        return False

    async def renew() -> None:
        while True:
            await asyncio.sleep(lease / 3)
            if not await store.renew_rebuild(token, lease):
                log.warning("rebuild lock lost (another instance may rebuild too)")
                return

    renewer = asyncio.create_task(renew())
    try:
        await rebuild()
        await store.mark_whole()
        return True
    finally:
        renewer.cancel()
        await store.unlock_rebuild(token)
