"""Nobody waits forever: the Router's waiting queues over its ports, the fakes and a real Redis.

A small roster: quality has one day-shift L1 handler with room for one case and one
night-shift L1 handler with room for two. Cases that find nobody with room wait in the
quality L1 queue; a handler who frees capacity or comes on shift is offered the oldest.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.events import CaseAction, ComplaintRouted, DecisionKind
from services.common.policy import load_policy
from services.router import rebuild
from services.router.adapters import RedisCases, RedisFirstContacts
from services.router.handlers import Router
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, FirstContacts
from services.router.roster import Roster
from services.router.taxonomy import load_taxonomy
from tests.fakes import DictCases, DictFirstContacts, FixedClock, RecordingPublisher
from tests.test_router_redis import assignment, case_event, registered

POLICY = load_policy()
TAXONOMY = load_taxonomy()
MONDAY_10_SHANGHAI = datetime(2026, 11, 23, 2, tzinfo=UTC)
MONDAY_20_SHANGHAI = datetime(2026, 11, 23, 12, tzinfo=UTC)  # the night shift starts
ROSTER = Roster.model_validate({
    "version": "queue-test", "timezone": "Asia/Shanghai",
    "shifts": {"day": ["mon-sun 08:00-20:00"], "night": ["mon-sun 20:00-08:00"],
               "always": ["mon-sun 00:00-24:00"]},
    "departments": {
        "quality": [{"id": "q-day", "level": "L1", "shift": "day", "capacity": 1},
                    {"id": "q-night", "level": "L1", "shift": "night", "capacity": 2},
                    {"id": "q-head", "level": "L2", "shift": "always"},
                    {"id": "q-exec", "level": "L3", "shift": "always"}],
        "billing": [{"id": "b-day", "level": "L1", "shift": "day", "capacity": 1},
                    {"id": "b-head", "level": "L2", "shift": "always"},
                    {"id": "b-exec", "level": "L3", "shift": "always"}]}})
CID = [f"261123-{n:010d}" for n in range(4)]

Instance = Callable[[], tuple[Router, RecordingPublisher, Cases]]
Scenario = Callable[[Instance, FixedClock], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]


def make_router(first_contacts: FirstContacts, cases: Cases, clock: FixedClock,
                registry: CollectorRegistry | None = None) -> tuple[Router, RecordingPublisher]:
    publisher = RecordingPublisher()
    router = Router(policy=POLICY, taxonomy=TAXONOMY, roster=ROSTER, publisher=publisher,
                    first_contacts=first_contacts, cases=cases, clock=clock,
                    metrics=RouterMetrics.create(registry or CollectorRegistry()))
    return router, publisher


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def run(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario with router instances sharing one state (the fakes, or a Redis prefix
    of its own, one connection per instance) and one clock."""
    if request.param == "fake":
        def run_fake(scenario: Scenario) -> None:
            first_contacts, cases, clock = DictFirstContacts(), DictCases(), FixedClock(MONDAY_10_SHANGHAI)

            def instance() -> tuple[Router, RecordingPublisher, Cases]:
                return (*make_router(first_contacts, cases, clock), cases)

            asyncio.run(scenario(instance, clock))
        return run_fake
    redis_url, redis_prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

    def run_redis(scenario: Scenario) -> None:
        async def main() -> None:
            prefix, clock = f"{redis_prefix}{uuid.uuid4().hex[:8]}:", FixedClock(MONDAY_10_SHANGHAI)
            clients: list[aioredis.Redis] = []

            def instance() -> tuple[Router, RecordingPublisher, Cases]:
                client = aioredis.from_url(redis_url)
                clients.append(client)
                cases = RedisCases(client, prefix=prefix, ttl_seconds=3600)
                return (*make_router(RedisFirstContacts(client, prefix=prefix), cases, clock), cases)

            try:
                await scenario(instance, clock)
            finally:
                for client in clients:
                    await client.aclose()
        asyncio.run(main())
    return run_redis


def decisions(*publishers: RecordingPublisher, cid: str) -> list[ComplaintRouted]:
    """The distinct decisions published for ``cid`` by any instance, by revision."""
    seen = {e.id: e for p in publishers for _, e in p.published
            if isinstance(e, ComplaintRouted) and e.subject == cid}
    return sorted(seen.values(), key=lambda e: e.data.revision)


