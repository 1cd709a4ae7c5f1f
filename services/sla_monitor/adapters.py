"""Redis implementation of the SLA monitor's clock store (atomic Lua scripts)."""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from schemas.events import Milestone, SlaOutcome
from services.sla_monitor.logic import ClockState, MilestoneClock

_START = """
local new = redis.call('HSETNX', KEYS[1], 'clock', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
if new == 1 and redis.call('HEXISTS', KEYS[1], 'stopped_at') == 0 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
return redis.call('HGETALL', KEYS[1])
"""

_STOP = """
redis.call('HSETNX', KEYS[1], 'stopped_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('HGETALL', KEYS[1])
"""

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


def _member(complaint_id: str, milestone: Milestone) -> str:
    return f"{complaint_id}|{milestone.value}"


def _state(raw: list[bytes] | dict[bytes, bytes]) -> ClockState:
    if isinstance(raw, list):
        raw = dict(zip(raw[::2], raw[1::2], strict=True))
    fields = {k.decode(): v.decode() for k, v in raw.items()}
    clock = MilestoneClock.model_validate_json(fields["clock"]) if "clock" in fields else None
    stopped = datetime.fromisoformat(fields["stopped_at"]) if "stopped_at" in fields else None
    sent = frozenset(SlaOutcome(k.removeprefix("sent:")) for k in fields if k.startswith("sent:"))
    return ClockState(clock=clock, stopped_at=stopped, sent=sent)


class RedisClocks:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int = 120 * 86400) -> None:
        self._r = client
        self._p = f"{prefix}sla:"
        self._due = f"{self._p}due"
        self._inflight = f"{self._p}inflight"
        self._ttl = ttl_seconds
        self._start = client.register_script(_START)
        self._stop = client.register_script(_STOP)
        self._claim = client.register_script(_CLAIM)

    def _key(self, member: str) -> str:
        return f"{self._p}clock:{member}"

    async def start(self, clock: MilestoneClock) -> ClockState:
        member = _member(clock.complaint_id, clock.milestone)
        raw = await self._start(keys=[self._key(member), self._due], args=[
            clock.model_dump_json(), clock.deadline.timestamp(), member, self._ttl])
        return _state(raw)

    async def stop(self, complaint_id: str, milestone: Milestone, at: datetime) -> ClockState:
        member = _member(complaint_id, milestone)
        raw = await self._stop(keys=[self._key(member), self._due],
                               args=[at.isoformat(), member, self._ttl])
        return _state(raw)

    async def claim_due(self, now: datetime, *, limit: int, lease: float) -> list[ClockState]:
        ts = now.timestamp()
        members = await self._claim(keys=[self._due, self._inflight], args=[ts, limit, ts + lease])
        if not members:
            return []
        async with self._r.pipeline(transaction=False) as pipe:
            for m in members:
                pipe.hgetall(self._key(m.decode()))
            return [_state(raw) for raw in await pipe.execute() if raw]

    async def mark_sent(self, complaint_id: str, milestone: Milestone, outcome: SlaOutcome) -> None:
        member = _member(complaint_id, milestone)
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hset(self._key(member), f"sent:{outcome.value}", "1")
            if outcome is not SlaOutcome.started:
                pipe.zrem(self._inflight, member)
            await pipe.execute()

    async def release(self, complaint_id: str, milestone: Milestone) -> None:
        await self._r.zrem(self._inflight, _member(complaint_id, milestone))

    async def open_count(self) -> int:
        return int(await self._r.zcard(self._due)) + int(await self._r.zcard(self._inflight))
