"""Redis implementations of intake's ports."""

from __future__ import annotations

import redis.asyncio as aioredis


class RedisRegistrations:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int = 30 * 86400) -> None:
        self._r = client
        self._prefix = f"{prefix}intake:msg:"
        self._ttl = ttl_seconds

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        key = self._prefix + dedupe_key
        if await self._r.set(key, registered_event, nx=True, ex=self._ttl):
            return None
        stored = await self._r.get(key)
        if stored is None:  # expired between the two calls: claim again
            return await self.claim(dedupe_key, registered_event)
        return stored if isinstance(stored, bytes) else stored.encode()


class RedisTimelines:
    def __init__(self, client: aioredis.Redis, *, prefix: str, ttl_seconds: int = 400 * 86400) -> None:
        self._r = client
        self._prefix = f"{prefix}timeline:"
        self._ttl = ttl_seconds

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None:
        key = self._prefix + complaint_id
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hsetnx(key, event_id, event)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def get(self, complaint_id: str) -> list[bytes]:
        values = (await self._r.hgetall(self._prefix + complaint_id)).values()
        return [v if isinstance(v, bytes) else v.encode() for v in values]
