"""The SLA store's contract: the same assertions against the fake (tests/fakes/sla_monitor.DictFacts)
and the real Redis adapter (RedisFacts), so the fake cannot drift from what it stands for.

Also: build() given every port opens no Redis connection.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import faust
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.events import CaseAction
from services.common.consumer import inputs
from services.common.policy import load_policy
from services.common.runtime import always_ready
from services.sla_monitor import app as sla_app
from services.sla_monitor.adapters import RedisFacts
from services.sla_monitor.facts import Fact, facts_of
from services.sla_monitor.ports import Snapshot, Store
from services.sla_monitor.settings import SlaMonitorSettings
from tests.fakes import DictFacts, FixedClock, RecordingPublisher, StaticTopics
from tests.test_sla_logic import T0, M, action, fixed_terms, routed

ROUTED = facts_of(routed())  # three facts: the route, "routed", "assigned"
ACK = facts_of(action(CaseAction.acknowledged, T0 + M))


class Backend(Protocol):
    """Stores sharing one state (one fake, or one Redis prefix), as monitor instances do."""

    def store(self) -> Store: ...

    async def lose(self) -> None: ...

    async def queued(self) -> tuple[int, int]:
        """How many complaints are on the due schedule, and how many are claimed."""
        ...

    async def close(self) -> None: ...


class FakeBackend:
    def __init__(self) -> None:
        self.fake = DictFacts()

    def store(self) -> Store:
        return self.fake

    async def lose(self) -> None:
        self.fake.lose()

    async def queued(self) -> tuple[int, int]:
        return len(self.fake.due), len(self.fake.inflight)

    async def close(self) -> None:
        pass


class RedisBackend:
    def __init__(self, url: str, prefix: str) -> None:
        self.url, self.prefix = url, prefix
        self.clients: list[aioredis.Redis] = []

    def store(self) -> Store:
        client = aioredis.from_url(self.url)
        self.clients.append(client)
        return RedisFacts(client, prefix=self.prefix, ttl_seconds=3600)

    async def lose(self) -> None:
        client = aioredis.from_url(self.url)
        try:
            async for key in client.scan_iter(match=f"{self.prefix}sla:*"):
                await client.delete(key)
        finally:
            await client.aclose()

    async def queued(self) -> tuple[int, int]:
        client = aioredis.from_url(self.url)
        try:
            return (await client.zcard(f"{self.prefix}sla:due"),
                    await client.zcard(f"{self.prefix}sla:inflight"))
        finally:
            await client.aclose()

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


BACKENDS = ["fake", pytest.param("redis", marks=pytest.mark.integration)]


def open_backend(request: pytest.FixtureRequest) -> Backend:
    """The fake, or Redis under a prefix of this test's own, as ``request.param`` says."""
    if request.param == "fake":
        return FakeBackend()
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
    return RedisBackend(url, f"{prefix}{uuid.uuid4().hex[:8]}:")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    return open_backend(request)


