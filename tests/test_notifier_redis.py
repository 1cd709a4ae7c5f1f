"""The notifier against a real Redis: queues per transport, once-only sending, retries,
quiet hours, the scheduled revisit, survey answers, internal notices.

Time is a fixed clock moved by the test; transports are counting fakes (the real SMTP and
HTTP transports are tested against real servers in test_notifier_transports).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    ComplaintRouted,
    Contact,
    DecisionKind,
    Level,
    NotificationKind,
    RoutingDecision,
    Severity,
)
from services.common.errors import Retry
from services.common.policy import load_policy
from services.notifier.adapters import RedisCustomers, RedisOutbox, RedisRecipientLimit, transports_of
from services.notifier.dispatch import Dispatcher
from services.notifier.handlers import Notifier
from services.notifier.messages import Notification
from services.notifier.metrics import NotifierMetrics
from services.notifier.opening import opening
from services.notifier.ports import concurrency_of, idempotent
from services.notifier.settings import NotifierSettings
from services.notifier.transports import InDoubtDelivery, PermanentDelivery, TransientDelivery
from tests.fakes import CountingTransport, FixedClock, RecordingPublisher
from tests.harness import OwnRedis, wait_until

pytestmark = pytest.mark.integration
POLICY = load_policy()
T0 = datetime(2026, 11, 23, 2, tzinfo=UTC)  # 10:00 in Shanghai: no quiet hours
H = timedelta(hours=1)


class Instance(NamedTuple):
    """One notifier process as build() wires it: the input handlers and the dispatcher."""

    handlers: Notifier
    dispatcher: Dispatcher


class World:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url, self.prefix = redis_url, prefix
        self.clock = FixedClock(T0)
        self.publisher = RecordingPublisher()
        self.clients: list[aioredis.Redis] = []
        self.inputs: list[Envelope] = []  # what the input topics hold (tests that rebuild)

    def notifier(self, transports: dict[str, Any], *, limited: bool = False, **settings: Any) -> Instance:
        """One instance; ``limited``: with the per-recipient limit of customer messages."""
        client = aioredis.from_url(self.redis_url)
        self.clients.append(client)
        world = self

        def read(topic: str) -> list[dict[str, Any]]:
            kinds = {"complaints.notifications": "notification.recorded",
                     "complaints.registered": "complaint.registered", "complaints.lifecycle": "case.updated",
                     "complaints.routed": "complaint.routed", "complaints.sla": "sla.alert"}
            return [e.model_dump(mode="json") for e in world.inputs + [ev for _, ev in world.publisher.published]
                    if e.type == kinds[topic]]

        config = NotifierSettings(**{"NOTIFIER_RETRY_BASE": 60, "NOTIFIER_RETRY_CAP": 600, **settings})
        outbox = RedisOutbox(client, prefix=self.prefix, ttl_seconds=3600)
        metrics = NotifierMetrics.create(CollectorRegistry())
        return Instance(
            Notifier(settings=config, policy=POLICY, publisher=self.publisher,
                     customers=RedisCustomers(client, prefix=self.prefix, ttl_seconds=3600), outbox=outbox,
                     queues=list(transports), clock=self.clock, metrics=metrics, read=read),
            Dispatcher(settings=config, publisher=self.publisher, outbox=outbox, transports=transports,
                       clock=self.clock, metrics=metrics,
                       limit=RedisRecipientLimit(client, prefix=self.prefix, limit=config.recipient_limit,
                                                 window=config.recipient_window) if limited else None))

    def records(self, **match: Any) -> list[Any]:
        return [e.data for e in self.publisher.of_type("notification.recorded")
                if all(getattr(e.data, k) == v for k, v in match.items())]

    async def close(self) -> None:
        for c in self.clients:
            await c.aclose()


def run(redis_url: str, redis_prefix: str, scenario: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        world = World(redis_url, f"{redis_prefix}{uuid.uuid4().hex[:8]}:")
        try:
            await scenario(world)
        finally:
            await world.close()
    asyncio.run(main())


def registered(cid: str = "C-1", contact: Contact | None = None) -> ComplaintRegistered:
    c = Complaint(complaint_id=cid, channel=Channel.sms, received_at=T0, source_message_id=f"m-{cid}",
                  customer=contact or Contact(phone="+8613800138000", language="zh"), customer_key="k",
                  first_contact="sms-desk", subject="s", description="d")
    return ComplaintRegistered.new(c, source="intake", time=T0, subject=cid)


def case(action: CaseAction, at: datetime, cid: str = "C-1", cause: Envelope | None = None,
         **fields: Any) -> CaseEvent:
    return CaseEvent.new(CaseUpdate(complaint_id=cid, action=action, actor="agent-1", **fields),
                         source="intake", time=at, subject=cid, cause=cause)


async def registered_and_sent(world: World, notifier: Instance) -> None:
    await notifier.handlers.on_registered(None, registered().to_bytes())
    await notifier.dispatcher.dispatch("outbox")


def test_a_redelivered_registration_is_queued_and_sent_once(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        sms = CountingTransport("sms-gateway")
        a = world.notifier({"outbox": CountingTransport("outbox"), "sms-gateway": sms})
        raw = registered().to_bytes()
        await a.handlers.on_registered(None, raw)
        await a.handlers.on_registered(None, raw)
        assert [r.status for r in world.records()] == ["queued"]
        await a.dispatcher.dispatch("sms-gateway")
        await a.dispatcher.dispatch("sms-gateway")
        assert len(sms.sent) == 1 and sms.sent[0].transport == "sms"
        sent = world.records(status="sent")
        assert len(sent) == 1 and sent[0].recipient == "+86*******8000" and sent[0].attempt == 1
        assert "13800138000" not in world.publisher.published[0][1].to_bytes().decode()
    run(redis_url, redis_prefix, scenario)


def test_two_dispatchers_never_send_one_notification_twice(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        outbox = CountingTransport("outbox", delay=0.01)
        a, b = world.notifier({"outbox": outbox}), world.notifier({"outbox": outbox})
        for n in range(60):
            await a.handlers.on_registered(None, registered(f"C-{n}").to_bytes())
        for _ in range(100):  # until both find nothing left
            if not sum(await asyncio.gather(a.dispatcher.dispatch("outbox"), b.dispatcher.dispatch("outbox"))):
                break
        counts = Counter(n.notification_id for n in outbox.sent)
        assert len(counts) == 60 and set(counts.values()) == {1}
    run(redis_url, redis_prefix, scenario)


def test_transient_failures_retry_with_backoff_and_permanent_ones_are_dead_lettered(
        redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        sms = CountingTransport("sms-gateway", failures=[TransientDelivery("HTTP 503"),
                                                          TransientDelivery("HTTP 503")])
        notifier = world.notifier({"outbox": CountingTransport("outbox"), "sms-gateway": sms})
        await notifier.handlers.on_registered(None, registered().to_bytes())
        await notifier.dispatcher.dispatch("sms-gateway")
        first = world.records(status="retrying")[0]
        assert first.attempt == 1 and first.due_at is not None
        assert T0 + timedelta(seconds=30) <= first.due_at <= T0 + timedelta(seconds=60)  # jittered base
        await notifier.dispatcher.dispatch("sms-gateway")  # not due yet
        assert len(world.records(status="retrying")) == 1
        world.clock.now = first.due_at
        await notifier.dispatcher.dispatch("sms-gateway")
        second = world.records(status="retrying")[1]
        assert T0 + timedelta(seconds=90) <= second.due_at <= first.due_at + timedelta(seconds=120)
        world.clock.now = second.due_at
        await notifier.dispatcher.dispatch("sms-gateway")
        assert [r.attempt for r in world.records(status="sent")] == [3] and len(sms.sent) == 1
        # a permanent failure: recorded failed and dead-lettered with the reason, never retried
        sms.failures.append(PermanentDelivery("sms-gateway: HTTP 400"))
        await notifier.handlers.on_registered(None, registered("C-2").to_bytes())
        await notifier.dispatcher.dispatch("sms-gateway")
        failed = world.records(status="failed")
        assert len(failed) == 1 and failed[0].detail == "sms-gateway: HTTP 400"
        (letter,) = world.publisher.of_type("deadletter.recorded")
        assert letter.data.reason == "sms-gateway: HTTP 400" and letter.data.service == "notifier"
        assert "13800138000" not in letter.to_bytes().decode()
    run(redis_url, redis_prefix, scenario)


def test_customer_messages_over_the_recipients_limit_are_not_sent(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        # Given a limit of two customer messages per recipient a day, and the web form used to
        # file three complaints with one phone number
        sms = CountingTransport("sms-gateway", failures=[TransientDelivery("HTTP 503")])
        a = world.notifier({"outbox": CountingTransport("outbox"), "sms-gateway": sms}, limited=True,
                           NOTIFIER_RECIPIENT_LIMIT=2, NOTIFIER_RECIPIENT_WINDOW=86400)
        for n in range(3):
            await a.handlers.on_registered(None, registered(f"C-{n}").to_bytes())
        # When the queue is drained (the first send failing once and retried later)
        for _ in range(3):
            await a.dispatcher.dispatch("sms-gateway")
            world.clock.now += timedelta(hours=1)
        # Then two acknowledgements go, each once, the retry counted once; the third is not sent
        # (the three are sent concurrently: which one is refused is not fixed)
        went = [n.complaint_id for n in sms.sent]
        (limited,) = world.records(status="rate_limited")
        assert len(set(went)) == len(went) == 2 and {*went, limited.complaint_id} == {"C-0", "C-1", "C-2"}
        assert "NOTIFIER_RECIPIENT_LIMIT" in (limited.detail or "")
        assert limited.recipient == "+86*******8000"
        assert a.dispatcher.metrics.rate_limited.labels("acknowledgement", "sms-gateway")._value.get() == 1
        assert world.publisher.of_type("deadletter.recorded") == []
        # and it is settled for good, and another recipient is not held up
        await a.dispatcher.dispatch("sms-gateway")
        await a.handlers.on_registered(None, registered("D-1", Contact(phone="+8613900139000")).to_bytes())
        await a.dispatcher.dispatch("sms-gateway")
        assert len(sms.sent) == 3 and len(world.records(status="rate_limited")) == 1
        # When the next day begins, Then the first recipient gets messages again
        world.clock.now += timedelta(days=1)
        await a.handlers.on_registered(None, registered("C-3").to_bytes())
        await a.dispatcher.dispatch("sms-gateway")
        assert sms.sent[-1].complaint_id == "C-3"
        # and Redis holds the recipients' hashes, never their numbers
        client = aioredis.from_url(world.redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{world.prefix}notifier:rate:*")]
            assert keys and all(b"13800138000" not in k and b"13900139000" not in k for k in keys)
        finally:
            await client.aclose()
    run(redis_url, redis_prefix, scenario)


def test_a_failing_transport_does_not_hold_up_another(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        mail = CountingTransport("smtp")
        stuck = asyncio.Event()  # the SMS gateway answers only when the test says so
        slow = CountingTransport("sms-gateway", gate=stuck, failures=[TransientDelivery("timeout")] * 50)
        notifier = world.notifier({"outbox": CountingTransport("outbox"), "smtp": mail, "sms-gateway": slow})
        for n in range(5):
            await notifier.handlers.on_registered(None, registered(f"S-{n}").to_bytes())
            await notifier.handlers.on_registered(None, registered(f"E-{n}", Contact(email=f"e{n}@example.com"))
                                         .to_bytes())
        # each transport drains its own queue; the mail one finishes while the SMS one struggles
        sms = asyncio.ensure_future(notifier.dispatcher.dispatch("sms-gateway"))
        await notifier.dispatcher.dispatch("smtp")
        assert len(mail.sent) == 5 and not sms.done()
        stuck.set()
        await sms
        assert slow.sent == []
    run(redis_url, redis_prefix, scenario)


def test_quiet_hours_defer_customer_sms_to_the_morning(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        outbox = CountingTransport("outbox")
        notifier = world.notifier({"outbox": outbox})
        world.clock.now = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
        await notifier.handlers.on_registered(None, registered().to_bytes())
        (deferred,) = world.records(status="deferred")
        assert deferred.due_at == datetime(2026, 11, 24, 0, tzinfo=UTC)  # 08:00 in Shanghai
        await notifier.dispatcher.dispatch("outbox")
        assert outbox.sent == []
        world.clock.now = datetime(2026, 11, 24, 0, 0, 1, tzinfo=UTC)
        await notifier.dispatcher.dispatch("outbox")
        assert len(outbox.sent) == 1
        # e-mail is not held back
        world.clock.now = datetime(2026, 11, 24, 15, 30, tzinfo=UTC)
        await notifier.handlers.on_registered(None, registered("C-2", Contact(email="a@example.com")).to_bytes())
        await notifier.dispatcher.dispatch("outbox")
        assert len(outbox.sent) == 2
    run(redis_url, redis_prefix, scenario)


def test_the_revisit_goes_out_after_its_delay_unless_the_case_reopens(redis_url: str,
                                                                      redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        outbox = CountingTransport("outbox")
        notifier = world.notifier({"outbox": outbox})
        await registered_and_sent(world, notifier)
        resolved = case(CaseAction.resolved, T0 + H, result="已退款")
        await notifier.handlers.on_case_event(None, resolved.to_bytes())
        world.clock.now = T0 + H
        await notifier.dispatcher.dispatch("outbox")
        assert [n.kind for n in outbox.sent] == [NotificationKind.acknowledgement, NotificationKind.result]
        assert "已退款" in outbox.sent[1].body
        (revisit,) = world.records(kind=NotificationKind.revisit, status="deferred")
        assert revisit.due_at == T0 + H + POLICY.notifier.revisit_after
        world.clock.now = T0 + H + POLICY.notifier.revisit_after
        await notifier.dispatcher.dispatch("outbox")
        assert outbox.sent[-1].kind is NotificationKind.revisit
        # a second resolution after a reopen: its revisit is withdrawn by the next reopen
        await notifier.handlers.on_case_event(None, case(CaseAction.reopened, world.clock.now).to_bytes())
        resolved2 = case(CaseAction.resolved, world.clock.now + H, result="再次处理")
        await notifier.handlers.on_case_event(None, resolved2.to_bytes())
        await notifier.handlers.on_case_event(None, case(CaseAction.reopened, world.clock.now + 2 * H).to_bytes())
        assert len(world.records(kind=NotificationKind.revisit, status="cancelled")) == 1
        world.clock.now += 100 * H
        await notifier.dispatcher.dispatch("outbox")
        kinds = Counter(n.kind for n in outbox.sent)
        assert kinds[NotificationKind.revisit] == 1 and kinds[NotificationKind.reopened] == 2
    run(redis_url, redis_prefix, scenario)


def test_a_customer_notice_before_its_registration_waits(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        notifier = world.notifier({"outbox": CountingTransport("outbox")})
        with pytest.raises(Retry):
            await notifier.handlers.on_case_event(None, case(CaseAction.resolved, T0, "C-9", result="ok").to_bytes())
    run(redis_url, redis_prefix, scenario)


@pytest.mark.parametrize(("score", "reopens"), [(1, True), (2, True), (3, False), (5, False)])
def test_a_dissatisfied_answer_reopens_the_case_once(redis_url: str, redis_prefix: str, score: int,
                                                     reopens: bool) -> None:
    async def scenario(world: World) -> None:
        notifier = world.notifier({"outbox": CountingTransport("outbox")})
        answer = case(CaseAction.satisfaction, T0, score=score)
        await notifier.handlers.on_case_event(None, answer.to_bytes())
        await notifier.handlers.on_case_event(None, answer.to_bytes())
        reopened = {e.id: e for e in world.publisher.of_type("case.updated")}
        assert len(reopened) == (1 if reopens else 0)
        for e in reopened.values():
            assert e.data.action is CaseAction.reopened and e.causationid == answer.id
    run(redis_url, redis_prefix, scenario)


def routed(decision: DecisionKind = DecisionKind.routed, severity: Severity = Severity.general,
           level: Level = Level.L1, notify: list[str] | None = None) -> ComplaintRouted:
    d = RoutingDecision(complaint_id="C-1", decision=decision, revision=1, received_at=T0, code="PQ-01",
                        code_name_en="Defective or broken product", severity=severity, department="quality",
                        level=level, handler="quality-l1-01", first_contact_owner="sms-desk",
                        notify=notify or [], reasons=["why"])
    return ComplaintRouted.new(d, source="router", time=T0, subject="C-1")


@pytest.mark.parametrize(("event", "kind", "roles"), [
    (routed(), NotificationKind.assignment, ["handler", "first_contact_owner"]),
    (routed(severity=Severity.major, level=Level.L3, notify=["executives"]), NotificationKind.assignment,
     ["handler", "first_contact_owner", "executives"]),
    (routed(DecisionKind.escalated, level=Level.L2, notify=["department_head"]), NotificationKind.escalation,
     ["department_head", "handler"]),
])
def test_internal_notices_go_to_each_role_named(redis_url: str, redis_prefix: str, event: ComplaintRouted,
                                                kind: NotificationKind, roles: list[str]) -> None:
    async def scenario(world: World) -> None:
        executives = CountingTransport("chat:executives")
        notifier = world.notifier({"outbox": CountingTransport("outbox"), "chat:executives": executives})
        await notifier.handlers.on_routed(None, event.to_bytes())
        await notifier.handlers.on_routed(None, event.to_bytes())
        queued = world.records(status="queued")
        assert [(r.role, r.kind) for r in queued] == [(role, kind) for role in roles]
        assert all(r.transport == ("chat:executives:chat" if r.role == "executives" else "outbox:chat")
                   for r in queued)
        await notifier.dispatcher.dispatch("chat:executives")
        assert len(executives.sent) == ("executives" in roles)
        if executives.sent:
            assert "C-1" in executives.sent[0].body and "quality-l1-01" in executives.sent[0].body
    run(redis_url, redis_prefix, scenario)


def test_a_batch_that_outlives_its_claim_is_not_sent_twice(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        # Given a slow transport, one send at a time, and claims that lapse after a second
        outbox = CountingTransport("outbox", delay=0.3)
        settings = {"NOTIFIER_SEND_LEASE": 1, "NOTIFIER_TRANSPORT_CONCURRENCY": 1}
        a, b = world.notifier({"outbox": outbox}, **settings), world.notifier({"outbox": outbox}, **settings)
        for n in range(6):
            await a.handlers.on_registered(None, registered(f"C-{n}").to_bytes())

        async def sent(n: int) -> None:
            await wait_until(lambda: len(outbox.sent) >= n, timeout=10, what=f"{n} sent")

        async def later() -> None:  # b takes over what a's lapsed claim still holds
            await sent(1)
            world.clock.now = T0 + timedelta(seconds=0.9)  # a's next send is leased till 1.9 s
            await sent(2)
            world.clock.now = T0 + timedelta(seconds=1.5)  # the claim (till 1 s) has lapsed
            await b.dispatcher.dispatch("outbox")

        # When a works through its batch while b reclaims the lapsed part of it
        await asyncio.gather(a.dispatcher.dispatch("outbox"), later())
        await a.dispatcher.dispatch("outbox")
        await b.dispatcher.dispatch("outbox")
        # Then each acknowledgement was sent exactly once
        counts = Counter(n.notification_id for n in outbox.sent)
        assert len(counts) == 6 and set(counts.values()) == {1}
    run(redis_url, redis_prefix, scenario)


class SlowAcknowledgements(RecordingPublisher):
    """A broker slow to acknowledge the records of sends (``sent``, ``outboxed``) until opened."""

    def __init__(self) -> None:
        super().__init__()
        self.open = asyncio.Event()
        self.waiting = 0

    async def publish(self, topic: Any, event: Envelope) -> None:
        if event.type == "notification.recorded" and event.data.status in ("sent", "outboxed"):
            self.waiting += 1
            await self.open.wait()
        await super().publish(topic, event)


def test_a_slow_record_of_a_send_holds_no_send_slot(redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        # Given one send at a time, and a broker slow to acknowledge what was sent
        world.publisher = slow = SlowAcknowledgements()
        outbox = CountingTransport("outbox")
        a = world.notifier({"outbox": outbox}, NOTIFIER_TRANSPORT_CONCURRENCY=1)
        for n in range(3):
            await a.handlers.on_registered(None, registered(f"C-{n}").to_bytes())
        # When the queue is dispatched
        dispatching = asyncio.create_task(a.dispatcher.dispatch("outbox"))
        # Then the next send begins once the outbox has the last one's answer, not once the
        # broker has its record: all three go while the records wait
        await wait_until(lambda: len(outbox.sent) == 3 and slow.waiting == 3, timeout=10,
                         what="three sends while their records wait")
        assert not world.records(status="outboxed") and not dispatching.done()
        slow.open.set()
        await asyncio.wait_for(dispatching, 10)
        assert sorted(r.complaint_id for r in world.records(status="outboxed")) == ["C-0", "C-1", "C-2"]
    run(redis_url, redis_prefix, scenario)


class Overlapping:
    """A transport that counts how many sends are in it at once, each waiting until opened."""

    def __init__(self, name: str, *, concurrency: int | None = None) -> None:
        self.name, self.open, self.concurrency = name, asyncio.Event(), concurrency
        self.inside = self.most = 0
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.inside += 1
        self.most = max(self.most, self.inside)
        try:
            await self.open.wait()
            self.sent.append(notification)
        finally:
            self.inside -= 1


def test_a_transport_takes_its_declared_concurrency_others_the_common_one(
        redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        # Given one send at a time per transport (NOTIFIER_TRANSPORT_CONCURRENCY=1)
        async def most_at_once(transport: Overlapping, first: int) -> int:
            a = world.notifier({"outbox": transport}, NOTIFIER_TRANSPORT_CONCURRENCY=1)
            for n in range(first, first + 5):
                await a.handlers.on_registered(None, registered(f"C-{n}").to_bytes())
            dispatching = asyncio.create_task(a.dispatcher.dispatch("outbox"))
            await wait_until(lambda: transport.inside == (transport.concurrency or 1), timeout=10,
                             what="the sends it takes at once")
            transport.open.set()
            await asyncio.wait_for(dispatching, 10)
            assert len(transport.sent) == 5
            return transport.most

        # When a transport that declares three is dispatched, Then three sends are in it at once
        assert await most_at_once(Overlapping("outbox", concurrency=3), 0) == 3
        # and one that declares none takes the common one
        assert await most_at_once(Overlapping("outbox"), 5) == 1

    run(redis_url, redis_prefix, scenario)


def test_the_file_outbox_declares_its_concurrency_and_a_repeat_that_reaches_nobody(tmp_path: Path) -> None:
    # Given the settings of the file outbox (a file per id) and a server's common limit
    settings = NotifierSettings(**{
        "NOTIFIER_OUTBOX_DIR": str(tmp_path), "NOTIFIER_OUTBOX_CONCURRENCY": 40,
        "NOTIFIER_TRANSPORT_CONCURRENCY": 5,
        "NOTIFIER_SMS_GATEWAY": {"url": "http://127.0.0.1:9/sms"}})
    # When the transports are made
    transports = transports_of(settings)
    # Then the outbox takes its own number of sends, the gateway the common one
    assert concurrency_of(transports["outbox"], settings.transport_concurrency) == 40
    assert concurrency_of(transports["sms-gateway"], settings.transport_concurrency) == 5
    # and only the outbox and the call-back queue (which sends nothing) are always resent in doubt
    assert {q for q, t in transports.items() if idempotent(t)} == {"outbox", "callback"}
    # and so they are when the service wraps them to open sealed addresses
    opened = opening(transports, keys=None)  # type: ignore[arg-type]
    assert {q for q, t in opened.items() if idempotent(t)} == {"outbox", "callback"}
    assert [concurrency_of(opened[q], 5) for q in ("outbox", "sms-gateway")] == [40, 5]


class TakesItAndHangs:
    """A transport that accepts the message, then never answers: its sender is killed there."""

    name = "outbox"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)
        await asyncio.Event().wait()


@pytest.mark.parametrize(("policy", "idempotent"), [("resend", False), ("hold", False), ("hold", True)])
def test_a_send_whose_sender_died_is_resent_or_held_by_policy(redis_url: str, redis_prefix: str,
                                                              policy: str, idempotent: bool) -> None:
    async def scenario(world: World) -> None:
        # Given a sender that dies after the transport took the message, before it could settle
        # (idempotent: a transport whose repeat under the same id reaches nobody twice, as the
        # file outbox's file named by the id: resent whatever the policy)
        hangs, outbox = TakesItAndHangs(), CountingTransport("outbox")
        outbox.idempotent = idempotent  # type: ignore[attr-defined]
        settings = {"NOTIFIER_SEND_LEASE": 5, "NOTIFIER_IN_DOUBT": policy}
        a, b = world.notifier({"outbox": hangs}, **settings), world.notifier({"outbox": outbox}, **settings)
        await a.handlers.on_registered(None, registered().to_bytes())
        dying = asyncio.create_task(a.dispatcher.dispatch("outbox"))
        await wait_until(lambda: len(hangs.sent) == 1, timeout=10, what="the transport took it")
        dying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await dying
        # When another instance finds it after the dead sender's lease
        await b.dispatcher.dispatch("outbox")
        assert outbox.sent == [], "taken over before the lease ran out"
        world.clock.now = T0 + timedelta(seconds=6)
        await b.dispatcher.dispatch("outbox")
        await b.dispatcher.dispatch("outbox")
        # Then it is resent once under the same id, or held in doubt and dead-lettered, never both
        letters = world.publisher.of_type("deadletter.recorded")
        if policy == "resend" or idempotent:
            assert [n.notification_id for n in outbox.sent] == [hangs.sent[0].notification_id]
            assert [r.status for r in world.records()] == ["queued", "outboxed"] and letters == []
        else:
            assert outbox.sent == []
            assert [r.status for r in world.records()] == ["queued", "in_doubt"]
            assert len(letters) == 1 and "in doubt" in letters[0].data.reason
            assert letters[0].data.error_type == "InDoubtDelivery"
    run(redis_url, redis_prefix, scenario)


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_send_left_unanswered_after_it_went_is_resent_or_held_by_policy(redis_url: str, redis_prefix: str,
                                                                         policy: str) -> None:
    async def scenario(world: World) -> None:
        # Given a gateway that took the first request and never answered it (a read timeout)
        sms = CountingTransport("sms-gateway", failures=[InDoubtDelivery("sms-gateway: TimeoutError after "
                                                                         "the request was sent")])
        a = world.notifier({"outbox": CountingTransport("outbox"), "sms-gateway": sms},
                           NOTIFIER_IN_DOUBT=policy)
        await a.handlers.on_registered(None, registered().to_bytes())
        # When it is dispatched, and again whenever it would be due
        await a.dispatcher.dispatch("sms-gateway")
        world.clock.now = T0 + timedelta(hours=1)
        await a.dispatcher.dispatch("sms-gateway")
        await a.dispatcher.dispatch("sms-gateway")
        # Then it is retried under the same id, or held in doubt and dead-lettered: never both
        statuses = [r.status for r in world.records()]
        letters = world.publisher.of_type("deadletter.recorded")
        held = a.dispatcher.metrics.in_doubt.labels("acknowledgement", "sms-gateway", "held")._value.get()
        resent = a.dispatcher.metrics.in_doubt.labels("acknowledgement", "sms-gateway", "resent")._value.get()
        if policy == "resend":
            assert statuses == ["queued", "retrying", "sent"] and letters == [] and len(sms.sent) == 1
            assert (held, resent) == (0, 1)
        else:
            assert statuses == ["queued", "in_doubt"] and sms.sent == []
            assert await a.dispatcher.outbox.state(world.records()[0].notification_id) == "in_doubt"  # type: ignore[attr-defined]
            (letter,) = letters
            assert letter.data.error_type == "InDoubtDelivery" and "TimeoutError" in letter.data.reason
            assert "13800138000" not in letter.to_bytes().decode()
            assert (held, resent) == (1, 0)
    run(redis_url, redis_prefix, scenario)


def test_after_redis_loses_the_queues_they_are_rebuilt_and_nothing_goes_twice(
        redis_url: str, redis_prefix: str) -> None:
    async def scenario(world: World) -> None:
        outbox = CountingTransport("outbox")
        notifier = world.notifier({"outbox": outbox})
        await notifier.handlers.check_store()  # first start: an empty store is rebuilt (nothing) and marked
        reg, resolved = registered(), case(CaseAction.resolved, T0 + H, result="已退款")
        world.inputs += [reg, resolved]
        await notifier.handlers.on_registered(None, reg.to_bytes())
        await notifier.handlers.on_case_event(None, resolved.to_bytes())
        world.clock.now = T0 + H
        await notifier.dispatcher.dispatch("outbox")
        assert {n.kind for n in outbox.sent} == {NotificationKind.acknowledgement, NotificationKind.result}
        # When Redis loses every key of the notifier (the revisit was still scheduled)
        client = aioredis.from_url(world.redis_url)
        async for key in client.scan_iter(match=f"{world.prefix}notifier:*"):
            await client.delete(key)
        await client.aclose()
        # Then the next store check rebuilds from the topics: the revisit keeps its time,
        # what was sent is not sent again
        await notifier.handlers.check_store()
        assert notifier.handlers.metrics.rebuilds._value.get() == 2  # type: ignore[attr-defined]  # first start + this
        await notifier.dispatcher.dispatch("outbox")
        assert len(outbox.sent) == 2
        world.clock.now = T0 + H + POLICY.notifier.revisit_after
        await notifier.dispatcher.dispatch("outbox")
        assert [n.kind for n in outbox.sent][2:] == [NotificationKind.revisit]
        assert set(Counter(n.notification_id for n in outbox.sent).values()) == {1}
    run(redis_url, redis_prefix, scenario)


class RedisStopsAfterTheFirstSend:
    """A gateway that takes each message; after the first, the test's Redis stops before the
    dispatcher can settle that send."""

    name = "sms-gateway"

    def __init__(self, store: OwnRedis) -> None:
        self.store, self.sent = store, list[Notification]()

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)
        if len(self.sent) == 1:
            await asyncio.to_thread(self.store.stop)


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_send_settled_after_a_redis_outage_is_not_sent_again(tmp_path: Path, policy: str) -> None:
    store = OwnRedis(tmp_path / "redis")
    store.start()

    async def scenario(world: World) -> None:
        # Given an acknowledgement the gateway took, and Redis stopped before the send was settled
        sms = RedisStopsAfterTheFirstSend(store)
        a = world.notifier({"outbox": CountingTransport("outbox"), "sms-gateway": sms},
                           NOTIFIER_SEND_LEASE=5, NOTIFIER_IN_DOUBT=policy)
        await a.handlers.on_registered(None, registered().to_bytes())
        with pytest.raises(aioredis.ConnectionError):
            await a.dispatcher.dispatch("sms-gateway")
        # When Redis comes back (with its keys) after the send's lease ran out
        await asyncio.to_thread(store.start)
        world.clock.now = T0 + timedelta(seconds=6)
        await a.dispatcher.dispatch("sms-gateway")
        await a.dispatcher.dispatch("sms-gateway")
        # Then the send is settled: recorded sent once, never sent again nor held in doubt
        assert len(sms.sent) == 1
        assert [r.status for r in world.records()] == ["queued", "sent"]
        assert world.publisher.of_type("deadletter.recorded") == []
        assert await a.dispatcher.outbox.state(sms.sent[0].notification_id) == "sent"  # type: ignore[attr-defined]
    try:
        run(store.url, "notifier-outage:", scenario)
    finally:
        store.stop()
