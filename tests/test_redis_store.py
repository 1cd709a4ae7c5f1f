"""The shared Redis pieces: one rebuilder at a time, and a rebuilder that dies frees the lock."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from services.common.redis_store import Rebuildable, rebuild_once

pytestmark = pytest.mark.integration


def test_a_rebuilder_killed_mid_way_holds_the_others_up_for_one_lease(redis_url: str,
                                                                       redis_prefix: str) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        store = Rebuildable(client, f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
        try:
            # Given a rebuilder that is killed while it rebuilds (its renewals stop with it)
            started = asyncio.Event()

            async def forever() -> None:
                started.set()
                await asyncio.Event().wait()

            async def quick() -> None:
                pass

            dying = asyncio.create_task(rebuild_once(store, token="a", lease=1.0, rebuild=forever))
            await started.wait()
            await asyncio.sleep(1.5)  # longer than the lease: the renewals keep the lock
            assert not await rebuild_once(store, token="b", lease=1.0, rebuild=forever)
            dying.cancel()  # as with kill -9, nothing after this point runs its clean-up ...
            await asyncio.gather(dying, return_exceptions=True)
            await store.lock_rebuild("a", 1.0)  # ... so the lock is still held, unrenewed
            # When another instance keeps trying, it rebuilds once the lease has run out
            t0, done = time.monotonic(), False
            while not done and time.monotonic() - t0 < 10:
                done = await rebuild_once(store, token="b", lease=1.0, rebuild=quick)
                await asyncio.sleep(0.05)
            waited = time.monotonic() - t0
            # Then it did, within about one lease, and the store is whole
            assert done and 0.5 < waited < 3, waited
            assert await store.whole()
        finally:
            await client.aclose()
    asyncio.run(scenario())
