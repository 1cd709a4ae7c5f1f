"""Notifier rules (pure), told by tables: masking, rendering, which queue, when, what an event
owes whom, the delivery states; then the service wired with fakes, no broker and no Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
import redis
from prometheus_client import CollectorRegistry

from schemas.events import (
    CaseAction,
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    Contact,
    DecisionKind,
    Level,
    Nature,
    NotificationKind,
    RoutingDecision,
    Severity,
)
from services.common.consumer import inputs
from services.common.policy import QuietHours, SatisfactionPolicy, load_policy
from services.notifier import app as notifier_app
from services.notifier import logic
from services.notifier.dispatch import Dispatcher
from services.notifier.handlers import Notifier
from services.notifier.logic import Begin, Book, Cancel, Claim, Delivery, Enqueue, Entry, Release, Settle
from services.notifier.messages import Notification, acknowledgement, mask, render
from services.notifier.metrics import NotifierMetrics
from services.notifier.settings import NotifierSettings
from tests.fakes import CountingTransport, DictCustomers, DictOutbox, FixedClock, RecordingPublisher
from tests.fakes.notifier import DictRecipientLimit

POLICY = load_policy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.mark.parametrize(("address", "masked"), [
    ("wang.fang@example.com", "w***@example.com"),
    ("+8613800138000", "+86*******8000"),
    ("12345", "***"),
])
def test_mask(address: str, masked: str) -> None:
    assert mask(address) == masked


@pytest.mark.parametrize(("contact", "transport", "needle"), [
    (Contact(email="a@b.cn", language="zh"), "email", "投诉编号 C-1"),
    (Contact(phone="+8613800138000", language="en"), "sms", "complaint number is C-1"),
    (Contact(language="en"), "none", "C-1"),
])
def test_acknowledgement_is_rendered_in_the_customer_language(contact: Contact, transport: str,
                                                              needle: str) -> None:
    note = render(NotificationKind.acknowledgement, contact, complaint_id="C-1", templates=POLICY.notifier)
    assert note.transport == transport and needle in note.body
    assert note.notification_id == render(NotificationKind.acknowledgement, contact,
                                          complaint_id="C-1", templates=POLICY.notifier).notification_id


@pytest.mark.parametrize(("nature", "language", "subject", "needle"), [
    (Nature.praise, "zh", "感谢您的表扬：C-1", "您的表扬已记录，编号 C-1"),
    (Nature.praise, "en", "Thank you for your kind words (C-1)", "praise has been recorded under reference C-1"),
    (Nature.suggestion, "zh", "您的建议已收到：C-1", "编号 C-1。我们将认真评估，并将评估结果告知您"),
    (Nature.suggestion, "en", "We have received your suggestion C-1", "We will assess it and let you know the outcome"),
    (Nature.complaint, "zh", "您的投诉已受理：C-1", "投诉编号 C-1"),
    (Nature.complaint, "en", "We have registered your complaint C-1", "Your complaint number is C-1"),
])
def test_registration_is_answered_in_the_words_for_its_nature(nature: Nature, language: Literal["zh", "en"],
                                                              subject: str, needle: str) -> None:
    # Given a message of this nature registered from a customer writing in this language
    c = Complaint(complaint_id="C-1", channel=Channel.sms, nature=nature, received_at=T0, source_message_id="m-1",
                  customer=Contact(phone="+8613800138000", language=language), customer_key="k",
                  first_contact="sms-desk", subject="s", description="d")
    # When the notifier renders what registration owes the customer
    note = acknowledgement(c, templates=POLICY.notifier)
    # Then it names the number in the nature's words; only a complaint is called one
    assert note.subject == subject and needle in note.body
    text = (note.subject + note.body).lower()
    assert ("complaint" in text or "投诉" in text) == (nature is Nature.complaint)
    # and it is the acknowledgement under the one id a redelivery derives again, whatever the nature
    assert note.kind is NotificationKind.acknowledgement
    assert note.notification_id == render(NotificationKind.acknowledgement, c.customer, complaint_id="C-1",
                                          templates=POLICY.notifier).notification_id


def notice(transport: str, address: str = "x", role: str = "customer") -> Notification:
    return Notification(notification_id="n", complaint_id="C-1", kind=NotificationKind.result,
                        transport=transport, address=address, language="zh", subject="s", body="b", role=role)


ALL = {"outbox", "smtp", "sms-gateway", "chat:executives"}


@pytest.mark.parametrize(("note", "queues", "queue"), [
    # Given a notification and the configured queues, Then it goes by its transport's, else the outbox
    (notice("email"), ALL, "smtp"),
    (notice("sms"), ALL, "sms-gateway"),
    (notice("chat", "executives", "executives"), ALL, "chat:executives"),
    (notice("chat", "handler", "handler"), ALL, "outbox"),
    (notice("email"), {"outbox"}, "outbox"),
    (notice("sms"), {"outbox", "smtp"}, "outbox"),
    (notice("none", ""), ALL, "outbox"),
])
def test_queue_of(note: Notification, queues: set[str], queue: str) -> None:
    assert logic.queue_of(note, queues=queues) == queue


QUIET = QuietHours(start="22:00", end="08:00", timezone="Asia/Shanghai", transports=["sms"])
NIGHT = datetime(2026, 11, 23, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
MORNING = datetime(2026, 11, 24, 0, tzinfo=UTC)  # 08:00 in Shanghai
DAY = datetime(2026, 11, 23, 2, tzinfo=UTC)  # 10:00 in Shanghai


@pytest.mark.parametrize(("note", "now", "not_before", "quiet", "due"), [
    # Given the time, an earliest time and the quiet hours, Then the notification is due at ...
    (notice("sms"), DAY, None, QUIET, DAY),                           # by day: at once
    (notice("sms"), NIGHT, None, QUIET, MORNING),                     # a customer's SMS at night: 08:00
    (notice("sms"), NIGHT, None, None, NIGHT),                        # no quiet hours
    (notice("email"), NIGHT, None, QUIET, NIGHT),                     # e-mail is not held back
    (notice("sms", role="handler"), NIGHT, None, QUIET, NIGHT),       # staff are not held back
    (notice("sms"), DAY, DAY + timedelta(hours=48), QUIET, DAY + timedelta(hours=48)),  # the revisit
    (notice("sms"), DAY, NIGHT, QUIET, MORNING),                      # a revisit that falls at night
    (notice("sms"), NIGHT, DAY, QUIET, NIGHT),                        # not_before past, checked then
])
def test_due_time(note: Notification, now: datetime, not_before: datetime | None, quiet: QuietHours | None,
                  due: datetime) -> None:
    assert logic.due_time(note, now=now, not_before=not_before, quiet=quiet) == due


def case(action: CaseAction, **fields: Any) -> CaseEvent:
    return CaseEvent.new(CaseUpdate(complaint_id="C-1", action=action, actor="agent-1", **fields),
                         source="intake", time=T0, subject="C-1")


@pytest.mark.parametrize(("answer", "reopens"), [
    # Given a case event and a threshold of 2, Then only a satisfaction answer of 1 or 2 reopens
    (case(CaseAction.satisfaction, score=1), True),
    (case(CaseAction.satisfaction, score=2), True),
    (case(CaseAction.satisfaction, score=3), False),
    (case(CaseAction.satisfaction, score=5), False),
    (case(CaseAction.resolved, result="ok"), False),
    (case(CaseAction.reopened), False),
])
def test_a_dissatisfied_answer_reopens(answer: CaseEvent, reopens: bool) -> None:
    reopened = logic.reopen(answer, satisfaction=SatisfactionPolicy(dissatisfied_at_most=2))
    assert (reopened is not None) == reopens
    if reopened is not None:  # one event, whatever the redelivery: its id derives from the answer's
        assert reopened == logic.reopen(answer, satisfaction=SatisfactionPolicy(dissatisfied_at_most=2))
        assert (reopened.data.action, reopened.data.actor, reopened.time) == (CaseAction.reopened, "customer", T0)
        assert reopened.causationid == answer.id and reopened.correlationid == answer.correlationid
        assert reopened.data.note == f"dissatisfied: score {answer.data.score} of 5"


CONTACT = Contact(phone="+8613800138000")


@pytest.mark.parametrize(("event", "scale", "owed"), [
    # Given a case event, When the customer is told, Then these kinds, due not before these times
    (case(CaseAction.resolved, result="ok"), 1.0,
     [(NotificationKind.result, None), (NotificationKind.revisit, T0 + timedelta(hours=48))]),
    (case(CaseAction.resolved, result="ok"), 3600.0,
     [(NotificationKind.result, None), (NotificationKind.revisit, T0 + timedelta(seconds=48))]),
    (case(CaseAction.reopened), 1.0, [(NotificationKind.reopened, None)]),
    (case(CaseAction.satisfaction, score=5), 1.0, []),
    (case(CaseAction.acknowledged), 1.0, []),
])
def test_what_a_case_event_owes_the_customer(event: CaseEvent, scale: float,
                                            owed: list[tuple[NotificationKind, datetime | None]]) -> None:
    notices = logic.customer_notices(event, CONTACT, templates=POLICY.notifier, sla_scale=scale)
    assert [(s.note.kind, s.not_before) for s in notices] == owed
    assert all(s.note.transport == "sms" and s.note.role == "customer" for s in notices)


def decision(kind: DecisionKind, handler: str | None = "quality-l1-01",
             notify: list[str] | None = None) -> RoutingDecision:
    return RoutingDecision(complaint_id="C-1", decision=kind, received_at=T0, severity=Severity.general,
                           department="quality", level=Level.L1, handler=handler, first_contact_owner="desk",
                           notify=notify or [], reasons=["why"])


@pytest.mark.parametrize(("d", "kind", "roles"), [
    # Given a routing decision, Then this notice goes to these roles
    (decision(DecisionKind.routed), NotificationKind.assignment, ["handler", "first_contact_owner"]),
    (decision(DecisionKind.reclassified, notify=["executives"]), NotificationKind.assignment,
     ["handler", "first_contact_owner", "executives"]),
    (decision(DecisionKind.routed, handler=None), NotificationKind.assignment, ["first_contact_owner"]),
    (decision(DecisionKind.escalated, notify=["department_head"]), NotificationKind.escalation,
     ["department_head", "handler"]),
    (decision(DecisionKind.at_ceiling, notify=["executives"]), NotificationKind.escalation,
     ["executives", "handler"]),
    (decision(DecisionKind.escalated, handler=None), NotificationKind.escalation, ["department_head"]),
])
def test_recipients_of_a_routing_decision(d: RoutingDecision, kind: NotificationKind, roles: list[str]) -> None:
    assert logic.recipients(d) == (kind, roles)


Q = "outbox"
QUEUED = Book({"n": Entry(Delivery.queued)}, {(Q, "n"): 0.0})
SENDING_A = Book({"n": Entry(Delivery.sending, 0, "A", 10.0)}, {}, {(Q, "n"): 10.0})
RETRY_A = Book({"n": Entry(Delivery.queued, 1, "A", 10.0)}, {(Q, "n"): 5.0})
DOUBT = Book({"n": Entry(Delivery.in_doubt, 0, "A", 10.0)})


@pytest.mark.parametrize(("book", "op", "answer", "state"), [
    # Given a notification in a state, When an operation comes, Then its answer and the state after
    (Book(), Enqueue(Q, "n", 0), True, Delivery.queued),
    (QUEUED, Enqueue(Q, "n", 9), False, Delivery.queued),
    (QUEUED, Begin(Q, "n", "A", 0, 10), "go", Delivery.sending),
    (QUEUED, Cancel(Q, "n"), True, Delivery.cancelled),
    (QUEUED, Settle(Q, "n", "sent"), 1, Delivery.sent),
    (SENDING_A, Settle(Q, "n", "sent"), 1, Delivery.sent),
    (SENDING_A, Settle(Q, "n", "failed"), 1, Delivery.failed),
    (SENDING_A, Settle(Q, "n", "retry", 5), 1, Delivery.queued),
    (SENDING_A, Begin(Q, "n", "A", 5, 10), "go", Delivery.sending),         # its own sender again
    (SENDING_A, Begin(Q, "n", "B", 9, 10), "busy", Delivery.sending),       # A's lease runs
    (SENDING_A, Begin(Q, "n", "B", 10, 10), "resend", Delivery.sending),    # A died mid-send
    (SENDING_A, Begin(Q, "n", "B", 10, 10, "hold"), "doubt", Delivery.in_doubt),
    (SENDING_A, Cancel(Q, "n"), False, Delivery.sending),
    (RETRY_A, Begin(Q, "n", "B", 9, 10), "busy", Delivery.queued),          # A's last lease still runs
    (RETRY_A, Begin(Q, "n", "B", 10, 10, "hold"), "go", Delivery.sending),  # not in doubt: it was queued
    (DOUBT, Settle(Q, "n", "retry", 5), "in_doubt", Delivery.in_doubt),
    (DOUBT, Settle(Q, "n", "sent"), 1, Delivery.sent),                      # the slow sender finished
    (DOUBT, Begin(Q, "n", "B", 20, 10), "done", Delivery.in_doubt),
    (DOUBT, Release(Q, "n"), None, Delivery.in_doubt),
])
def test_delivery_transitions(book: Book, op: logic.Operation, answer: logic.Answer, state: Delivery) -> None:
    after, said = logic.step(book, op)
    assert (said, after.entries["n"].state) == (answer, state)


@pytest.mark.parametrize(("book", "op", "due", "leased"), [
    # Given the queues, When claimed, Then the claimed ones move from due to leased till now + lease
    (QUEUED, Claim(Q, 0, 10, 5), {}, {(Q, "n"): 5.0}),
    (QUEUED, Claim("sms", 0, 10, 5), {(Q, "n"): 0.0}, {}),
    (SENDING_A, Claim(Q, 10, 10, 5), {}, {(Q, "n"): 15.0}),                # a lapsed lease is taken over
    (SENDING_A, Settle(Q, "n", "retry", 30), {(Q, "n"): 30.0}, {}),
    (SENDING_A, Begin(Q, "n", "B", 10, 10, "hold"), {}, {}),
    (SENDING_A, Release(Q, "n"), {}, {}),
])
def test_queue_positions(book: Book, op: logic.Operation, due: dict[tuple[str, str], float],
                         leased: dict[tuple[str, str], float]) -> None:
    after, _ = logic.step(book, op)
    assert (after.due, after.leased) == (due, leased)


# ---- the service with fakes ----------------------------------------------------------


def registered(cid: str = "C-1") -> ComplaintRegistered:
    c = Complaint(complaint_id=cid, channel=Channel.sms, received_at=T0, source_message_id=f"m-{cid}",
                  customer=CONTACT, customer_key="k", first_contact="sms-desk", subject="s", description="d")
    return ComplaintRegistered.new(c, source="intake", time=T0, subject=cid)


def test_with_fakes_a_registration_is_acknowledged_once_and_a_lost_store_rebuilt() -> None:
    async def scenario() -> None:
        # Given the notifier's handlers and dispatcher over the fakes, by day
        clock, publisher, customers, outbox = FixedClock(DAY), RecordingPublisher(), DictCustomers(), DictOutbox()
        transports = {"outbox": CountingTransport("outbox")}
        settings, metrics = NotifierSettings(), NotifierMetrics.create(CollectorRegistry())
        reg = registered()

        def read(topic: str) -> list[dict[str, Any]]:
            events = [reg] + [e for _, e in publisher.published]
            return [e.model_dump(mode="json") for e in events if e.type == {
                "complaints.registered": "complaint.registered",
                "complaints.notifications": "notification.recorded"}.get(topic)]

        notifier = Notifier(settings=settings, policy=POLICY, publisher=publisher, customers=customers,
                            outbox=outbox, queues=list(transports), clock=clock, metrics=metrics, read=read)
        dispatcher = Dispatcher(settings=settings, publisher=publisher, outbox=outbox, transports=transports,
                                clock=clock, metrics=metrics)
        # When a registration comes twice and the queue is drained twice
        await notifier.on_registered(None, reg.to_bytes())
        await notifier.on_registered(None, reg.to_bytes())
        await dispatcher.dispatch("outbox")
        await dispatcher.dispatch("outbox")
        # Then one acknowledgement is queued, written to the outbox and recorded outboxed (not sent)
        statuses = [e.data.status for e in publisher.of_type("notification.recorded")]  # type: ignore[attr-defined]
        assert statuses == ["queued", "outboxed"] and len(transports["outbox"].sent) == 1
        # When the store is lost, Then the check rebuilds it and nothing is sent again
        outbox.lose_everything()
        customers.lose_everything()
        await notifier.check_store()
        assert await outbox.whole() and await customers.get("C-1") is not None
        assert await dispatcher.dispatch("outbox") == 0 and len(transports["outbox"].sent) == 1
    asyncio.run(scenario())


def test_build_with_every_port_given_opens_no_redis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given a Redis client that cannot be made
    def no_redis(settings: Any) -> Any:
        raise AssertionError("build() made a Redis client though every port was given")

    monkeypatch.setattr(notifier_app, "redis_client", no_redis)
    settings = NotifierSettings(COMPLAINTS_DATA_DIR=str(tmp_path), NOTIFIER_OUTBOX_DIR=str(tmp_path / "outbox"))
    # When the notifier is built with every port, Then it is wired without one
    app = notifier_app.build(settings, POLICY, publisher=RecordingPublisher(), customers=DictCustomers(),
                             outbox=DictOutbox(), transports={"outbox": CountingTransport("outbox")},
                             clock=FixedClock(), registry=CollectorRegistry(),
                             limit=DictRecipientLimit(limit=10, window=86400))
    assert inputs(app) == {f"complaints.{n}" for n in ("registered", "lifecycle", "routed", "sla")}


# ---- the file outbox: allowed explicitly, and never taken for a delivery -------------------

SMTP = {"host": "smtp.example.com", "sender": "service@example.com", "domain": "example.com"}
GATEWAY = {"url": "https://sms.example.com/send"}
EVERY_ROLE = {role: {"kind": "slack", "url": "https://hooks.example.com/x"} for role in logic.staff_roles(POLICY)}


@pytest.mark.parametrize(("env", "missing"), [
    ({}, ["NOTIFIER_SMTP (e-mail)", "NOTIFIER_SMS_GATEWAY (SMS)", "NOTIFIER_CHAT.executives"]),
    ({"NOTIFIER_SMTP": SMTP, "NOTIFIER_SMS_GATEWAY": GATEWAY},
     ["NOTIFIER_CHAT.department_head", "NOTIFIER_CHAT.first_contact_owner", "NOTIFIER_CHAT.handler"]),
    ({"NOTIFIER_SMTP": SMTP, "NOTIFIER_CHAT": EVERY_ROLE}, ["NOTIFIER_SMS_GATEWAY (SMS)"]),
])
def test_the_notifier_refuses_to_start_on_the_outbox_unless_it_is_enabled(
        tmp_path: Path, env: dict[str, Any], missing: list[str]) -> None:
    from services.common.errors import ConfigError

    def build(**more: Any) -> Any:
        settings = NotifierSettings(COMPLAINTS_DATA_DIR=str(tmp_path), NOTIFIER_OUTBOX_DIR=str(tmp_path / "outbox"),
                                    **env, **more)
        return notifier_app.build(settings, POLICY, publisher=RecordingPublisher(), customers=DictCustomers(),
                                  outbox=DictOutbox(), clock=FixedClock(), registry=CollectorRegistry(),
                                  limit=DictRecipientLimit(limit=10, window=86400))

    # Given channels without a transport, When the notifier starts, Then it refuses, naming the
    # setting and every channel the outbox would stand in for
    with pytest.raises(ConfigError, match="NOTIFIER_OUTBOX_ENABLED") as refused:
        build()
    assert all(name in str(refused.value) for name in missing), str(refused.value)
    # unless the outbox is enabled explicitly
    assert inputs(build(NOTIFIER_OUTBOX_ENABLED="true"))
    # Given every channel configured, Then it starts without it
    complete = {"NOTIFIER_SMTP": SMTP, "NOTIFIER_SMS_GATEWAY": GATEWAY, "NOTIFIER_CHAT": EVERY_ROLE}
    settings = NotifierSettings(COMPLAINTS_DATA_DIR=str(tmp_path), **complete)
    assert inputs(notifier_app.build(settings, POLICY, publisher=RecordingPublisher(), customers=DictCustomers(),
                                     outbox=DictOutbox(), clock=FixedClock(), registry=CollectorRegistry(),
                                     limit=DictRecipientLimit(limit=10, window=86400)))


def test_the_roles_a_notice_may_go_to_are_the_policys() -> None:
    assert logic.staff_roles(POLICY) == {"handler", "first_contact_owner", "department_head", "executives"}


def test_an_outboxed_notification_is_no_notice_to_the_sla_clocks() -> None:
    from services.notifier.messages import record
    from services.sla_monitor.facts import facts_of

    note = render(NotificationKind.acknowledgement, CONTACT, complaint_id="C-1", templates=POLICY.notifier)
    outboxed, sent = (record(note.notification_id, "C-1", note.kind, queue, status, now=T0, cause=None, note=note)
                      for queue, status in (("outbox", "outboxed"), ("sms-gateway", "sent")))
    assert facts_of(outboxed) == []
    assert [f.signals for f in facts_of(sent)] == [["notified:acknowledgement"]]


def wired(publisher: Any, outbox: Any, transports: dict[str, Any], clock: FixedClock,
          policy: str = "resend") -> tuple[Notifier, Dispatcher]:
    """A notifier and a dispatcher over the same fakes, as the service wires them."""
    settings = NotifierSettings(NOTIFIER_IN_DOUBT=policy)
    metrics = NotifierMetrics.create(CollectorRegistry())
    notifier = Notifier(settings=settings, policy=POLICY, publisher=publisher, customers=DictCustomers(),
                        outbox=outbox, queues=list(transports), clock=clock, metrics=metrics)
    return notifier, Dispatcher(settings=settings, publisher=publisher, outbox=outbox,
                                transports=transports, clock=clock, metrics=metrics)


class OutboxThatGoesDown(DictOutbox):
    """The outbox over a Redis that stops answering while ``down`` (every call refused)."""

    down = False

    def _answering(self) -> None:
        if self.down:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    async def claim(self, queue: str, *, now: float, limit: int, lease: float) -> list[logic.Queued]:
        self._answering()
        return await super().claim(queue, now=now, limit=limit, lease=lease)

    async def begin(self, queue: str, notification_id: str, *, token: str, now: float, lease: float,
                    in_doubt: str = "resend") -> str:
        self._answering()
        return await super().begin(queue, notification_id, token=token, now=now, lease=lease, in_doubt=in_doubt)

    async def settle(self, queue: str, notification_id: str, outcome: str, *, due: float = 0) -> str | int:
        self._answering()
        return await super().settle(queue, notification_id, outcome, due=due)


class TakesItThenRedisStops(CountingTransport):
    """Delivers; Redis stops answering right after the first, before that send is settled."""

    def __init__(self, outbox: OutboxThatGoesDown) -> None:
        super().__init__("sms-gateway")
        self.outbox = outbox

    async def send(self, notification: Notification) -> None:
        await super().send(notification)
        self.outbox.down = len(self.sent) == 1


@pytest.mark.parametrize("policy", ["resend", "hold"])
def test_a_send_whose_settle_redis_missed_is_settled_later_and_never_sent_again(policy: str) -> None:
    async def scenario() -> None:
        # Given a gateway that takes the acknowledgement, and Redis stopping just after
        clock, publisher, outbox = FixedClock(DAY), RecordingPublisher(), OutboxThatGoesDown()
        sms = TakesItThenRedisStops(outbox)
        transports = {"outbox": CountingTransport("outbox"), "sms-gateway": sms}
        notifier, dispatcher = wired(publisher, outbox, transports, clock, policy)
        await notifier.on_registered(None, registered().to_bytes())
        # When the settle fails, the outage outlasts the send's lease, and Redis answers again
        with pytest.raises(redis.ConnectionError):
            await dispatcher.dispatch("sms-gateway")
        with pytest.raises(redis.ConnectionError):
            await dispatcher.dispatch("sms-gateway")
        clock.advance(seconds=dispatcher.settings.send_lease + 1)
        outbox.down = False
        await dispatcher.dispatch("sms-gateway")
        await dispatcher.dispatch("sms-gateway")
        # Then the send is settled and recorded sent once: never sent again, nor held in doubt
        assert len(sms.sent) == 1
        assert [e.data.status for e in publisher.of_type("notification.recorded")] == ["queued", "sent"]  # type: ignore[attr-defined]
        assert publisher.of_type("deadletter.recorded") == []
        assert await outbox.state(sms.sent[0].notification_id) == "sent"
        assert await outbox.depth("sms-gateway") == 0 and dispatcher.unsettled == {}
    asyncio.run(scenario())


class BrokerDownOnce(RecordingPublisher):
    """Refuses the first record of a send's outcome (the broker did not answer), then takes all."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = False

    async def publish(self, topic: Any, event: Any) -> None:
        if not self.refused and event.type == "notification.recorded" and event.data.status == "sent":
            from aiokafka.errors import KafkaTimeoutError

            self.refused = True
            raise KafkaTimeoutError()
        await super().publish(topic, event)


