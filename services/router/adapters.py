"""Redis implementation of the router's first-contact memory."""

from __future__ import annotations

import redis.asyncio as aioredis

from services.router.ports import PriorComplaint


class RedisFirstContacts:
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