def run(backend: Backend, scenario: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario(backend.store())
        finally:
            await backend.close()
    asyncio.run(main())


def ids(facts: list[Fact]) -> set[str]:
    return {f.id for f in facts}


# ---- facts and terms --------------------------------------------------------------


def test_facts_and_terms_are_kept_once_and_the_version_counts_what_is_new(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        # Given an unknown complaint: nothing held, version "0"
        assert await store.snapshot("C") == Snapshot("C", "0", None, [], frozenset())
        # When its routing facts and terms are recorded
        first = await store.record("C", ROUTED, fixed_terms())
        # Then it holds them, each counted once in the version
        assert (first.version, first.terms, ids(first.facts)) == ("4", fixed_terms(), ids(ROUTED))
        # When the same facts come again, with other terms
        again = await store.record("C", ROUTED, fixed_terms(scale=2))
        # Then nothing changes: the first terms stay
        assert (again.version, again.terms, ids(again.facts)) == ("4", fixed_terms(), ids(ROUTED))
        # When a new fact comes, with one already held
        later = await store.record("C", [*ACK, ROUTED[0]], None)
        assert (later.version, ids(later.facts)) == ("5", ids(ROUTED) | ids(ACK))
        # Then a snapshot shows what the last record returned
        snap = await store.snapshot("C")
        assert (snap.version, snap.terms, ids(snap.facts), snap.sent) == (
            "5", fixed_terms(), ids(ROUTED) | ids(ACK), frozenset())
        assert sorted(snap.facts, key=lambda f: f.id) == sorted([*ROUTED, *ACK], key=lambda f: f.id)
    run(backend, scenario)


def test_recording_nothing_new_of_an_unknown_complaint_leaves_it_unknown(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        assert await store.record("C", [], None) == Snapshot("C", "0", None, [], frozenset())
        assert await store.schedule(await store.snapshot("C"), next_due=5.0, deadline=None) is True
    run(backend, scenario)


# ---- alert claims -----------------------------------------------------------------


@pytest.mark.parametrize(("before", "token", "lease", "verdict"), [
    pytest.param(None, "b", 30.0, "mine", id="unclaimed: mine"),
    pytest.param("a", "b", 30.0, "busy", id="claimed by another, lease running: busy"),
    pytest.param("a", "a", 30.0, "mine", id="claimed by the same instance: mine again"),
    pytest.param("a", "b", 0.0, "mine", id="claimed by another, lease over: taken over"),
    pytest.param("sent", "b", 30.0, "sent", id="published: sent"),
    pytest.param("sent", "a", 0.0, "sent", id="published: sent, whatever the lease"),
])
def test_an_alert_is_claimed_by_one_instance_at_a_time(backend: Backend, before: str | None, token: str,
                                                       lease: float, verdict: str) -> None:
    async def scenario(store: Store) -> None:
        # Given an alert claimed by instance "a", or published, or neither
        await store.record("C", ROUTED, fixed_terms())
        if before is not None:
            assert await store.claim_alerts("C", ["x"], token="a", lease=30) == {"x": "mine"}
        if before == "sent":
            await store.mark_sent("C", ["x"])
        # When an instance claims it (and another alert, never claimed)
        got = await store.claim_alerts("C", ["x", "y"], token=token, lease=lease)
        # Then the verdict on it follows the claim before; the other alert is its
        assert got == {"x": verdict, "y": "mine"}
    run(backend, scenario)


def test_sent_marks_show_in_snapshots_and_do_not_move_the_version(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.record("C", ROUTED, fixed_terms())
        assert await store.claim_alerts("C", [], token="a", lease=30) == {}
        await store.claim_alerts("C", ["x", "y"], token="a", lease=30)
        await store.mark_sent("C", ["x"])
        await store.mark_sent("C", [])
        snap = await store.snapshot("C")
        assert (snap.sent, snap.version) == (frozenset({"x"}), "4")  # "y" is only claimed
    run(backend, scenario)


# ---- the schedule -----------------------------------------------------------------


def test_a_schedule_from_an_older_snapshot_is_ignored(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        # Given a snapshot taken before a new fact arrived
        old = await store.record("C", ROUTED, fixed_terms())
        await store.record("C", ACK, None)
        # When a schedule computed from it is set, then it is refused and changes nothing
        assert await store.schedule(old, next_due=10.0, deadline=20.0) is False
        assert await store.claim_due(100.0, limit=10, lease=30) == []
        assert (await store.open_count(), await store.earliest_deadline()) == (0, None)
        # And one from a current snapshot is set
        assert await store.schedule(await store.snapshot("C"), next_due=10.0, deadline=20.0) is True
        assert (await store.open_count(), await store.earliest_deadline()) == (1, 20.0)
        assert await store.claim_due(100.0, limit=10, lease=30) == ["C"]
    run(backend, scenario)


def test_due_complaints_are_claimed_in_due_order_once_per_lease(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        # Given complaints due at 30, 10 and 20, and one at 500
        for cid, due in (("A", 30.0), ("B", 10.0), ("C", 20.0), ("D", 500.0)):
            await store.due_now(cid, due)
        # When instances claim at 100, 110 and 120, two at a time
        first = await store.claim_due(100.0, limit=2, lease=50)
        second = await store.claim_due(110.0, limit=2, lease=50)
        third = await store.claim_due(120.0, limit=2, lease=50)
        # Then each due complaint goes to one claimer, earliest first; D is not due yet
        assert (first, second, third) == (["B", "C"], ["A"], [])
        # When the leases of B and C end unscheduled (their claimer died)
        # Then they are claimed again at 150, before anything newly due
        await store.due_now("E", 140.0)
        assert await store.claim_due(150.0, limit=3, lease=50) == ["B", "C", "E"]
        assert await store.claim_due(10_000.0, limit=1, lease=50) == ["A"]  # A's lease ran out too
    run(backend, scenario)


def test_a_schedule_releases_the_claim_and_sets_the_next_due_time(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        await store.record("C", ROUTED, fixed_terms())
        await store.due_now("C", 10.0)
        assert await store.claim_due(100.0, limit=5, lease=50) == ["C"]
        # When the claimer schedules it for 300
        assert await store.schedule(await store.snapshot("C"), next_due=300.0, deadline=400.0)
        # Then it is not claimed when its lease would have ended, but when it is due
        assert await store.claim_due(200.0, limit=5, lease=50) == []
        assert await store.claim_due(300.0, limit=5, lease=50) == ["C"]
        # And a schedule with nothing due and no deadline takes it off both
        assert await store.schedule(await store.snapshot("C"), next_due=None, deadline=None)
        assert await store.claim_due(10_000.0, limit=5, lease=50) == []
        assert (await store.open_count(), await store.earliest_deadline()) == (0, None)
    run(backend, scenario)


@pytest.mark.parametrize(("first", "then", "due_at"), [
    pytest.param(50.0, 20.0, 20.0, id="an earlier time moves it forward"),
    pytest.param(20.0, 50.0, 20.0, id="a later time keeps the earlier"),
])
def test_due_now_keeps_the_earlier_due_time(backend: Backend, first: float, then: float,
                                            due_at: float) -> None:
    async def scenario(store: Store) -> None:
        await store.due_now("C", first)
        await store.due_now("C", then)
        assert await store.claim_due(due_at - 1, limit=5, lease=10) == []
        assert await store.claim_due(due_at, limit=5, lease=10) == ["C"]
    run(backend, scenario)


def test_the_open_count_and_the_earliest_deadline(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        for cid, deadline in (("A", 70.0), ("B", 40.0), ("C", None)):
            await store.record(cid, ROUTED, fixed_terms())
            await store.schedule(await store.snapshot(cid), next_due=None, deadline=deadline)
        assert (await store.open_count(), await store.earliest_deadline()) == (2, 40.0)
    run(backend, scenario)


# ---- rebuilding -------------------------------------------------------------------


def test_restore_adds_facts_terms_and_sent_marks(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        # Given a complaint already holding its acknowledgement
        await store.record("C", ACK, None)
        # When it is restored from the topics
        snap = await store.restore("C", [*ROUTED, *ACK], fixed_terms(), ["x", "y"])
        # Then it holds everything once, and the alerts count as sent
        assert (snap.version, snap.terms, ids(snap.facts), snap.sent) == (
            "5", fixed_terms(), ids(ROUTED) | ids(ACK), frozenset({"x", "y"}))
        assert await store.claim_alerts("C", ["x", "z"], token="a", lease=30) == {"x": "sent", "z": "mine"}
        assert await store.restore("D", ROUTED, None, []) == await store.snapshot("D")
    run(backend, scenario)


def test_lost_keys_show_as_a_store_not_whole_and_empty(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        # Given a store marked whole, holding a complaint
        assert await store.whole() is False  # never marked
        await store.mark_whole()
        await store.record("C", ROUTED, fixed_terms())
        await store.schedule(await store.snapshot("C"), next_due=5.0, deadline=9.0)
        assert await store.whole() is True
        # When its keys are lost
        await backend.lose()
        # Then it is not whole, and holds nothing
        assert await store.whole() is False
        assert await store.snapshot("C") == Snapshot("C", "0", None, [], frozenset())
        assert await store.claim_due(100.0, limit=5, lease=10) == []
        assert (await store.open_count(), await store.earliest_deadline()) == (0, None)
    run(backend, scenario)


def test_one_rebuilder_holds_the_lock(backend: Backend) -> None:
    async def scenario(store: Store) -> None:
        other = backend.store()  # a second instance
        # Given instance "a" holds the rebuild lock
        assert await store.lock_rebuild("a", 60) is True
        # Then "b" can neither take, renew nor release it; "a" can renew it
        assert await other.lock_rebuild("b", 60) is False
        assert await other.renew_rebuild("b", 60) is False
        await other.unlock_rebuild("b")
        assert await store.renew_rebuild("a", 60) is True
        assert await other.lock_rebuild("b", 60) is False
        # When "a" releases it, then "b" takes it
        await store.unlock_rebuild("a")
        assert await store.renew_rebuild("a", 60) is False
        assert await other.lock_rebuild("b", 60) is True
    run(backend, scenario)


# ---- build() with every port given --------------------------------------------------


def test_build_given_every_port_opens_no_redis_connection(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    # Given no Redis at all: making a client fails
    def no_redis(settings: object) -> None:
        raise AssertionError("build() made a Redis client although every port was given")

    monkeypatch.setattr(sla_app, "redis_client", no_redis)
    checks: list[object] = []
    add_web = sla_app.add_web

    def spy(app: faust.App, *, service: str, registry: CollectorRegistry,
            check: Callable[[], Awaitable[object]], **more: Any) -> None:
        checks.append(check)
        add_web(app, service=service, registry=registry, check=check, **more)

    monkeypatch.setattr(sla_app, "add_web", spy)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    # When the monitor is built with every port given
    app = sla_app.build(SlaMonitorSettings(), load_policy(), publisher=RecordingPublisher(),
                        store=DictFacts(), clock=FixedClock(), registry=CollectorRegistry(),
                        read=StaticTopics())
    # Then it is wired, and its /healthz has nothing to ping
    assert inputs(app) == {"complaints.routed", "complaints.lifecycle", "complaints.notifications"}
    assert checks == [always_ready]