def test_a_send_whose_record_the_broker_missed_is_recorded_later_and_not_sent_again() -> None:
    async def scenario() -> None:
        # Given a gateway that takes the acknowledgement, and a broker that misses its record
        clock, publisher, outbox = FixedClock(DAY), BrokerDownOnce(), DictOutbox()
        sms = CountingTransport("sms-gateway")
        transports = {"outbox": CountingTransport("outbox"), "sms-gateway": sms}
        notifier, dispatcher = wired(publisher, outbox, transports, clock)
        await notifier.on_registered(None, registered().to_bytes())
        # When the send is settled but its record is refused, and the queue is dispatched again
        with pytest.raises(Exception, match="KafkaTimeoutError"):
            await dispatcher.dispatch("sms-gateway")
        await dispatcher.dispatch("sms-gateway")
        await dispatcher.dispatch("sms-gateway")
        # Then it is recorded sent (the acknowledgement's SLA stop) once, and sent once
        assert len(sms.sent) == 1
        assert [e.data.status for e in publisher.of_type("notification.recorded")] == ["queued", "sent"]
        assert dispatcher.metrics.sent.labels("acknowledgement", "sms-gateway")._value.get() == 1
    asyncio.run(scenario())


@pytest.mark.parametrize(("policy", "statuses"), [("hold", ["queued", "in_doubt"]),
                                                  ("resend", ["queued", "retrying", "sent"])])