async def register(router: Router, clock: FixedClock, n: int) -> None:
    """Register case ``n``, a minute after the one before."""
    clock.advance(minutes=1)
    await router.on_registered(None, registered(n).to_bytes())


def test_a_handler_who_frees_capacity_takes_the_oldest_waiting_case(run: Run) -> None:
    async def scenario(instance: Instance, clock: FixedClock) -> None:
        router, publisher, cases = instance()
        # Given q-day (room for one) holding case 0, and cases 1 and 2 waiting after it
        for n in range(3):
            await register(router, clock, n)
        assert [decisions(publisher, cid=c)[-1].data.handler for c in CID[:3]] == ["q-day", None, None]
        assert [c for c, _ in await cases.waiting("quality:L1", limit=10)] == CID[1:3]
        # When case 0 is resolved, ten minutes later (delivered twice)
        clock.advance(minutes=10)
        done = case_event(CID[0], CaseAction.resolved, actor="q-day", result="ok")
        await router.on_case_event(None, done.to_bytes())
        await router.on_case_event(None, done.to_bytes())
        # Then the oldest waiting case, 1, is offered to q-day, once, as an assignment
        offered = decisions(publisher, cid=CID[1])
        assert [(e.data.decision, e.data.trigger, e.data.handler, e.data.revision)
                for e in offered] == [(DecisionKind.routed, None, None, 1),
                                      (DecisionKind.assigned, "queue", "q-day", 2)]
        assert offered[1].causationid == offered[0].id
        assert offered[1].data.reasons == [
            "offered from the quality L1 queue after waiting 11 min",
            "handler q-day: on duty with room (0 open before), took the oldest waiting case"]
        # And case 2 still waits; q-day holds one case
        assert await cases.waiting("quality:L1", limit=10) == [(CID[2], int(
            (MONDAY_10_SHANGHAI + timedelta(minutes=3)).timestamp() * 1000))]
        assert await cases.loads() == {"q-day": 1}
    run(scenario)


def test_handlers_coming_on_shift_take_the_waiting_cases_once_across_instances(run: Run) -> None:
    async def scenario(instance: Instance, clock: FixedClock) -> None:
        (one, p1, cases), (two, p2, _) = instance(), instance()
        # Given four quality cases in the day: q-day takes the first, three wait
        for n in range(4):
            await register(one, clock, n)
        # When the night shift starts and both router instances sweep the queues at once
        clock.now = MONDAY_20_SHANGHAI
        booked = await asyncio.gather(one.queues.sweep(), two.queues.sweep())
        # Then q-night (room for two) takes the two oldest, each once; the newest still waits
        assert sum(booked) == 2
        assert [decisions(p1, p2, cid=c)[-1].data.handler for c in CID] == [
            "q-day", "q-night", "q-night", None]
        assert all(len(decisions(p1, p2, cid=c)) == 2 for c in CID[1:3])
        assert await cases.loads() == {"q-day": 1, "q-night": 2}
        assert [c for c, _ in await cases.waiting("quality:L1", limit=10)] == [CID[3]]
        # And a sweep with nobody free books nobody
        assert await one.queues.sweep() == 0
    run(scenario)


def test_a_transfer_away_frees_the_handler_and_a_closed_case_leaves_the_queue(run: Run) -> None:
    async def scenario(instance: Instance, clock: FixedClock) -> None:
        router, publisher, cases = instance()
        # Given q-day holding case 0, and cases 1 and 2 waiting
        for n in range(3):
            await register(router, clock, n)
        # When waiting case 1 is closed
        await router.on_case_event(None, case_event(CID[1], CaseAction.closed, actor="q-head").to_bytes())
        # Then it leaves the queue without a decision
        assert [c for c, _ in await cases.waiting("quality:L1", limit=10)] == [CID[2]]
        assert len(decisions(publisher, cid=CID[1])) == 1
        # When case 0 is transferred to billing
        await router.on_case_event(None, assignment(CID[0], CaseAction.transferred,
                                                    department="billing").to_bytes())
        # Then b-day holds it and q-day, freed, takes case 2
        assert decisions(publisher, cid=CID[0])[-1].data.handler == "b-day"
        assert decisions(publisher, cid=CID[2])[-1].data.handler == "q-day"
        assert await cases.loads() == {"b-day": 1, "q-day": 1}
        assert await cases.queues(["quality:L1"]) == {"quality:L1": (0, None)}
    run(scenario)


