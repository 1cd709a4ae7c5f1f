"""The router's fakes keep faith: the same assertions against the fakes and the Redis adapters.

Also: the Lua scripts of ``services.router.adapters`` do what the booking rule of
``services.router.logic`` states, over many generated situations; and ``build()`` takes
the fakes in place of every Redis-backed port and then makes no Redis client.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from services.common.consumer import inputs
from services.common.policy import load_policy
from services.router import app as router_app
from services.router.adapters import RedisCases, RedisFirstContacts
from services.router.logic import HANDLER, HANDLER_REASON, BookingMode, book, fill, release
from services.router.ports import CaseRead, Cases, Commit, FirstContacts, PriorComplaint
from services.router.settings import RouterSettings
from services.router.waiting import Waiting, offer, waits
from tests.fakes import DictCases, DictFirstContacts, FixedClock, RecordingPublisher

Scenario = Callable[[FirstContacts, Cases], Coroutine[Any, Any, None]]
Run = Callable[[Scenario], None]
ASSIGNED = "handler %s: least loaded (%d open)"
UNASSIGNED = "handler: none with capacity"
QUEUE = "quality:L1"


def template(n: int = 1) -> str:
    """A proposed decision event with the tokens a booking fills."""
    return f'{{"rev":{n},"handler":"{HANDLER}","reasons":["level L1","{HANDLER_REASON}"]}}'


def booked(handler: str, load: int, n: int = 1) -> bytes:
    reason = ASSIGNED % (handler, load)
    return f'{{"rev":{n},"handler":"{handler}","reasons":["level L1","{reason}"]}}'.encode()


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def ports(request: pytest.FixtureRequest) -> Run:
    """Runs a scenario against the fakes, or the Redis adapters under a prefix of its own."""
    if request.param == "fake":
        return lambda scenario: asyncio.run(scenario(DictFirstContacts(), DictCases()))
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            client = aioredis.from_url(url)
            own = f"{prefix}{uuid.uuid4().hex[:8]}:"
            try:
                await scenario(RedisFirstContacts(client, prefix=own),
                               RedisCases(client, prefix=own, ttl_seconds=3600))
            finally:
                await client.aclose()
        asyncio.run(main())
    return run


async def commit(cases: Cases, cid: str, *, expected: int, triggers: list[str],
                 mode: BookingMode = BookingMode.book, candidates: list[tuple[str, int]] | None = None,
                 n: int = 1, queue: str = QUEUE, now: int = 1000) -> Commit:
    return await cases.commit(cid, expected=expected, template=template(n), triggers=triggers,
                              booking=mode, candidates=[("a", 0), ("b", 0)] if candidates is None
                              else candidates, assigned_reason=ASSIGNED, unassigned_reason=UNASSIGNED,
                              queue=queue, now=now)


def test_the_first_claim_of_a_customer_makes_the_anchor(ports: Run) -> None:
    async def scenario(first_contacts: FirstContacts, _: Cases) -> None:
        one, two = (PriorComplaint(complaint_id=f"C{i}", owner=f"agent-{i}") for i in (1, 2))
        # Given a customer's first complaint, When it is claimed, Then it becomes the anchor
        assert await first_contacts.claim("cust", one, window_seconds=60) is None
        # When a later complaint of the customer is claimed, Then it sees the first, twice over
        assert await first_contacts.claim("cust", two, window_seconds=60) == one
        assert await first_contacts.claim("cust", two, window_seconds=60) == one
        # And another customer's complaint has an anchor of its own
        assert await first_contacts.claim("other", two, window_seconds=60) is None
    ports(scenario)


def test_an_unknown_case_reads_as_revision_zero(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        assert await cases.read("C1", ["t1"]) == CaseRead(0, None, None)
        assert await cases.loads() == {}
    ports(scenario)


def test_a_commit_books_the_least_loaded_and_stores_the_decision_under_its_triggers(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        # Given two cases committed in turn
        first = await commit(cases, "C1", expected=0, triggers=["t1", "sla:respond:1"])
        second = await commit(cases, "C2", expected=0, triggers=["t2"])
        # Then each went to the least loaded handler, filled into its event
        assert first == Commit("committed", booked("a", 0), "a")
        assert second == Commit("committed", booked("b", 0), "b")
        assert await cases.loads() == {"a": 1, "b": 1}
        # And the case reads back at revision 1, each trigger holding the event
        for trigger in ("t1", "sla:respond:1"):
            assert await cases.read("C1", ["x", trigger]) == CaseRead(1, booked("a", 0), booked("a", 0))
        assert await cases.read("C1", ["x"]) == CaseRead(1, booked("a", 0), None)
    ports(scenario)


def test_a_stale_revision_conflicts_and_changes_nothing(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        await commit(cases, "C1", expected=0, triggers=["t1"])
        # When a decision computed from revision 0 commits after revision 1 did
        assert await commit(cases, "C1", expected=0, triggers=["t2"]) == Commit("conflict", None, None)
        # Then nothing moved
        assert await cases.read("C1", ["t2"]) == CaseRead(1, booked("a", 0), None)
        assert await cases.loads() == {"a": 1}
    ports(scenario)


def test_an_applied_trigger_returns_its_event_whatever_the_revision(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        await commit(cases, "C1", expected=0, triggers=["t1", "answer"])
        await commit(cases, "C1", expected=1, triggers=["t2"], candidates=[("b", 0)], n=2)
        # When a trigger applied at revision 1 comes again, alone or among others
        for triggers in (["t1"], ["reopen", "answer"]):
            again = await commit(cases, "C1", expected=0, triggers=triggers, n=3)
            # Then its stored event comes back, and nothing moves
            assert again == Commit("duplicate", booked("a", 0), None)
        assert (await cases.read("C1", [])).revision == 2
        assert await cases.loads() == {"b": 1}
    ports(scenario)


def test_keep_keeps_the_held_handler_and_book_moves_the_load(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        await commit(cases, "C1", expected=0, triggers=["t1"])  # a holds it
        # When it is reclassified within its department, Then a keeps it
        kept = await commit(cases, "C1", expected=1, triggers=["t2"], mode=BookingMode.keep,
                            candidates=[("b", 0)], n=2)
        assert kept.status == "committed" and kept.handler == "a" and kept.event is not None
        assert b'"handler":"a"' in kept.event and b"handler a: keeps the case" in kept.event
        assert await cases.loads() == {"a": 1}
        # When it escalates to a level where only c is on duty, Then a's load moves to c
        moved = await commit(cases, "C1", expected=2, triggers=["t3"], candidates=[("c", 0)], n=3)
        assert moved == Commit("committed", booked("c", 0, n=3), "c")
        assert await cases.loads() == {"c": 1}
    ports(scenario)


def test_nobody_with_room_leaves_the_case_waiting(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        await commit(cases, "C1", expected=0, triggers=["t1"], candidates=[("a", 1)])
        # When a second case finds a at its capacity of one
        waiting = await commit(cases, "C2", expected=0, triggers=["t2"], candidates=[("a", 1)])
        # Then nobody is booked: the handler is null and the reason says why
        assert waiting == Commit("committed", template().replace(f'"{HANDLER}"', "null").replace(
            HANDLER_REASON, UNASSIGNED).encode(), None)
        assert await cases.loads() == {"a": 1}
    ports(scenario)


def test_mode_none_leaves_the_handler_and_the_loads(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        praise = '{"rev":1,"handler":null,"reasons":["handler: none, praise is thanked"]}'
        done = await cases.commit("P1", expected=0, template=praise, triggers=["t1"],
                                  booking=BookingMode.none, candidates=[("a", 0)],
                                  assigned_reason=ASSIGNED, unassigned_reason=UNASSIGNED,
                                  queue=QUEUE, now=1000)
        assert done == Commit("committed", praise.encode(), None)
        assert await cases.waiting(QUEUE, limit=10) == []  # praise books nobody and waits nowhere
        await commit(cases, "C1", expected=0, triggers=["t2"])
        kept = await commit(cases, "C1", expected=1, triggers=["t3"], mode=BookingMode.none, n=2)
        assert kept == Commit("committed", template(2).encode(), "a")  # still held by a
        assert await cases.loads() == {"a": 1}
    ports(scenario)


def test_a_release_applies_once_per_trigger(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        await commit(cases, "C1", expected=0, triggers=["t1"])
        await commit(cases, "C2", expected=0, triggers=["t2"], candidates=[("a", 0)])
        # When the case is resolved (delivered twice) and then closed
        assert await cases.release("C1", "resolved-1") == ("released", "a")
        assert await cases.release("C1", "resolved-1") == ("duplicate", None)
        assert await cases.release("C1", "closed-1") == ("released", None)
        # Then a's load went down once; a release is no decision a read returns
        assert await cases.loads() == {"a": 1}
        assert await cases.read("C1", ["resolved-1"]) == CaseRead(1, booked("a", 0), None)
        # But as a trigger key it is applied: a commit under it returns its marker
        assert await commit(cases, "C1", expected=1, triggers=["resolved-1"], n=2) == Commit(
            "duplicate", b"released:a", None)
        # And a case with no routing state is unknown
        assert await cases.release("C9", "resolved-9") == ("unknown", None)
    ports(scenario)


# ---- the waiting queues ---------------------------------------------------------------------

def test_a_case_nobody_can_take_waits_in_its_queue_oldest_first(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        # Given a holding its one seat, and two cases after it that find nobody with room
        await commit(cases, "C0", expected=0, triggers=["t0"], candidates=[("a", 1)])
        await commit(cases, "C2", expected=0, triggers=["t2"], candidates=[("a", 1)], now=2000)
        await commit(cases, "C1", expected=0, triggers=["t1"], candidates=[("a", 1)], now=1500)
        # Then both wait in the queue, the earliest first, and the queue figures say so
        assert await cases.waiting(QUEUE, limit=10) == [("C1", 1500), ("C2", 2000)]
        assert await cases.queues([QUEUE, "quality:L2"]) == {QUEUE: (2, 1500), "quality:L2": (0, None)}
        # When C2 escalates and finds nobody at L2 either
        await commit(cases, "C2", expected=1, triggers=["t3"], candidates=[], n=2,
                     queue="quality:L2", now=9000)
        # Then it moves to the L2 queue keeping the time it started waiting
        assert await cases.waiting(QUEUE, limit=10) == [("C1", 1500)]
        assert await cases.waiting("quality:L2", limit=10) == [("C2", 2000)]
        # When C1 is booked (someone with room) and C2 is resolved
        await commit(cases, "C1", expected=1, triggers=["t4"], candidates=[("b", 0)], n=2)
        assert await cases.release("C2", "resolved-2") == ("released", None)
        # Then nobody waits any more
        assert await cases.queues([QUEUE, "quality:L2"]) == {QUEUE: (0, None), "quality:L2": (0, None)}
    ports(scenario)


async def offer_to(cases: Cases, cid: str, *, expected: int, trigger: str = "r1",
                   candidates: list[tuple[str, int]], queue: str = QUEUE, n: int = 2) -> Commit:
    return await cases.offer(cid, queue=queue, expected=expected, template=template(n),
                             trigger=trigger, candidates=candidates, assigned_reason=ASSIGNED)


def test_an_offer_books_a_waiting_case_once_and_never_beyond_capacity(ports: Run) -> None:
    async def scenario(_: FirstContacts, cases: Cases) -> None:
        # Given a at its capacity of one and C1 waiting
        await commit(cases, "C0", expected=0, triggers=["t0"], candidates=[("a", 1)])
        await commit(cases, "C1", expected=0, triggers=["t1"], candidates=[("a", 1)])
        # When C1 is offered to a, who is full: Then nothing changes
        assert await offer_to(cases, "C1", expected=1, candidates=[("a", 1)]) == Commit("full", None, None)
        # When it is offered from a stale revision: Then it conflicts
        assert await offer_to(cases, "C1", expected=0, candidates=[("b", 1)]) == Commit("conflict", None, None)
        assert await cases.waiting(QUEUE, limit=10) == [("C1", 1000)]
        # When it is offered to a (full) and b (room): Then b takes it, and it leaves the queue
        done = await offer_to(cases, "C1", expected=1, candidates=[("a", 1), ("b", 1)])
        assert done == Commit("committed", booked("b", 0, n=2), "b")
        assert await cases.waiting(QUEUE, limit=10) == []
        assert await cases.loads() == {"a": 1, "b": 1}
        assert await cases.read("C1", []) == CaseRead(2, booked("b", 0, n=2), None)
        # When the same offer comes again (another instance): Then it is a duplicate
        assert await offer_to(cases, "C1", expected=1, candidates=[("c", 0)]) == Commit(
            "duplicate", booked("b", 0, n=2), None)
        # And another offer of a case that waits no longer is gone
        assert await offer_to(cases, "C1", expected=2, trigger="r2", candidates=[("c", 0)]) == Commit(
            "gone", None, None)
        assert await cases.loads() == {"a": 1, "b": 1}
    ports(scenario)


# ---- the Lua scripts against the Python statement of the booking rule ----------------------

HANDLERS = ["a", "b", "c", "d"]
QUEUES = ["quality:L1", "quality:L2"]
CANDIDATES = st.lists(st.tuples(st.sampled_from(HANDLERS), st.integers(0, 3)), max_size=4)
OPS = st.lists(st.one_of(
    st.tuples(st.just("commit"), st.sampled_from(["C1", "C2"]), st.sampled_from(list(BookingMode)),
              CANDIDATES, st.lists(st.sampled_from(["t1", "t2", "t3", "t4", "r1"]), min_size=1, max_size=2),
              st.booleans(), st.sampled_from(QUEUES)),
    st.tuples(st.just("release"), st.sampled_from(["C1", "C2", "C3"]), st.sampled_from(["r1", "r2"])),
    st.tuples(st.just("offer"), st.sampled_from(["C1", "C2", "C3"]), st.sampled_from(QUEUES),
              CANDIDATES, st.sampled_from(["o1", "o2", "t1"]), st.booleans()),
), min_size=1, max_size=8)


@dataclass
class CaseModel:
    rev: int = 0
    held: str = ""
    applied: dict[str, str] = field(default_factory=dict)
    queued: Waiting | None = None


@dataclass
class Model:
    """The state the Python rules imply: per case revision, held handler, applied triggers, queue."""

    loads: dict[str, int]
    cases: dict[str, CaseModel] = field(default_factory=dict)
    queues: dict[str, dict[str, int]] = field(default_factory=dict)

    def wait(self, cid: str, case: CaseModel, after: Waiting | None) -> None:
        if case.queued is not None:
            self.queues.get(case.queued.queue, {}).pop(cid, None)
        if after is not None:
            self.queues.setdefault(after.queue, {})[cid] = after.since
        case.queued = after

    def commit(self, cid: str, mode: BookingMode, candidates: list[tuple[str, int]],
               triggers: list[str], stale: bool, text: str, queue: str,
               now: int) -> tuple[str, str | None, str | None]:
        case = self.cases.get(cid, CaseModel())
        for t in triggers:
            if t in case.applied:
                return "duplicate", case.applied[t], None
        if stale:
            return "conflict", None, None
        outcome = book(mode, held=case.held or None, candidates=candidates, loads=self.loads)
        event = fill(text, outcome, assigned_reason=ASSIGNED, unassigned_reason=UNASSIGNED)
        self.loads = outcome.loads
        self.wait(cid, case, waits(outcome.seat, queued=case.queued, queue=queue, now=now))
        case.rev, case.held = case.rev + 1, outcome.held or ""
        case.applied.update(dict.fromkeys(triggers, event))
        self.cases[cid] = case
        return "committed", event, outcome.held

    def release(self, cid: str, trigger: str) -> tuple[str, str | None]:
        case = self.cases.get(cid)
        held = case.held if case else ""
        status, self.loads = release(applied=case is not None and trigger in case.applied,
                                     known=case is not None, held=held or None, loads=self.loads)
        if status != "released" or case is None:
            return status, None
        case.held, case.applied[trigger] = "", f"released:{held}"
        self.wait(cid, case, None)
        return status, held or None

    def offer(self, cid: str, queue: str, candidates: list[tuple[str, int]], trigger: str,
              stale: bool, text: str) -> tuple[str, str | None, str | None]:
        case = self.cases.get(cid, CaseModel())
        if trigger in case.applied:
            return "duplicate", case.applied[trigger], None
        status, outcome = offer(queued=case.queued, queue=queue, candidates=candidates, loads=self.loads)
        if status == "gone":
            self.queues.get(queue, {}).pop(cid, None)
            return "gone", None, None
        if stale:
            return "conflict", None, None
        if outcome is None:
            return "full", None, None
        event = fill(text, outcome, assigned_reason=ASSIGNED, unassigned_reason="")
        self.loads = outcome.loads
        self.wait(cid, case, None)
        case.rev, case.held, case.applied[trigger] = case.rev + 1, outcome.held or "", event
        return "committed", event, outcome.held


@pytest.mark.integration
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(loads=st.dictionaries(st.sampled_from(HANDLERS), st.integers(1, 3)), ops=OPS)
# a release from a load above one; keep with nothing held; a conflict; a release marker as trigger
@example(loads={"a": 2}, ops=[("commit", "C1", BookingMode.book, [("a", 0)], ["t1"], False, QUEUES[0]),
                              ("release", "C1", "r1"), ("release", "C1", "r1")])
@example(loads={"a": 1}, ops=[
    ("commit", "C1", BookingMode.keep, [("a", 2), ("b", 0)], ["t1"], False, QUEUES[0]),
    ("commit", "C1", BookingMode.keep, [("c", 0)], ["t2"], True, QUEUES[0]),
    ("commit", "C1", BookingMode.keep, [("c", 0)], ["t2"], False, QUEUES[0])])
@example(loads={}, ops=[("commit", "C1", BookingMode.none, [("a", 0)], ["t1"], False, QUEUES[0]),
                        ("release", "C1", "r1"),
                        ("commit", "C1", BookingMode.book, [], ["r1"], False, QUEUES[0]),
                        ("release", "C3", "r2")])
# waiting, moving queues, a full offer, a stale one, a booked one, then the same again
@example(loads={"a": 1}, ops=[
    ("commit", "C1", BookingMode.book, [("a", 1)], ["t1"], False, QUEUES[0]),
    ("commit", "C1", BookingMode.keep, [], ["t2"], False, QUEUES[1]),
    ("offer", "C1", QUEUES[0], [("b", 0)], "o1", False),
    ("offer", "C1", QUEUES[1], [("a", 1)], "o1", False),
    ("offer", "C1", QUEUES[1], [("b", 0)], "o1", True),
    ("offer", "C1", QUEUES[1], [("a", 1), ("b", 2)], "o1", False),
    ("offer", "C1", QUEUES[1], [("b", 2)], "o1", False)])
def test_the_lua_scripts_do_what_the_booking_rule_states(
        redis_url: str, redis_prefix: str, loads: dict[str, int],
        ops: list[tuple[Any, ...]]) -> None:
    async def main() -> None:
        client = aioredis.from_url(redis_url)
        prefix = f"{redis_prefix}lua-{uuid.uuid4().hex[:8]}:"
        cases, model = RedisCases(client, prefix=prefix, ttl_seconds=600), Model(dict(loads))
        try:
            # Given handler loads held by other cases
            if loads:
                await client.hset(f"{prefix}router:load", mapping={k: v for k, v in loads.items()})
            for n, op in enumerate(ops):
                text = template(n)
                if op[0] == "release":
                    # When a case is released, Then the script answers as the rule says
                    assert await cases.release(op[1], op[2]) == model.release(op[1], op[2])
                    continue
                if op[0] == "offer":
                    # When a case is offered from a queue, Then as the offer rule says
                    _, cid, queue, candidates, trigger, stale = op
                    rev = model.cases.get(cid, CaseModel()).rev
                    got = await cases.offer(cid, queue=queue, expected=rev + 1 if stale else rev,
                                            template=text, trigger=trigger, candidates=candidates,
                                            assigned_reason=ASSIGNED)
                    status, event, held = model.offer(cid, queue, candidates, trigger, stale, text)
                else:
                    _, cid, mode, candidates, triggers, stale, queue = op
                    rev = model.cases.get(cid, CaseModel()).rev
                    # When a decision commits (from a stale revision, if so drawn)
                    got = await cases.commit(cid, expected=rev + 1 if stale else rev, template=text,
                                             triggers=triggers, booking=mode, candidates=candidates,
                                             assigned_reason=ASSIGNED, unassigned_reason=UNASSIGNED,
                                             queue=queue, now=1000 + n)
                    status, event, held = model.commit(cid, mode, candidates, triggers, stale, text,
                                                       queue, 1000 + n)
                # Then status, stored event and held handler are the rule's
                assert (got.status, got.event, got.handler) == (
                    status, event.encode() if event else None, held)
            # And so are the loads, the queues and every case's revision, holder and queue
            assert await cases.loads() == model.loads
            for queue in QUEUES:
                expected = sorted(model.queues.get(queue, {}).items(), key=lambda kv: (kv[1], kv[0]))
                assert await cases.waiting(queue, limit=10) == expected
            for cid, case in model.cases.items():
                stored = await client.hmget(f"{prefix}router:case:{cid}", ["rev", "held", "q", "qs"])
                queued = case.queued
                assert stored == [str(case.rev).encode(), case.held.encode(),
                                  queued.queue.encode() if queued else b"",
                                  str(queued.since).encode() if queued else b""]
        finally:
            async for key in client.scan_iter(match=f"{prefix}*"):
                await client.delete(key)
            await client.aclose()
    asyncio.run(main())


# ---- build() with the fakes ------------------------------------------------------------------

@pytest.mark.parametrize(("given", "client_made"), [
    ({"first_contacts", "cases"}, False),  # every Redis-backed port given: no client at all
    ({"cases"}, True),
    ({"first_contacts"}, True),
    (set(), True),
])
def test_build_makes_a_redis_client_only_for_the_ports_not_given(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, given: set[str], client_made: bool) -> None:
    made: list[RouterSettings] = []

    def redis_client(settings: RouterSettings) -> aioredis.Redis:
        made.append(settings)
        if not client_made:
            raise AssertionError("build() made a Redis client although every port was given")
        return aioredis.from_url("redis://127.0.0.1:1/0")  # connects lazily: never, here

    # Given the app module's Redis client factory watched (and failing where none is due)
    monkeypatch.setattr(router_app, "redis_client", redis_client)
    fakes: dict[str, Any] = {"first_contacts": DictFirstContacts(), "cases": DictCases()}
    # When the router is built with these ports
    settings = RouterSettings.model_validate({"COMPLAINTS_DATA_DIR": tmp_path})
    app = router_app.build(settings, load_policy(None), publisher=RecordingPublisher(),
                           clock=FixedClock(), registry=CollectorRegistry(),
                           **{k: fakes[k] for k in given})
    # Then it reads its three topics and a client was made only if a port was missing
    assert inputs(app) == {"complaints.registered", "complaints.lifecycle", "complaints.sla"}
    assert len(made) == int(client_made)