def test_a_transport_raising_what_it_should_not_leaves_the_send_in_doubt(policy: str,
                                                                         statuses: list[str]) -> None:
    async def scenario() -> None:
        # Given a gateway that raises an error no transport should (it may have sent the message)
        clock, publisher, outbox = FixedClock(DAY), RecordingPublisher(), DictOutbox()
        sms = CountingTransport("sms-gateway", failures=[RuntimeError("gateway bug for +8613800138000")])
        transports = {"outbox": CountingTransport("outbox"), "sms-gateway": sms}
        notifier, dispatcher = wired(publisher, outbox, transports, clock, policy)
        await notifier.on_registered(None, registered().to_bytes())
        # When it is dispatched, and again once any retry is due
        await dispatcher.dispatch("sms-gateway")
        clock.advance(hours=1)
        await dispatcher.dispatch("sms-gateway")
        # Then the send is in doubt: held (dead-lettered, without the error's text), or resent once
        assert [e.data.status for e in publisher.of_type("notification.recorded")] == statuses
        letters = publisher.of_type("deadletter.recorded")
        assert len(letters) == (policy == "hold") and len(sms.sent) == (policy == "resend")
        assert all("13800138000" not in e.to_bytes().decode() for _, e in publisher.published)
    asyncio.run(scenario())


