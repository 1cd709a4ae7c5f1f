"""Contract: intake's fakes and the shared rebuild lock behave as their Redis adapters do.

Every test runs twice, against the in-memory fake (no server) and the Redis adapter
(marked integration), so a fake cannot drift from the real thing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis

from services.common.consumer import inputs
from services.common.ports import RebuildableStore
from services.common.redis_store import Rebuildable
from services.intake.adapters import RedisRegistrations, RedisRevisits, RedisTimelines
from services.intake.ports import Registrations, Revisits, Timelines
from tests.fakes import DictRebuildable, DictRegistrations, DictRevisits, DictTimelines

T = TypeVar("T")
BACKENDS = ["fake", pytest.param("redis", marks=pytest.mark.integration)]


class Backend:
    """Builds one kind of store per test: in memory, or on Redis under a fresh prefix."""

    def __init__(self, kind: str, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.client: aioredis.Redis | None = None
        self.prefix = ""
        if kind == "redis":
            self.url = request.getfixturevalue("redis_url")
            self.prefix = f"{request.getfixturevalue('redis_prefix')}{uuid.uuid4().hex[:8]}:"

    def run(self, scenario: Callable[[Backend], Awaitable[T]]) -> T:
        async def go() -> T:
            if self.kind == "redis":
                self.client = aioredis.from_url(self.url)
            try:
                return await scenario(self)
            finally:
                if self.client is not None:
                    await self.client.aclose()
        return asyncio.run(go())

    def registrations(self) -> Registrations:
        return DictRegistrations() if self.client is None else RedisRegistrations(self.client, prefix=self.prefix)

    def timelines(self) -> Timelines:
        return DictTimelines() if self.client is None else RedisTimelines(self.client, prefix=self.prefix)

    def revisits(self, ttl: timedelta = timedelta(days=7)) -> Revisits:
        return (DictRevisits(ttl=ttl) if self.client is None
                else RedisRevisits(self.client, prefix=self.prefix, ttl_seconds=int(ttl.total_seconds())))

    def rebuildable(self) -> RebuildableStore:
        return DictRebuildable() if self.client is None else Rebuildable(self.client, self.prefix)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield Backend(request.param, request)


def test_a_message_is_claimed_once_and_later_claims_see_the_first_event(backend: Backend) -> None:
    async def scenario(b: Backend) -> list[Any]:
        regs = b.registrations()
        # Given a claimed message; When it is claimed again, alone and in a batch with a new one
        first = await regs.claim("web_form:m1", b"event-1")
        again = await regs.claim("web_form:m1", b"event-2")
        batch = await regs.claim_many([("web_form:m2", b"event-3"), ("web_form:m1", b"event-4"),
                                       ("web_form:m2", b"event-5")])
        return [first, again, batch]
    # Then the first claim wins, in order, and a key repeated in one call claims once
    assert backend.run(scenario) == [None, b"event-1", [None, b"event-1", b"event-3"]]


def test_a_timeline_keeps_each_event_once_under_its_first_body(backend: Backend) -> None:
    async def scenario(b: Backend) -> tuple[list[bytes], list[bytes]]:
        lines = b.timelines()
        # Given events of two complaints, one event delivered twice with another body
        await lines.add("C1", "e1", b"one")
        await lines.add_many([("C1", "e2", b"two"), ("C2", "e3", b"three"), ("C1", "e1", b"changed")])
        return await lines.get("C1"), await lines.get("C-unknown")
    c1, unknown = backend.run(scenario)
    # Then each event is there once, as first recorded; an unknown complaint has none
    assert sorted(c1) == [b"one", b"two"]
    assert unknown == []


def test_open_revisits_are_found_by_customer_since_a_time_and_closed_by_an_answer(
        backend: Backend) -> None:
    t0 = datetime(2026, 11, 23, 9, tzinfo=UTC)

    async def scenario(b: Backend) -> list[object]:
        index = b.revisits()
        # Given revisits of two customers, one of them sent again later
        await index.open([("cust-a", "C1", t0), ("cust-a", "C2", t0 + timedelta(hours=1)),
                          ("cust-b", "C3", t0)])
        await index.open([("cust-a", "C1", t0 + timedelta(hours=2))])
        seen: list[object] = [await index.of_customers(["cust-a", "cust-b", "nobody"], since=t0)]
        # When C2 is answered (and an unknown one closed); Then only C1 is open for cust-a
        await index.close([("cust-a", "C2"), ("cust-a", "C9"), ("nobody", "C1")])
        seen.append(await index.of_customers(["cust-a"], since=t0))
        # and nothing sent before ``since`` is found
        seen.append(await index.of_customers(["cust-a", "cust-b"], since=t0 + timedelta(hours=3)))
        return seen
    # Then each customer's open ones come in order of sending, at the time last recorded
    assert backend.run(scenario) == [
        [[("C2", t0 + timedelta(hours=1)), ("C1", t0 + timedelta(hours=2))], [("C3", t0)], []],
        [[("C1", t0 + timedelta(hours=2))]],
        [[], []],
    ]


def test_a_revisit_older_than_the_window_is_dropped_at_the_customers_next_one(backend: Backend) -> None:
    t0 = datetime(2026, 11, 23, 9, tzinfo=UTC)

    async def scenario(b: Backend) -> list[list[tuple[str, datetime]]]:
        index = b.revisits(ttl=timedelta(days=7))
        await index.open([("cust-a", "C1", t0)])
        await index.open([("cust-a", "C2", t0 + timedelta(days=8))])
        return await index.of_customers(["cust-a"], since=t0 - timedelta(days=30))
    assert backend.run(scenario) == [[("C2", t0 + timedelta(days=8))]]


def test_the_rebuild_lock_belongs_to_its_holder_and_the_epoch_marks_the_store_whole(
        backend: Backend) -> None:
    async def scenario(b: Backend) -> list[object]:
        store = b.rebuildable()
        seen: list[object] = [await store.whole()]            # a new store is not whole
        seen.append(await store.lock_rebuild("a", 30))       # a takes the lock
        seen.append(await store.lock_rebuild("b", 30))       # b cannot
        seen.append(await store.renew_rebuild("b", 30))      # nor renew it
        seen.append(await store.renew_rebuild("a", 30))      # a can
        await store.unlock_rebuild("b")                      # b cannot release it ...
        seen.append(await store.lock_rebuild("b", 30))
        await store.unlock_rebuild("a")                      # ... a can
        seen.append(await store.lock_rebuild("b", 30))
        await store.mark_whole()
        seen.append(await store.whole())
        return seen
    assert backend.run(scenario) == [False, True, False, False, True, False, True, True]


def test_a_lock_whose_holder_stopped_renewing_lapses_after_its_lease(backend: Backend) -> None:
    async def scenario(b: Backend) -> tuple[bool, int]:
        store = b.rebuildable()
        # Given a lock taken for a short lease and never renewed (its holder died)
        await store.lock_rebuild("dead", 0.2)
        refused = 0
        # When another instance keeps asking, Then it gets the lock once the lease lapsed
        while not await store.lock_rebuild("alive", 30):
            refused += 1
            await asyncio.sleep(0.02)
        return await store.renew_rebuild("dead", 30), refused
    renewed_by_dead, refused = backend.run(scenario)
    assert not renewed_by_dead and refused > 0


def test_build_with_every_port_given_makes_no_redis_client(monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Any) -> None:
    from services.common.policy import load_policy
    from services.intake import app as intake_app
    from services.intake.settings import IntakeSettings
    from tests.fakes import RecordingPublisher

    # Given a Redis client factory that fails the test if called
    def no_redis(settings: object) -> None:
        raise AssertionError("build() made a Redis client although every port was given")

    monkeypatch.setattr(intake_app, "redis_client", no_redis)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DESK_JWT_SECRET", "intake-test-staff-token-secret-32chars")
    # When intake is built with every port
    app = intake_app.build(IntakeSettings(), load_policy(), publisher=RecordingPublisher(),
                           registrations=DictRegistrations(), timelines=DictTimelines())
    # Then it is wired (its inbound and the timeline's topics) without one
    assert inputs(app) == {f"complaints.{t}" for t in (
        "inbound", "registered", "routed", "lifecycle", "sla", "notifications")}
