"""Redis state of the router: first-contact anchors, case routing state, handler loads.

All of it is derived state: it can be rebuilt from ``complaints.routed`` and
``complaints.lifecycle``. Keys (under the configured prefix):

- ``router:customer:<customer key>``  the customer's anchor complaint (repeat window TTL)
- ``router:case:<complaint id>``      hash: ``rev`` (last revision), ``d`` (last decision
  event, JSON), ``held`` (handler whose load this case holds, or empty), and one
  ``t:<trigger key>`` field per applied trigger holding the event it produced
- ``router:load``                     hash: handler id -> open cases booked
- ``router:queue:<department>:<level>`` sorted set: the cases waiting for a handler there,
  scored by when they started waiting (epoch ms); the case hash holds ``q`` (its queue)
  and ``qs`` (that start) while it waits

A decision is committed by one Lua script: it checks that no trigger key was applied and
that the revision is the one the decision was computed from (optimistic concurrency,
so two router instances never both apply a decision to one case), applies the booking
rule (keep the held handler, or release it and book the least-loaded candidate) and
stores the finished event. Everything a script does happens atomically on the Redis
server, so two instances never double-book. The scripts do what ``logic.book``,
``logic.fill``, ``logic.release``, ``waiting.waits`` and ``waiting.offer`` state in Python;
tests/test_contract_router.py checks that they agree.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from services.common.redis_store import text
from services.router.logic import HANDLER, HANDLER_REASON, BookingMode
from services.router.ports import CaseRead, Commit, PriorComplaint


class RedisFirstContacts:
    """Anchors as ``router:customer:<key>`` strings expiring with the repeat window."""

    def __init__(self, client: aioredis.Redis, *, prefix: str) -> None:
        self._r, self._p = client, f"{prefix}router:customer:"

    async def claim(self, customer_key: str, prior: PriorComplaint, *,
                    window_seconds: int) -> PriorComplaint | None:
        # SET NX GET: atomically become the anchor, or read the one there is.
        stored = await self._r.set(self._p + customer_key, prior.model_dump_json(), nx=True,
                                   ex=window_seconds, get=True)
        if not isinstance(stored, str | bytes):  # set: this complaint is the anchor now
            return None
        return PriorComplaint.model_validate_json(stored)


_REPLACE = """
local function replace(s, token, value)
  local out, pos = {}, 1
  while true do
    local a, b = string.find(s, token, pos, true)
    if not a then break end
    out[#out + 1] = string.sub(s, pos, a - 1)
    out[#out + 1] = value
    pos = b + 1
  end
  out[#out + 1] = string.sub(s, pos)
  return table.concat(out)
end
"""

# KEYS: case hash, loads hash
# ARGV: expected rev, event template, ttl seconds, booking mode (logic.BookingMode: "book"
#       releases the held handler and books the least loaded; "keep" keeps the held one,
#       else books; "none" leaves both), assigned reason format (%s handler, %d load),
#       unassigned reason, queue key prefix, complaint id, queue to wait in, now (ms),
#       n trigger keys, trigger keys..., then candidate pairs: handler id, capacity (0: unlimited)
# The case waits (fields q, qs; member of the queue's sorted set, scored by qs) as
# waiting.waits states: unassigned joins the queue keeping its first wait start, booked or
# kept leaves it, none leaves it as it is.
_COMMIT = _REPLACE + f"""
local n = tonumber(ARGV[11])
for i = 1, n do
  local done = redis.call('HGET', KEYS[1], 't:' .. ARGV[11 + i])
  if done then return {{'duplicate', done}} end
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return {{'conflict', tostring(rev)}} end
local event = ARGV[2]
local held = redis.call('HGET', KEYS[1], 'held') or ''
local q = redis.call('HGET', KEYS[1], 'q') or ''
local qs = redis.call('HGET', KEYS[1], 'qs') or ''
local waits = false
if ARGV[4] == 'keep' and held ~= '' then
  event = replace(event, '"{HANDLER}"', '"' .. held .. '"')
  event = replace(event, '{HANDLER_REASON}', 'handler ' .. held .. ': keeps the case')
elseif ARGV[4] ~= 'none' then
  if held ~= '' then
    if tonumber(redis.call('HINCRBY', KEYS[2], held, -1)) <= 0 then
      redis.call('HDEL', KEYS[2], held)
    end
    held = ''
  end
  local best, bestload = nil, nil
  for j = 12 + n, #ARGV, 2 do
    local cap = tonumber(ARGV[j + 1])
    local load = tonumber(redis.call('HGET', KEYS[2], ARGV[j]) or '0')
    if (cap == 0 or load < cap) and (best == nil or load < bestload) then
      best, bestload = ARGV[j], load
    end
  end
  if best then
    redis.call('HINCRBY', KEYS[2], best, 1)
    held = best
    event = replace(event, '"{HANDLER}"', '"' .. best .. '"')
    event = replace(event, '{HANDLER_REASON}', string.format(ARGV[5], best, bestload))
  else
    waits = true
    event = replace(event, '"{HANDLER}"', 'null')
    event = replace(event, '{HANDLER_REASON}', ARGV[6])
  end
end
if ARGV[4] ~= 'none' then
  if q ~= '' and (not waits or q ~= ARGV[9]) then redis.call('ZREM', ARGV[7] .. q, ARGV[8]) end
  if waits then
    if q == '' then qs = ARGV[10] end
    q = ARGV[9]
    redis.call('ZADD', ARGV[7] .. q, tonumber(qs), ARGV[8])
  else
    q, qs = '', ''
  end
end
redis.call('HSET', KEYS[1], 'rev', rev + 1, 'd', event, 'held', held, 'q', q, 'qs', qs)
for i = 1, n do redis.call('HSET', KEYS[1], 't:' .. ARGV[11 + i], event) end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {{'committed', event, held}}
"""

# KEYS: case hash, loads hash; ARGV: trigger key, ttl seconds, queue key prefix, complaint id
# A release also takes the case out of the queue it waits in.
_RELEASE = """
if redis.call('HEXISTS', KEYS[1], 't:' .. ARGV[1]) == 1 then return {'duplicate', ''} end
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown', ''} end
local held = redis.call('HGET', KEYS[1], 'held') or ''
if held ~= '' then
  if tonumber(redis.call('HINCRBY', KEYS[2], held, -1)) <= 0 then
    redis.call('HDEL', KEYS[2], held)
  end
end
local q = redis.call('HGET', KEYS[1], 'q') or ''
if q ~= '' then redis.call('ZREM', ARGV[3] .. q, ARGV[4]) end
redis.call('HSET', KEYS[1], 'held', '', 'q', '', 'qs', '', 't:' .. ARGV[1], 'released:' .. held)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
return {'released', held}
"""

# KEYS: case hash, loads hash
# ARGV: expected rev, event template, ttl seconds, assigned reason format, queue key prefix,
#       complaint id, queue, trigger key, then candidate pairs: handler id, capacity
# As waiting.offer states: a case no longer waiting in the queue is dropped from it
# ('gone'); nobody with room changes nothing ('full'); else the least-loaded candidate is
# booked and the case leaves the queue, one script so two instances never both offer it.
_OFFER = _REPLACE + f"""
local done = redis.call('HGET', KEYS[1], 't:' .. ARGV[8])
if done then return {{'duplicate', done}} end
if redis.call('HGET', KEYS[1], 'q') ~= ARGV[7] then
  redis.call('ZREM', ARGV[5] .. ARGV[7], ARGV[6])
  return {{'gone', ''}}
end
local rev = tonumber(redis.call('HGET', KEYS[1], 'rev') or '0')
if rev ~= tonumber(ARGV[1]) then return {{'conflict', tostring(rev)}} end
local best, bestload = nil, nil
for j = 9, #ARGV, 2 do
  local cap = tonumber(ARGV[j + 1])
  local load = tonumber(redis.call('HGET', KEYS[2], ARGV[j]) or '0')
  if (cap == 0 or load < cap) and (best == nil or load < bestload) then
    best, bestload = ARGV[j], load
  end
end
if not best then return {{'full', ''}} end
redis.call('HINCRBY', KEYS[2], best, 1)
redis.call('ZREM', ARGV[5] .. ARGV[7], ARGV[6])
local event = replace(ARGV[2], '"{HANDLER}"', '"' .. best .. '"')
event = replace(event, '{HANDLER_REASON}', string.format(ARGV[4], best, bestload))
redis.call('HSET', KEYS[1], 'rev', rev + 1, 'd', event, 'held', best, 'q', '', 'qs', '',
           't:' .. ARGV[8], event)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return {{'committed', event, best}}
"""


class RedisCases:
    """Case hashes ``router:case:<id>`` and the loads hash ``router:load``, changed by Lua."""

    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int) -> None:
        self._r, self._ttl = client, ttl_seconds
        self._case, self._loads = f"{prefix}router:case:", f"{prefix}router:load"
        self._queue = f"{prefix}router:queue:"
        self._commit = client.register_script(_COMMIT)
        self._release = client.register_script(_RELEASE)
        self._offer = client.register_script(_OFFER)

    async def read(self, complaint_id: str, triggers: list[str]) -> CaseRead:
        values = await self._r.hmget(self._case + complaint_id, ["rev", "d", *[f"t:{t}" for t in triggers]])
        rev, current, *applied = (_bytes(v) for v in values)
        hit = next((a for a in applied if a is not None and not a.startswith(b"released:")), None)
        return CaseRead(int(rev or 0), current, hit)

    async def commit(self, complaint_id: str, *, expected: int, template: str, triggers: list[str],
                     booking: BookingMode, candidates: list[tuple[str, int]], assigned_reason: str,
                     unassigned_reason: str, queue: str, now: int) -> Commit:
        """Apply a proposed decision unless a trigger was applied or the revision moved on."""
        args: list[str | int] = [expected, template, self._ttl, str(booking),
                                 assigned_reason, unassigned_reason, self._queue, complaint_id,
                                 queue, now, len(triggers), *triggers]
        for handler, capacity in candidates:
            args += [handler, capacity]
        result = await self._commit(keys=[self._case + complaint_id, self._loads], args=args)
        status = text(result[0])
        if status not in ("committed", "duplicate"):
            return Commit("conflict", None, None)
        held = text(result[2]) if status == "committed" and len(result) > 2 else ""
        return Commit("committed" if status == "committed" else "duplicate", _bytes(result[1]),
                      held or None)

    async def release(self, complaint_id: str, trigger: str) -> tuple[str, str | None]:
        """Release the case's handler load once per trigger: (status, handler released)."""
        status, held = await self._release(keys=[self._case + complaint_id, self._loads],
                                           args=[trigger, self._ttl, self._queue, complaint_id])
        return text(status), text(held) or None

    async def offer(self, complaint_id: str, *, queue: str, expected: int, template: str,
                    trigger: str, candidates: list[tuple[str, int]], assigned_reason: str) -> Commit:
        """Book a case waiting in ``queue`` to the least-loaded candidate with room, atomically."""
        args: list[str | int] = [expected, template, self._ttl, assigned_reason, self._queue,
                                 complaint_id, queue, trigger]
        for handler, capacity in candidates:
            args += [handler, capacity]
        result = await self._offer(keys=[self._case + complaint_id, self._loads], args=args)
        status = text(result[0])
        if status == "committed":
            return Commit("committed", _bytes(result[1]), text(result[2]))
        if status == "duplicate":
            return Commit("duplicate", _bytes(result[1]), None)
        return Commit("full" if status == "full" else "gone" if status == "gone" else "conflict",
                      None, None)

    async def waiting(self, queue: str, *, limit: int) -> list[tuple[str, int]]:
        """The oldest ``limit`` cases of ``queue``: (complaint id, waiting since in epoch ms)."""
        rows = await self._r.zrange(self._queue + queue, 0, limit - 1, withscores=True)
        return [(text(row[0]), int(row[1])) for row in rows if isinstance(row, list | tuple)]

    async def queues(self, queues: list[str]) -> dict[str, tuple[int, int | None]]:
        """Per queue: cases waiting and the oldest's wait start (epoch ms), None when empty."""
        pipe = self._r.pipeline(transaction=False)
        for q in queues:
            pipe.zcard(self._queue + q)
            pipe.zrange(self._queue + q, 0, 0, withscores=True)
        raw = await pipe.execute()
        return {q: (int(raw[2 * i]), int(raw[2 * i + 1][0][1]) if raw[2 * i + 1] else None)
                for i, q in enumerate(queues)}

    async def loads(self) -> dict[str, int]:
        """Open cases per handler."""
        raw = await self._r.hgetall(self._loads)
        return {text(k): int(v) for k, v in raw.items()}


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value
