"""The SLA clock store against a real Redis: order independence and claims shared by instances."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from schemas.events import Milestone, Severity, SlaOutcome
from services.sla_monitor.adapters import RedisClocks
from services.sla_monitor.logic import MilestoneClock

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


def clock(cid: str, deadline: datetime = T0 + timedelta(hours=1)) -> MilestoneClock:
    return MilestoneClock(complaint_id=cid, milestone=Milestone.acknowledge, severity=Severity.general,
                          started_at=T0, deadline=deadline, notify=["owner"], policy_version="v",
                          correlationid="c", causationid="r")


def run(redis_url: str, redis_prefix: str, scenario):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        client = aioredis.from_url(redis_url)
        try:
            store = RedisClocks(client, prefix=f"{redis_prefix}{uuid.uuid4().hex[:6]}:")
            return await scenario(store)
        finally:
            await client.aclose()
    return asyncio.run(main())


def test_a_stop_before_the_start_is_kept_and_never_scheduled(redis_url: str, redis_prefix: str) -> None:
    async def scenario(store: RedisClocks) -> None:
        # Given a case acknowledged before its routing decision reached the monitor
        early = await store.stop("C1", Milestone.acknowledge, T0 + timedelta(minutes=1))
        assert early.clock is None and early.stopped_at == T0 + timedelta(minutes=1)
        # When the clock starts afterwards
        state = await store.start(clock("C1"))
        # Then it is known as stopped, and nothing is due even long after the deadline
        assert state.clock is not None and state.stopped_at is not None
        assert await store.claim_due(T0 + timedelta(days=1), limit=10, lease=30) == []

    run(redis_url, redis_prefix, scenario)


def test_a_started_clock_is_due_once_and_a_second_start_changes_nothing(redis_url: str,
                                                                        redis_prefix: str) -> None:
    async def scenario(store: RedisClocks) -> None:
        await store.start(clock("C2"))
        again = await store.start(clock("C2", deadline=T0 + timedelta(hours=9)))
        assert again.clock is not None and again.clock.deadline == T0 + timedelta(hours=1)
        assert await store.claim_due(T0 + timedelta(minutes=59), limit=10, lease=30) == []
        due = await store.claim_due(T0 + timedelta(hours=1), limit=10, lease=30)
        assert [s.clock.complaint_id for s in due if s.clock] == ["C2"]
        # a claimed deadline is not handed out again while its lease runs
        assert await store.claim_due(T0 + timedelta(hours=1, seconds=10), limit=10, lease=30) == []
        # after the lease, an unfinished claim is taken over; once marked sent, never again
        retaken = await store.claim_due(T0 + timedelta(hours=1, seconds=31), limit=10, lease=30)
        assert len(retaken) == 1
        await store.mark_sent("C2", Milestone.acknowledge, SlaOutcome.breached)
        assert await store.claim_due(T0 + timedelta(hours=3), limit=10, lease=30) == []
        assert await store.open_count() == 0

    run(redis_url, redis_prefix, scenario)


def test_two_instances_claiming_at_once_never_share_a_deadline(redis_url: str, redis_prefix: str) -> None:
    async def scenario(store: RedisClocks) -> None:
        # Given 300 due deadlines
        for i in range(300):
            await store.start(clock(f"D{i}"))
        # When two instances claim concurrently in small batches
        async def claimer() -> list[str]:
            got: list[str] = []
            while batch := await store.claim_due(T0 + timedelta(hours=2), limit=7, lease=60):
                got += [s.clock.complaint_id for s in batch if s.clock]
            return got

        a, b = await asyncio.gather(claimer(), claimer())
        # Then every deadline went to exactly one of them
        assert sorted(a + b) == sorted(f"D{i}" for i in range(300))
        assert not set(a) & set(b)

    run(redis_url, redis_prefix, scenario)


def test_two_routers_claiming_one_customer_agree_on_one_anchor(redis_url: str, redis_prefix: str) -> None:
    from services.router.adapters import RedisFirstContacts
    from services.router.ports import PriorComplaint

    async def main() -> list[PriorComplaint | None]:
        client = aioredis.from_url(redis_url)
        try:
            store = RedisFirstContacts(client, prefix=f"{redis_prefix}{uuid.uuid4().hex[:6]}:")
            # Given two complaints of one customer routed at the same moment by two instances
            claims = [store.claim("cust-1", PriorComplaint(complaint_id=f"C{i}", owner=f"agent-{i}"),
                                  window_seconds=60) for i in range(2)]
            return list(await asyncio.gather(*claims))
        finally:
            await client.aclose()

    # Then exactly one became the anchor and the other sees it
    results = asyncio.run(main())
    assert results.count(None) == 1
    (seen,) = [r for r in results if r is not None]
    assert seen.complaint_id in {"C0", "C1"}
