"""The shared Redis pieces: one rebuilder at a time, and a rebuilder that dies frees the lock."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from services.common.redis_store import Rebuildable, rebuild_once

pytestmark = pytest.mark.integration

LEASE = 1.0


def test_a_rebuilder_killed_mid_way_holds_the_others_up_for_one_lease(redis_url: str,
                                                                       redis_prefix: str) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
        store, lock = Rebuildable(client, prefix), f"{prefix}rebuild-lock"
        try:
            # Given a rebuilder that is killed while it rebuilds (its renewals stop with it)
            started = asyncio.Event()

            async def forever() -> None:
                started.set()
                await asyncio.Event().wait()

            async def quick() -> None:
                pass

            dying = asyncio.create_task(rebuild_once(store, token="a", lease=LEASE, rebuild=forever))
            await started.wait()
            # While it runs, its renewals push the lease out again (the lock's TTL goes back up) ...
            low = ttl = await client.pttl(lock)
            while ttl <= low + 100:  # a renewal lifts it by a third of the lease
                await asyncio.sleep(0.02)
                low, ttl = min(low, ttl), await client.pttl(lock)
            # ... and nobody else can rebuild
            assert not await rebuild_once(store, token="b", lease=LEASE, rebuild=forever)
            dying.cancel()  # as with kill -9, nothing after this point runs its clean-up ...
            await asyncio.gather(dying, return_exceptions=True)
            await store.lock_rebuild("a", LEASE)  # ... so the lock is still held, unrenewed
            # When another instance keeps trying
            attempts_while_held = 0
            while await client.exists(lock):
                # Then the dead holder's lock lapses within one lease, Redis's own expiry ...
                assert 0 < await client.pttl(lock) <= LEASE * 1000
                assert not await rebuild_once(store, token="b", lease=LEASE, rebuild=quick)
                attempts_while_held += 1
                await asyncio.sleep(0.05)
            # ... after which the other instance rebuilds and the store is whole
            assert attempts_while_held > 0
            assert await rebuild_once(store, token="b", lease=LEASE, rebuild=quick)
            assert await store.whole()
        finally:
            await client.aclose()
    asyncio.run(scenario())