def test_the_queue_gauges_show_the_oldest_wait_against_the_policy_limit(run: Run) -> None:
    async def scenario(instance: Instance, clock: FixedClock) -> None:
        _, _, cases = instance()
        registry = CollectorRegistry()
        router, _ = make_router(DictFirstContacts(), cases, clock, registry)
        # Given three cases, two of them waiting since minute 2 and 3
        for n in range(3):
            await register(router, clock, n)
        # When the gauges are refreshed 90 minutes after the first waiting case came
        clock.now = MONDAY_10_SHANGHAI + timedelta(minutes=92)
        await router.queues.refresh()

        def value(name: str, department: str) -> float | None:
            return registry.get_sample_value(name, {"department": department})
        # Then quality shows two waiting, the oldest for 90 minutes, against its 1h limit
        assert value("complaints_router_queue_waiting", "quality") == 2
        assert value("complaints_router_queue_oldest_wait_seconds", "quality") == 90 * 60
        assert value("complaints_router_queue_wait_limit_seconds", "quality") == 3600
        # And billing nobody, with its limit too
        assert value("complaints_router_queue_waiting", "billing") == 0
        assert value("complaints_router_queue_oldest_wait_seconds", "billing") == 0
    run(scenario)


@pytest.mark.integration
def test_the_rebuild_restores_who_waits_where_and_since_when(
        redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the topics of a live run: case 0 booked; case 1 waited at L1 from minute 1, then
    # escalated (still nobody, at L2) at minute 5; case 2 waited and was offered; case 3
    # waited, was resolved, reopened and escalated to nobody at minute 30
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    t0 = MONDAY_10_SHANGHAI

    def routed(cid: str, revision: int, handler: str | None, minute: int, level: str = "L1",
               kind: DecisionKind = DecisionKind.routed) -> dict[str, Any]:
        d = registered(0).data
        decision = {"complaint_id": cid, "decision": kind, "revision": revision,
                    "received_at": d.received_at, "severity": "general", "department": "quality",
                    "level": level, "handler": handler, "first_contact_owner": "web-desk",
                    "reasons": ["r"]}
        return ComplaintRouted.new(decision, source="router", time=t0 + timedelta(minutes=minute),
                                   subject=cid, causationid=f"{cid}-{revision}").model_dump(mode="json")

    resolved = case_event(CID[3], CaseAction.resolved, actor="q-head", result="ok").model_copy(
        update={"time": t0 + timedelta(minutes=20)})
    topics = {
        "complaints.routed": [
            routed(CID[0], 1, "q-day", 0), routed(CID[1], 1, None, 1),
            routed(CID[1], 2, None, 5, "L2", DecisionKind.escalated),
            routed(CID[2], 1, None, 2), routed(CID[2], 2, "q-night", 9, kind=DecisionKind.assigned),
            routed(CID[3], 1, None, 3), routed(CID[3], 2, None, 30, "L2", DecisionKind.escalated)],
        "complaints.lifecycle": [resolved.model_dump(mode="json")],
        "complaints.registered": [],
    }
    monkeypatch.setattr(rebuild, "read_topic", lambda bootstrap, topic: iter(topics[topic]))
    client = redis.Redis.from_url(redis_url)

    def ms(minute: int) -> int:
        return int((t0 + timedelta(minutes=minute)).timestamp() * 1000)
    try:
        # When the router's state is rebuilt
        report = rebuild.rebuild([], client, prefix=prefix, window=timedelta(days=30),
                                 ttl=timedelta(days=1), now=t0 + timedelta(hours=1))
        # Then cases 1 and 3 wait at L2: 1 since minute 1, 3 since its escalation after the release
        assert client.zrange(f"{prefix}router:queue:quality:L2", 0, -1, withscores=True) == [
            (CID[1].encode(), ms(1)), (CID[3].encode(), ms(30))]
        assert client.zcard(f"{prefix}router:queue:quality:L1") == 0
        assert client.hmget(f"{prefix}router:case:{CID[1]}", ["q", "qs"]) == [
            b"quality:L2", str(ms(1)).encode()]
        assert report.waiting == 2
    finally:
        client.delete(*client.keys(f"{prefix}*"))
        client.close()