class WakeLog:
    """The notifier's ``wake``: which queue was woken, and what had been published by then."""

    def __init__(self, publisher: RecordingPublisher) -> None:
        self.publisher, self.woken = publisher, []  # type: list[tuple[str, list[str]]]

    def __call__(self, queue: str) -> None:
        statuses = [e.data.status for e in self.publisher.of_type("notification.recorded")]  # type: ignore[attr-defined]
        self.woken.append((queue, statuses))


@pytest.mark.parametrize(("now", "woken"), [(DAY, True), (NIGHT, False)])
def test_a_message_queued_due_now_wakes_its_queue_after_its_record(now: datetime, woken: bool) -> None:
    async def scenario() -> None:
        # Given the notifier wired with a wake-up, by day and at night (quiet hours defer an SMS)
        publisher, transports = RecordingPublisher(), {"sms-gateway": CountingTransport("sms-gateway")}
        wake = WakeLog(publisher)
        notifier = Notifier(settings=NotifierSettings(), policy=POLICY, publisher=publisher,
                            customers=DictCustomers(), outbox=DictOutbox(), queues=list(transports),
                            clock=FixedClock(now), metrics=NotifierMetrics.create(CollectorRegistry()),
                            wake=wake)
        # When a registration is acknowledged by SMS
        await notifier.on_registered(None, registered().to_bytes())
        # Then by day its queue is woken once, after the queued record went out; at night (deferred) not
        assert wake.woken == ([("sms-gateway", ["queued"])] if woken else [])
    asyncio.run(scenario())


def test_a_woken_dispatch_loop_drains_at_once_and_otherwise_on_its_interval() -> None:
    async def scenario() -> None:
        drained = asyncio.Queue()  # type: asyncio.Queue[int]
        count = 0

        async def drain() -> None:
            nonlocal count
            count += 1
            drained.put_nowait(count)

        woken = asyncio.Event()
        # Given a dispatch loop with an interval far longer than the test
        loop = asyncio.ensure_future(notifier_app._dispatcher(drain, woken, interval=3600)())
        try:
            # When it is woken, Then it drains without waiting for the interval, each time
            for expected in (1, 2):
                woken.set()
                assert await asyncio.wait_for(drained.get(), timeout=10) == expected
            assert not woken.is_set()  # cleared before the drain: a wake during it is not lost
        finally:
            loop.cancel()
        # And with a short interval it drains unwoken (what fell due since, another instance's)
        loop = asyncio.ensure_future(notifier_app._dispatcher(drain, asyncio.Event(), interval=0.01)())
        try:
            assert await asyncio.wait_for(drained.get(), timeout=10) == 3
        finally:
            loop.cancel()
    asyncio.run(scenario())
