"""Redis store of the SLA monitor: facts per complaint, alert claims, the due schedule.

Keys (under the configured prefix):

- ``sla:case:<complaint>``  hash: ``plan`` (the complaint's ``Terms``, JSON: its milestones
  under the routing-time policy; the field keeps its first name so stored data still reads),
  ``f:<fact id>`` (one per fact, JSON), ``v`` (bumped whenever a fact or the terms are new),
  ``s:<alert event id>`` (``sent``, or ``p|<token>|<epoch>`` while one instance publishes it)
- ``sla:due``        sorted set: complaint -> when it next owes an alert
- ``sla:inflight``   sorted set: complaint -> lease expiry while one instance handles it
- ``sla:deadlines``  sorted set: complaint -> its earliest running deadline (for the gauge)
- ``sla:epoch``      present while the store is whole; its absence means Redis lost the
  keys and the monitor rebuilds them from the topics

Facts and the terms are written with HSETNX, so recording is idempotent and order-free.
An alert is published by whoever claims it first (atomically); a claim older than the
lease may be taken over, so a crash between claim and publish loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from services.common.redis_store import LeasedSchedule, Rebuildable, text
from services.sla_monitor.facts import Fact, Terms
from services.sla_monitor.ports import Snapshot

# KEYS: case; ARGV: ttl (s), terms JSON ('' for none), then fact id / fact JSON pairs
_RECORD = """
local added = 0
if ARGV[2] ~= '' then added = added + redis.call('HSETNX', KEYS[1], 'plan', ARGV[2]) end
for i = 3, #ARGV, 2 do
  added = added + redis.call('HSETNX', KEYS[1], 'f:' .. ARGV[i], ARGV[i + 1])
end
if added > 0 then redis.call('HINCRBY', KEYS[1], 'v', added) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: case; ARGV: token, now (epoch s), lease (s), event ids...
_CLAIM_ALERTS = """
local out = {}
for i = 4, #ARGV do
  local field = 's:' .. ARGV[i]
  local cur = redis.call('HGET', KEYS[1], field)
  local verdict = 'mine'
  if cur == 'sent' then
    verdict = 'sent'
  elseif cur then
    local token, at = string.match(cur, '^p|([^|]+)|(.+)$')
    if token ~= ARGV[1] and tonumber(ARGV[2]) - tonumber(at) < tonumber(ARGV[3]) then
      verdict = 'busy'
    end
  end
  if verdict == 'mine' then
    redis.call('HSET', KEYS[1], field, 'p|' .. ARGV[1] .. '|' .. ARGV[2])
  end
  out[#out + 1] = verdict
end
return out
"""

# KEYS: case, due, inflight, deadlines; ARGV: complaint, version seen, next due, deadline
_SCHEDULE = """
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
if ARGV[3] == '' then redis.call('ZREM', KEYS[2], ARGV[1])
else redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1]) end
if ARGV[4] == '' then redis.call('ZREM', KEYS[4], ARGV[1])
else redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1]) end
return 1
"""


def _snapshot(complaint_id: str, raw: list[Any] | Mapping[Any, Any]) -> Snapshot:
    pairs = zip(raw[::2], raw[1::2], strict=True) if isinstance(raw, list) else raw.items()
    fields = {text(k): text(v) for k, v in pairs}
    terms = Terms.model_validate_json(fields["plan"]) if "plan" in fields else None
    facts = [Fact.model_validate_json(v) for k, v in fields.items() if k.startswith("f:")]
    sent = frozenset(k[2:] for k, v in fields.items() if k.startswith("s:") and v == "sent")
    return Snapshot(complaint_id, fields.get("v", "0"), terms, facts, sent)


class RedisFacts(Rebuildable):
    """The SLA monitor's ``Store`` in Redis (keys above), shared by every instance."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._ttl = client, ttl_seconds
        self._p = f"{prefix}sla:"
        self._due, self._inflight = f"{self._p}due", f"{self._p}inflight"
        self._deadlines = f"{self._p}deadlines"
        super().__init__(client, self._p)
        self._record = client.register_script(_RECORD)
        self._claim_alerts = client.register_script(_CLAIM_ALERTS)
        self._schedule = client.register_script(_SCHEDULE)
        self._schedule_claims = LeasedSchedule(client)

    def _case(self, complaint_id: str) -> str:
        return f"{self._p}case:{complaint_id}"

    async def record(self, complaint_id: str, facts: list[Fact], terms: Terms | None) -> Snapshot:
        """Add facts (and the terms) unless present; return everything known of the complaint."""
        args: list[str | int] = [self._ttl, terms.model_dump_json() if terms else ""]
        for fact in facts:
            args += [fact.id, fact.model_dump_json()]
        raw = await self._record(keys=[self._case(complaint_id)], args=args)
        return _snapshot(complaint_id, raw)

    async def snapshot(self, complaint_id: str) -> Snapshot:
        """Everything known of the complaint."""
        return _snapshot(complaint_id, await self._r.hgetall(self._case(complaint_id)))

    async def claim_alerts(self, complaint_id: str, event_ids: list[str], *, token: str,
                           lease: float) -> dict[str, str]:
        """Per alert: 'mine' (publish it), 'sent' (done), 'busy' (another instance publishes it)."""
        if not event_ids:
            return {}
        result = await self._claim_alerts(keys=[self._case(complaint_id)],
                                          args=[token, time.time(), lease, *event_ids])
        return {e: text(v) for e, v in zip(event_ids, result, strict=True)}

    async def mark_sent(self, complaint_id: str, event_ids: list[str]) -> None:
        """Mark alerts published."""
        if event_ids:
            await self._r.hset(self._case(complaint_id), mapping={f"s:{e}": "sent" for e in event_ids})

    async def schedule(self, snap: Snapshot, *, next_due: float | None, deadline: float | None) -> bool:
        """Set when the complaint next owes an alert, unless newer facts arrived meanwhile."""
        done = await self._schedule(
            keys=[self._case(snap.complaint_id), self._due, self._inflight, self._deadlines],
            args=[snap.complaint_id, snap.version, "" if next_due is None else next_due,
                  "" if deadline is None else deadline])
        return bool(done)

    async def due_now(self, complaint_id: str, now: float) -> None:
        """Have the next scan evaluate the complaint (keeps an earlier due time)."""
        await self._r.zadd(self._due, {complaint_id: now}, lt=True)

    async def claim_due(self, now: float, *, limit: int, lease: float) -> list[str]:
        """Lease up to ``limit`` due complaints (expired leases first) to this instance."""
        return await self._schedule_claims.claim(self._due, self._inflight, now=now, limit=limit,
                                                 lease=lease)

    async def open_count(self) -> int:
        """Complaints with a running deadline."""
        return int(await self._r.zcard(self._deadlines))

    async def earliest_deadline(self) -> float | None:
        """The earliest running deadline (epoch seconds), if any."""
        first = await self._r.zrange(self._deadlines, 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def restore(self, complaint_id: str, facts: list[Fact], terms: Terms | None,
                      sent: list[str]) -> Snapshot:
        """Rebuild: add facts, terms and sent marks of one complaint."""
        snap = await self.record(complaint_id, facts, terms)
        await self.mark_sent(complaint_id, sent)
        return await self.snapshot(complaint_id) if sent else snap
