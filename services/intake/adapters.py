"""Redis implementations of intake's ports."""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

CLAIM_TTL_SECONDS = 30 * 86400  # how long a channel message id stays claimed
# How long a complaint number stays reserved. A number holds its millisecond, so only an
# instance whose clock reads the same millisecond can draw it again: two minutes cover the
# clock differences and steps NTP leaves between instances, and keep the reservations few
# (at 1,000 complaints/s, 120,000 small keys: about 10 MB).
NUMBER_TTL_SECONDS = 120
TIMELINE_TTL_SECONDS = 400 * 86400  # how long a complaint's timeline stays after its last event
REVISIT_TTL_SECONDS = 7 * 86400  # how long a customer's open revisits stay: the reply window


class RedisRegistrations:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int = CLAIM_TTL_SECONDS) -> None:
        self._r = client
        self._prefix = f"{prefix}intake:msg:"
        self._numbers = f"{prefix}intake:number:"
        self._nonces = f"{prefix}intake:nonce:"
        self._ttl = ttl_seconds

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        return (await self.claim_many([(dedupe_key, registered_event)]))[0]

    async def claim_many(self, claims: list[tuple[str, bytes]]) -> list[bytes | None]:
        # SET ... NX GET (Redis >= 7): atomically store if absent, else return what is stored.
        async with self._r.pipeline(transaction=False) as pipe:
            for dedupe_key, event in claims:
                pipe.set(self._prefix + dedupe_key, event, nx=True, ex=self._ttl, get=True)
            stored = await pipe.execute()
        return [s if s is None or isinstance(s, bytes) else s.encode() for s in stored]

    async def reserve_numbers(self, numbers: list[str]) -> list[bool]:
        # SET NX per number, in order: a number drawn twice (here or by another instance) is
        # reserved by its first draw only.
        async with self._r.pipeline(transaction=False) as pipe:
            for number in numbers:
                pipe.set(self._numbers + number, b"1", nx=True, ex=NUMBER_TTL_SECONDS)
            return [bool(ok) for ok in await pipe.execute()]

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        return bool(await self._r.set(self._nonces + key, b"1", nx=True, ex=ttl_seconds))


class RedisTimelines:
    def __init__(self, client: aioredis.Redis, *, prefix: str,
                 ttl_seconds: int = TIMELINE_TTL_SECONDS) -> None:
        self._r = client
        self._prefix = f"{prefix}timeline:"
        self._ttl = ttl_seconds

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None:
        await self.add_many([(complaint_id, event_id, event)])

    async def add_many(self, entries: list[tuple[str, str, bytes]]) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for complaint_id, event_id, event in entries:
                pipe.hsetnx(self._prefix + complaint_id, event_id, event)
                pipe.expire(self._prefix + complaint_id, self._ttl)
            await pipe.execute()

    async def get(self, complaint_id: str) -> list[bytes]:
        values = (await self._r.hgetall(self._prefix + complaint_id)).values()
        return [v if isinstance(v, bytes) else v.encode() for v in values]


class RedisRevisits:
    """One sorted set per customer key: complaint id -> when its revisit was sent (epoch seconds).

    ``{prefix}intake:revisits:<customer key>``; kept as long as the reply window after its newest
    revisit; an older entry is dropped when the customer's next revisit is recorded.
    """

    def __init__(self, client: aioredis.Redis, *, prefix: str,
                 ttl_seconds: int = REVISIT_TTL_SECONDS) -> None:
        self._r = client
        self._prefix = f"{prefix}intake:revisits:"
        self._ttl = ttl_seconds

    async def open(self, entries: list[tuple[str, str, datetime]]) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for customer_key, complaint_id, sent_at in entries:
                key, at = self._prefix + customer_key, sent_at.timestamp()
                pipe.zadd(key, {complaint_id: at})
                pipe.zremrangebyscore(key, "-inf", f"({at - self._ttl}")
                pipe.expire(key, self._ttl, nx=True)  # a new key: the window from now
                pipe.expire(key, self._ttl, gt=True)  # else never shortened
            await pipe.execute()

    async def close(self, entries: list[tuple[str, str]]) -> None:
        async with self._r.pipeline(transaction=False) as pipe:
            for customer_key, complaint_id in entries:
                pipe.zrem(self._prefix + customer_key, complaint_id)
            await pipe.execute()

    async def of_customers(self, customer_keys: list[str], *, since: datetime,
                           ) -> list[list[tuple[str, datetime]]]:
        async with self._r.pipeline(transaction=False) as pipe:
            for customer_key in customer_keys:
                pipe.zrangebyscore(self._prefix + customer_key, since.timestamp(), "+inf", withscores=True)
            found = await pipe.execute()
        return [[(c if isinstance(c, str) else c.decode(), datetime.fromtimestamp(at, UTC)) for c, at in rows]
                for rows in found]
