"""The notifier's fakes keep faith: the same assertions against DictCustomers / DictOutbox and
RedisCustomers / RedisOutbox, and the delivery state machine (``logic.step``) against the Lua.

Every test here runs twice, on the fake and on real Redis (the latter marked integration),
except the last two, which drive the same operations through RedisOutbox and ``logic.step``
and compare every answer and the whole stored state after each operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Contact, NotificationKind
from services.common.redis_store import text
from services.notifier import logic
from services.notifier.adapters import RedisCustomers, RedisOutbox, RedisRecipientLimit
from services.notifier.logic import Begin, Book, Cancel, Claim, Delivery, Enqueue, Entry, Release, Settle
from services.notifier.messages import CustomerRecord, Notification
from tests.fakes import DictCustomers, DictOutbox
from tests.fakes.notifier import DictRecipientLimit

Stores = tuple[DictCustomers | RedisCustomers, DictOutbox | RedisOutbox]


class Backend:
    """Where the stores of one test live: in dicts, or in Redis under a prefix of their own."""

    def __init__(self, url: str | None = None, prefix: str = "") -> None:
        self.url, self.prefix = url, prefix

    @contextlib.asynccontextmanager
    async def stores(self) -> AsyncIterator[Stores]:
        if self.url is None:
            yield DictCustomers(), DictOutbox()
            return
        client = aioredis.from_url(self.url)
        try:
            yield (RedisCustomers(client, prefix=self.prefix, ttl_seconds=3600),
                   RedisOutbox(client, prefix=self.prefix, ttl_seconds=3600))
        finally:
            await client.aclose()

    def run(self, scenario: Callable[[Any, Any], Awaitable[None]]) -> None:
        async def main() -> None:
            async with self.stores() as (customers, outbox):
                await scenario(customers, outbox)
        asyncio.run(main())


@pytest.fixture(params=["fake", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return Backend()
    prefix = f"{request.getfixturevalue('redis_prefix')}contract-{uuid.uuid4().hex[:8]}:"
    return Backend(request.getfixturevalue("redis_url"), prefix)


def note(notification_id: str = "n-1", cid: str = "C-1") -> Notification:
    return Notification(notification_id=notification_id, complaint_id=cid, kind=NotificationKind.acknowledgement,
                        transport="sms", address="+8613800138000", language="zh", subject="s", body="b")


META = {"correlationid": "corr-1", "causationid": "cause-1", "queued_at": "2026-11-23T02:00:00+00:00"}

# ---- Customers ------------------------------------------------------------------------


def test_a_saved_contact_is_read_back_and_an_unknown_one_is_none(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        # Given a saved contact, When it is saved again changed, Then the last one is read back
        first = CustomerRecord(complaint_id="C-1", contact=Contact(email="a@example.com"), correlationid="x")
        await customers.save(first)
        assert await customers.get("C-1") == first
        second = first.model_copy(update={"contact": Contact(phone="+8613800138000", language="en")})
        await customers.save(second)
        assert await customers.get("C-1") == second
        assert await customers.get("C-2") is None
    backend.run(scenario)


def test_revisits_are_remembered_per_complaint(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        # Given two revisits of one complaint (one remembered twice) and none of another
        await customers.remember_revisit("C-1", "r-1", "outbox")
        await customers.remember_revisit("C-1", "r-2", "sms-gateway")
        await customers.remember_revisit("C-1", "r-1", "outbox")
        # Then each complaint answers its own, by notification id
        assert await customers.revisits("C-1") == {"r-1": "outbox", "r-2": "sms-gateway"}
        assert await customers.revisits("C-2") == {}
    backend.run(scenario)


# ---- Outbox ---------------------------------------------------------------------------


def test_a_notification_is_queued_once_and_claimed_when_due(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        # Given a notification queued due at 10 (and queued again: no change)
        assert await outbox.enqueue("outbox", note(), due=10, meta=META) is True
        assert await outbox.enqueue("outbox", note(), due=0, meta={}) is False
        # When claimed before and at its due time, Then it comes only when due, as queued
        assert await outbox.claim("outbox", now=9, limit=10, lease=60) == []
        assert await outbox.claim("other", now=10, limit=10, lease=60) == []
        (item,) = await outbox.claim("outbox", now=10, limit=10, lease=60)
        assert item == (note(), "queued", 0, META)
        # and a claimed one is not claimed again until its lease runs out
        assert await outbox.claim("outbox", now=69, limit=10, lease=60) == []
        assert [q.note.notification_id for q in await outbox.claim("outbox", now=70, limit=10, lease=60)] \
            == ["n-1"]
        assert await outbox.depth("outbox") == 1 and await outbox.state("n-1") == "queued"
    backend.run(scenario)


def test_a_claim_takes_lapsed_leases_first_then_the_due_ones_up_to_its_limit(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        for nid, due in (("b", 1), ("a", 1), ("c", 0)):
            await outbox.enqueue("outbox", note(nid), due=due, meta={})
        assert [q.note.notification_id for q in await outbox.claim("outbox", now=1, limit=2, lease=5)] \
            == ["c", "a"]
        assert [q.note.notification_id for q in await outbox.claim("outbox", now=6, limit=3, lease=5)] \
            == ["a", "c", "b"]
    backend.run(scenario)


def test_a_sent_notification_is_settled_for_good(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        await outbox.enqueue("outbox", note(), due=0, meta={})
        await outbox.claim("outbox", now=0, limit=10, lease=60)
        assert await outbox.begin("outbox", "n-1", token="A", now=0, lease=60) == "go"
        assert await outbox.state("n-1") == "sending"
        assert await outbox.settle("outbox", "n-1", "sent") == 1
        # Then nothing more happens to it
        assert await outbox.settle("outbox", "n-1", "retry", due=5) == "sent"
        assert await outbox.begin("outbox", "n-1", token="B", now=1, lease=60) == "done"
        assert await outbox.cancel("outbox", "n-1") is False
        assert await outbox.claim("outbox", now=1000, limit=10, lease=60) == []
        assert await outbox.depth("outbox") == 0 and await outbox.state("n-1") == "sent"
        assert await outbox.settle("outbox", "unknown", "sent") == "gone"
    backend.run(scenario)


def test_a_retry_goes_back_to_the_queue_at_its_due_time_with_the_attempt_counted(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        await outbox.enqueue("outbox", note(), due=0, meta=META)
        await outbox.claim("outbox", now=0, limit=10, lease=60)
        await outbox.begin("outbox", "n-1", token="A", now=0, lease=60)
        assert await outbox.settle("outbox", "n-1", "retry", due=30) == 1
        assert await outbox.claim("outbox", now=29, limit=10, lease=60) == []
        (item,) = await outbox.claim("outbox", now=30, limit=10, lease=60)
        assert (item.state, item.attempts, item.meta) == ("queued", 1, META)
        # another instance waits for the lease of the last sender; that sender may go on
        assert await outbox.begin("outbox", "n-1", token="B", now=30, lease=60) == "busy"
        assert await outbox.begin("outbox", "n-1", token="A", now=30, lease=60) == "go"
        assert await outbox.settle("outbox", "n-1", "failed") == 2
        assert await outbox.state("n-1") == "failed"
    backend.run(scenario)


@pytest.mark.parametrize(("policy", "verdict", "state"), [("resend", "resend", "sending"),
                                                          ("hold", "doubt", "in_doubt")])
def test_a_send_whose_sender_died_is_resent_or_held(backend: Backend, policy: str, verdict: str,
                                                    state: str) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        # Given a sender that began a send and died (its lease runs till 5)
        await outbox.enqueue("outbox", note(), due=0, meta={})
        await outbox.claim("outbox", now=0, limit=10, lease=5)
        await outbox.begin("outbox", "n-1", token="A", now=0, lease=5, in_doubt=policy)
        assert await outbox.begin("outbox", "n-1", token="B", now=4, lease=5, in_doubt=policy) == "busy"
        # When another instance claims and begins it after the lease
        (item,) = await outbox.claim("outbox", now=5, limit=10, lease=5)
        assert item.state == "sending"
        assert await outbox.begin("outbox", "n-1", token="B", now=5, lease=5, in_doubt=policy) == verdict
        # Then it is resent, or held in doubt (which only a late 'sent' changes)
        assert await outbox.state("n-1") == state
        if policy == "hold":
            assert await outbox.settle("outbox", "n-1", "retry", due=9) == "in_doubt"
            assert await outbox.begin("outbox", "n-1", token="B", now=6, lease=5) == "done"
        assert await outbox.settle("outbox", "n-1", "sent") == 1
        assert await outbox.state("n-1") == "sent"
    backend.run(scenario)


def test_only_a_queued_notification_is_cancelled(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        await outbox.enqueue("outbox", note("r-1"), due=100, meta={})
        await outbox.enqueue("outbox", note("r-2"), due=0, meta={})
        await outbox.claim("outbox", now=0, limit=10, lease=5)
        await outbox.begin("outbox", "r-2", token="A", now=0, lease=5)
        assert await outbox.cancel("outbox", "r-1") is True
        assert await outbox.cancel("outbox", "r-1") is False
        assert await outbox.cancel("outbox", "r-2") is False  # being sent
        assert await outbox.cancel("outbox", "unknown") is False
        assert await outbox.state("r-1") == "cancelled" and await outbox.state("unknown") is None
        assert await outbox.claim("outbox", now=200, limit=10, lease=5) != []  # r-2's lapsed lease
        await outbox.release("outbox", "r-2")
        assert await outbox.claim("outbox", now=300, limit=10, lease=5) == []
    backend.run(scenario)


def test_the_rebuild_markers_and_the_rebuild_lock(backend: Backend) -> None:
    async def scenario(customers: Any, outbox: Any) -> None:
        # Given a store never marked whole, Then it is not whole until marked
        assert await outbox.whole() is False
        await outbox.mark_whole()
        assert await outbox.whole() is True
        # one instance holds the lock; only it renews or unlocks it
        assert await outbox.lock_rebuild("A", 60) is True
        assert await outbox.lock_rebuild("B", 60) is False
        assert await outbox.renew_rebuild("B", 60) is False
        assert await outbox.renew_rebuild("A", 60) is True
        await outbox.unlock_rebuild("B")
        assert await outbox.lock_rebuild("B", 60) is False
        await outbox.unlock_rebuild("A")
        assert await outbox.lock_rebuild("B", 60) is True
    backend.run(scenario)


# ---- customer messages per recipient and window ------------------------------------------


def test_a_recipient_gets_at_most_the_limit_per_window_and_a_retry_counts_once(backend: Backend) -> None:
    async def main() -> None:
        client = aioredis.from_url(backend.url) if backend.url else None
        limit = (RedisRecipientLimit(client, prefix=backend.prefix, limit=2, window=3600) if client
                 else DictRecipientLimit(limit=2, window=3600))
        who, other = logic.recipient_key("+8613800138000"), logic.recipient_key("+8613900139000")
        try:
            # Given two messages to one recipient in a window, Then a third is refused
            assert [await limit.admit(who, n, now=7200) for n in ("a", "b", "c")] == [True, True, False]
            # and another recipient is not held up, nor a message counted already (a retry)
            assert await limit.admit(other, "c", now=7200) is True
            assert await limit.admit(who, "a", now=10799) is True
            assert await limit.admit(who, "c", now=10799) is False
            # When the next window begins, Then the recipient gets messages again
            assert await limit.admit(who, "c", now=10800) is True
            if client is not None:  # the address is nowhere in Redis, only its hash
                keys = [text(k) async for k in client.scan_iter(match=f"{backend.prefix}*")]
                assert keys and all("13800138000" not in k for k in keys)
                assert all([await client.ttl(k) > 0 for k in keys])
        finally:
            if client is not None:
                await client.aclose()
    asyncio.run(main())


def test_the_recipient_key_is_a_hash_of_the_address_not_the_address() -> None:
    key = logic.recipient_key("Li.Lei@Example.com")
    assert key == logic.recipient_key(" li.lei@example.com") != logic.recipient_key("han.mei@example.com")
    assert "li.lei" not in key and len(key) == 32


# ---- the Lua against logic.step -------------------------------------------------------

Q = "outbox"
# Each scenario: (operation, what RedisOutbox answers). Given the ops in order, Then both the
# Lua and logic.step answer as listed and end in the same state after every operation.
SCENARIOS: dict[str, list[tuple[logic.Operation, logic.Answer]]] = {
    "sent once": [
        (Enqueue(Q, "n1", 10), True), (Enqueue(Q, "n1", 99), False), (Claim(Q, 5, 10, 60), ()),
        (Claim(Q, 10, 10, 60), ("n1",)), (Begin(Q, "n1", "A", 10, 60), "go"), (Settle(Q, "n1", "sent"), 1),
        (Settle(Q, "n1", "sent"), "sent"), (Begin(Q, "n1", "A", 11, 60), "done"), (Cancel(Q, "n1"), False),
        (Claim(Q, 100, 10, 60), ())],
    "retry, a stale owner's lease, then failed": [
        (Enqueue(Q, "n1", 0), True), (Claim(Q, 0, 10, 60), ("n1",)), (Begin(Q, "n1", "A", 0, 60), "go"),
        (Settle(Q, "n1", "retry", 30), 1), (Claim(Q, 29, 10, 60), ()), (Claim(Q, 30, 10, 60), ("n1",)),
        (Begin(Q, "n1", "B", 30, 60), "busy"), (Begin(Q, "n1", "A", 30, 60), "go"),
        (Settle(Q, "n1", "failed"), 2), (Settle(Q, "n1", "retry", 99), "failed")],
    "a dead sender's send is resent": [
        (Enqueue(Q, "n1", 0), True), (Claim(Q, 0, 10, 5), ("n1",)), (Begin(Q, "n1", "A", 0, 5), "go"),
        (Claim(Q, 4, 10, 5), ()), (Begin(Q, "n1", "B", 4, 5), "busy"), (Claim(Q, 5, 10, 5), ("n1",)),
        (Begin(Q, "n1", "B", 5, 5), "resend"), (Settle(Q, "n1", "sent"), 1)],
    "a dead sender's send is held, until its slow sender settles it sent": [
        (Enqueue(Q, "n1", 0), True), (Claim(Q, 0, 10, 5), ("n1",)), (Begin(Q, "n1", "A", 0, 5, "hold"), "go"),
        (Claim(Q, 5, 10, 5), ("n1",)), (Begin(Q, "n1", "B", 5, 5, "hold"), "doubt"),
        (Begin(Q, "n1", "B", 6, 5, "hold"), "done"), (Settle(Q, "n1", "retry", 9), "in_doubt"),
        (Cancel(Q, "n1"), False), (Settle(Q, "n1", "sent"), 1)],
    "a cancelled one stays cancelled": [
        (Enqueue(Q, "n1", 100), True), (Cancel(Q, "n1"), True), (Cancel(Q, "n1"), False),
        (Claim(Q, 200, 10, 60), ()), (Begin(Q, "n1", "A", 200, 60), "done"), (Settle(Q, "n1", "sent"), "cancelled")],
    "cancelled after its claim: the lease stays until released": [
        (Enqueue(Q, "n1", 0), True), (Claim(Q, 0, 10, 5), ("n1",)), (Cancel(Q, "n1"), True),
        (Claim(Q, 5, 10, 5), ("n1",)), (Release(Q, "n1"), None), (Claim(Q, 10, 10, 5), ())],
    "claims: lapsed leases first, then due ones, by time then id, up to the limit": [
        (Enqueue(Q, "b", 1), True), (Enqueue(Q, "a", 1), True), (Enqueue(Q, "c", 0), True),
        (Enqueue("sms", "d", 0), True), (Claim(Q, 1, 2, 5), ("c", "a")), (Claim(Q, 6, 2, 5), ("a", "c")),
        (Claim(Q, 6, 3, 5), ("b",)), (Claim("sms", 6, 3, 5), ("d",))],
    "unknown ids": [
        (Settle(Q, "x", "sent"), "gone"), (Begin(Q, "x", "A", 0, 5), "done"), (Cancel(Q, "x"), False),
        (Release(Q, "x"), None)],
    "settled in doubt, or begun twice by one owner": [
        (Enqueue(Q, "n1", 0), True), (Begin(Q, "n1", "A", 0, 5), "go"), (Begin(Q, "n1", "A", 1, 5), "go"),
        (Settle(Q, "n1", "in_doubt"), 1), (Begin(Q, "n1", "A", 2, 5), "done")],
}


def test_the_scenarios_answer_as_stated() -> None:
    # Given each scenario, When logic.step runs it, Then every answer is the stated one
    for name, ops in SCENARIOS.items():
        book = Book()
        for op, expected in ops:
            book, answer = logic.step(book, op)
            assert answer == expected, (name, op)


async def _through_redis(outbox: RedisOutbox, op: logic.Operation) -> logic.Answer:
    match op:
        case Enqueue(queue, nid, due):
            return await outbox.enqueue(queue, note(nid), due=due, meta={})
        case Claim(queue, now, limit, lease):
            return tuple(q.note.notification_id for q in await outbox.claim(queue, now=now, limit=limit,
                                                                              lease=lease))
        case Begin(queue, nid, token, now, lease, policy):
            return await outbox.begin(queue, nid, token=token, now=now, lease=lease, in_doubt=policy)
        case Settle(queue, nid, outcome, due):
            return await outbox.settle(queue, nid, outcome, due=due)
        case Release(queue, nid):
            return await outbox.release(queue, nid)
        case Cancel(queue, nid):
            return await outbox.cancel(queue, nid)
    raise AssertionError(op)


async def _stored(client: aioredis.Redis, prefix: str, ids: set[str], queues: set[str]) -> Book:
    """What Redis holds under ``prefix``, read as a Book."""
    entries = {}
    for nid in sorted(ids):
        raw = {text(k): text(v) for k, v in (await client.hgetall(f"{prefix}notifier:msg:{nid}")).items()}
        if raw:
            entries[nid] = Entry(Delivery(raw["state"]), int(raw["attempts"]), raw.get("owner"),
                                 float(raw.get("owner_until", 0)))
    due, leased = {}, {}
    for q in sorted(queues):
        for key, into in ((f"{prefix}notifier:queue:{q}", due), (f"{prefix}notifier:inflight:{q}", leased)):
            for member, score in await client.zrange(key, 0, -1, withscores=True):
                into[q, text(member)] = score
    return Book(entries, due, leased)


def _compare(redis_url: str, prefix: str, ops: list[logic.Operation]) -> list[logic.Answer]:
    """Run ``ops`` through RedisOutbox and logic.step; assert equal answers and states; the answers."""
    ids = {op.notification_id for op in ops if not isinstance(op, Claim)}
    queues = {op.queue for op in ops}

    async def main() -> list[logic.Answer]:
        client = aioredis.from_url(redis_url)
        outbox, book, answers = RedisOutbox(client, prefix=prefix, ttl_seconds=3600), Book(), []
        try:
            for i, op in enumerate(ops):
                book, modelled = logic.step(book, op)
                answer = await _through_redis(outbox, op)
                assert answer == modelled, (i, op)
                assert await _stored(client, prefix, ids, queues) == book, (i, op)
                answers.append(answer)
        finally:
            await client.aclose()
        return answers
    return asyncio.run(main())


@pytest.mark.integration
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_lua_does_what_logic_step_states(redis_url: str, redis_prefix: str, name: str) -> None:
    # Given a scenario, When it runs through RedisOutbox and logic.step, Then they agree throughout
    ops = SCENARIOS[name]
    answers = _compare(redis_url, f"{redis_prefix}lua-{uuid.uuid4().hex[:8]}:", [op for op, _ in ops])
    assert answers == [expected for _, expected in ops]


@st.composite
def _sequences(draw: st.DrawFn) -> list[logic.Operation]:
    """Two notifications queued, then any operations in time order (the clock never goes back),
    on two queues by two senders with short leases, so that leases lapse and senders collide."""
    ops: list[logic.Operation] = [Enqueue("q1", nid, float(draw(st.integers(0, 3)))) for nid in ("n1", "n2")]
    now = 0.0
    for _ in range(draw(st.integers(4, 20))):
        now += draw(st.sampled_from([0, 0, 1, 1, 2, 3]))
        q, nid = draw(st.sampled_from(["q1", "q1", "q1", "q2"])), draw(st.sampled_from(["n1", "n2"]))
        lease = draw(st.sampled_from([2.0, 4.0]))
        match draw(st.sampled_from(["claim", "begin", "begin", "settle", "settle", "release", "cancel",
                                    "enqueue"])):
            case "claim":
                ops.append(Claim(q, now, draw(st.integers(1, 2)), lease))
            case "begin":
                ops.append(Begin(q, nid, draw(st.sampled_from("AB")), now, lease,
                                 draw(st.sampled_from(["resend", "hold"]))))
            case "settle":
                ops.append(Settle(q, nid, draw(st.sampled_from(["sent", "failed", "retry", "in_doubt"])),
                                  now + draw(st.integers(0, 4))))
            case "release":
                ops.append(Release(q, nid))
            case "cancel":
                ops.append(Cancel(q, nid))
            case _:
                ops.append(Enqueue(q, draw(st.sampled_from(["n1", "n2", "n3"])), now))
    return ops


@pytest.mark.integration
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_sequences())
def test_any_sequence_of_operations_agrees_with_logic_step(redis_url: str, redis_prefix: str,
                                                          ops: list[logic.Operation]) -> None:
    # Given any sequence (two queues, two senders), Then the Lua and logic.step agree throughout
    _compare(redis_url, f"{redis_prefix}lua-{uuid.uuid4().hex[:8]}:", ops)
