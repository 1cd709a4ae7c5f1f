"""Intake's handlers over fakes: an SMS or e-mail that answers a revisit (回访) is a satisfaction
score on that complaint, not a new complaint (issue 17)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.events import (
    CaseEvent,
    Channel,
    ComplaintRegistered,
    InboundMessage,
    InboundReceived,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
)
from services.common.policy import load_policy
from services.intake.handlers import Accepted, Intake
from services.intake.metrics import IntakeMetrics
from tests.fakes import DictRegistrations, DictRevisits, DictTimelines, FixedClock, RecordingPublisher

PHONE = "+8613800138000"
EMAIL = "li.lei@example.com"


class World:
    """Intake over fakes, with helpers that play the customer and the notifier."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.publisher = RecordingPublisher()
        self.registry = CollectorRegistry()
        self.revisits = DictRevisits()
        self.intake = Intake(
            policy=load_policy(), publisher=self.publisher, registrations=DictRegistrations(),
            timelines=DictTimelines(), clock=self.clock, random_bits=iter(range(1, 10_000)).__next__,
            identity_secret=b"k" * 16, metrics=IntakeMetrics.create(self.registry),
            revisits=self.revisits)
        self.sms_count = 0

    def receive(self, channel: Channel, payload: dict[str, Any] | str) -> Accepted:
        message = InboundMessage(channel=channel, payload=payload)
        inbound = InboundReceived.new(message, source="test", time=self.clock(), subject=None)
        return asyncio.run(self.intake.register(inbound, via="kafka"))

    def sms(self, text: str, *, message_id: str | None = None) -> Accepted:
        self.sms_count += 1
        return self.receive(Channel.sms, {"message_id": message_id or f"SM-{self.sms_count}",
                                          "sender": PHONE, "text": text})

    def complaint(self, text: str = "洗衣机漏水，师傅来了两次都没修好") -> str:
        return self.sms(text).complaint_id

    def revisit_sent(self, complaint_id: str) -> None:
        """The notifier's record of the revisit sent to the customer, as intake's timeline
        consumer sees it on complaints.notifications."""
        record = NotificationRecord(
            notification_id=f"n-{complaint_id}", complaint_id=complaint_id, kind=NotificationKind.revisit,
            transport="sms:sms", recipient="+86*******8000", language="zh", status="sent")
        event = NotificationEvent.new(record, source="notifier", time=self.clock(), subject=complaint_id)
        assert asyncio.run(self.intake.project_many([event.to_bytes()])) == [None]

    def project_published(self) -> None:
        """Feed what intake published back to its timeline consumer, as Kafka does."""
        asyncio.run(self.intake.project_many([e.to_bytes() for _, e in self.publisher.published]))

    def of_type(self, cls: type[Envelope]) -> list[Any]:
        return self.publisher.of_type(cls.EVENT_TYPE)

    def replies(self, outcome: str, channel: str = "sms") -> float:
        value = self.registry.get_sample_value("complaints_intake_revisit_replies_total",
                                               {"channel": channel, "outcome": outcome})
        return value or 0.0


def test_an_sms_score_after_the_revisit_is_satisfaction_on_that_complaint_not_a_new_one() -> None:
    # Given a complaint by SMS, resolved and revisited two days later
    w = World()
    complaint = w.complaint()
    w.clock.advance(days=2)
    w.revisit_sent(complaint)
    registered_before = len(w.of_type(ComplaintRegistered))
    # When the customer answers "4" by SMS
    accepted = w.sms("4")
    # Then it is a satisfaction event on that complaint, by the customer, and nothing is registered
    assert (accepted.kind, accepted.complaint_id, accepted.duplicate) == ("case_event", complaint, False)
    (event,) = w.of_type(CaseEvent)
    assert (event.id, event.subject) == (accepted.event_id, complaint)
    assert (event.data.action, event.data.actor, event.data.score) == ("satisfaction", "customer", 4)
    assert [t for t, e in w.publisher.published if e is event] == ["complaints.lifecycle"]
    assert len(w.of_type(ComplaintRegistered)) == registered_before
    assert w.replies("satisfaction") == 1


def test_the_customers_comment_is_kept_as_the_note() -> None:
    w = World()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    # When the answer carries a short comment
    w.sms("5分，师傅很专业")
    # Then the comment is the event's note
    (event,) = w.of_type(CaseEvent)
    assert (event.data.score, event.data.note) == (5, "师傅很专业")


def test_a_redelivered_answer_gives_the_same_event_before_and_after_the_revisit_closed() -> None:
    # Given an answer recorded once
    w = World()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    first = w.sms("4", message_id="SM-answer")
    # When the same SMS is delivered again, and again after the answer closed the revisit
    again = w.sms("4", message_id="SM-answer")
    w.project_published()
    assert not any(w.revisits.open_.values())  # closed by the satisfaction event
    late = w.sms("4", message_id="SM-answer")
    # Then each gives the same event id, and no complaint is registered for it
    assert first.event_id == again.event_id == late.event_id
    assert (again.duplicate, late.duplicate) == (True, True)
    assert {e.id for e in w.of_type(CaseEvent)} == {first.event_id}
    assert len(w.of_type(ComplaintRegistered)) == 1


def test_a_new_grievance_after_the_revisit_is_registered_as_a_new_complaint() -> None:
    # Given a revisited complaint
    w = World()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    # When the customer writes that it broke again
    accepted = w.sms("还是没修好，又坏了")
    # Then it is a new complaint (the router links it as a repeat), no satisfaction
    assert accepted.kind == "registered" and accepted.complaint_id != complaint
    assert w.of_type(CaseEvent) == []
    assert w.replies("not_a_score") == 1


def test_a_score_with_two_open_revisits_goes_to_a_person_not_to_either_complaint() -> None:
    # Given two complaints of the customer, both revisited (the second later)
    w = World()
    first, second = w.complaint(), w.complaint("热水器不出热水")
    w.revisit_sent(first)
    w.clock.advance(hours=1)
    w.revisit_sent(second)
    # When the customer answers "4"
    accepted = w.sms("4")
    # Then no satisfaction is recorded: the reply is put on the latest revisited complaint for a
    # person to place, naming both, and nothing is registered
    (event,) = w.of_type(CaseEvent)
    assert (accepted.kind, accepted.complaint_id) == ("case_event", second)
    assert (event.data.action, event.data.score) == ("note", None)
    assert "ambiguous" in event.data.note and first in event.data.note and "4" in event.data.note
    assert len(w.of_type(ComplaintRegistered)) == 2
    assert w.replies("ambiguous") == 1


def test_a_score_naming_its_complaint_number_answers_that_one_of_two() -> None:
    w = World()
    first, second = w.complaint(), w.complaint("热水器不出热水")
    w.revisit_sent(first)
    w.revisit_sent(second)
    # When the answer names the first complaint's number
    accepted = w.sms(f"{first} 满意")
    # Then it is satisfaction on that one
    (event,) = w.of_type(CaseEvent)
    assert (accepted.complaint_id, event.data.action, event.data.score) == (first, "satisfaction", 4)


def test_a_score_after_the_reply_window_is_an_ordinary_message() -> None:
    # Given a revisit sent longer ago than intake.reply_window (7 days by default)
    w = World()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    w.clock.advance(days=7, minutes=1)
    # When "4" arrives; Then it is registered as today
    assert w.sms("4").kind == "registered"
    assert w.of_type(CaseEvent) == []


def test_a_score_from_another_customer_is_not_matched() -> None:
    w = World()
    w.revisit_sent(w.complaint())
    accepted = w.receive(Channel.sms, {"message_id": "SM-x", "sender": "+8613900139000", "text": "4"})
    assert accepted.kind == "registered" and w.of_type(CaseEvent) == []


def test_an_answer_closes_the_revisit_and_a_second_score_is_a_new_message() -> None:
    # Given an answered revisit whose satisfaction event came back through the timeline
    w = World()
    complaint = w.complaint()
    w.revisit_sent(complaint)
    w.sms("4")
    w.project_published()
    # When another "5" arrives; Then nothing is open any more
    assert w.sms("5").kind == "registered"
    assert len(w.of_type(CaseEvent)) == 1
    # and a new revisit after a reopening opens it again
    w.clock.advance(days=3)
    w.revisit_sent(complaint)
    assert w.sms("2").complaint_id == complaint


def _mail(text: str, *, thread: str | None = None) -> str:
    references = (f"References: <complaint.{thread}@complaints.example.com> <n-1@complaints.example.com>\r\n"
                  if thread else "")
    return (f"From: Li Lei <{EMAIL}>\r\nTo: service@example.com\r\nSubject: Re: 回访\r\n"
            "Message-ID: <reply-1@example.com>\r\nIn-Reply-To: <n-1@complaints.example.com>\r\n"
            f"{references}Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\r\n"
            "On Tue, 1 Dec 2026 at 10:00, Service wrote:\r\n> 请回复1-5分\r\n")


def test_an_email_reply_in_the_revisits_thread_answers_it_of_two_open() -> None:
    # Given two complaints of a customer by e-mail, both revisited by e-mail
    w = World()
    first, second = (w.receive(Channel.web_form, {"description": text, "email": EMAIL}).complaint_id
                     for text in ("空调不制冷", "热水器不出热水"))
    w.revisit_sent(first)
    w.clock.advance(minutes=5)
    w.revisit_sent(second)
    # When the customer replies in the thread the notifier started for the first
    # (References: <complaint.<number>@...>, services/notifier/transports.py)
    accepted = w.receive(Channel.email, _mail("5 谢谢", thread=first))
    # Then it is satisfaction on that complaint, the quoted revisit left out of the comment
    (event,) = w.of_type(CaseEvent)
    assert (accepted.kind, accepted.complaint_id) == ("case_event", first)
    assert (event.data.action, event.data.score, event.data.note) == ("satisfaction", 5, "谢谢")
    assert w.replies("satisfaction", "email") == 1


def test_an_email_reply_finds_a_complaint_keyed_on_the_customers_phone() -> None:
    # Given a complaint with both a phone and an e-mail (its customer key is the phone's),
    # revisited (by e-mail: the notifier writes to the e-mail first)
    w = World()
    complaint = w.receive(Channel.web_form, {"description": "空调不制冷", "phone": PHONE,
                                             "email": EMAIL}).complaint_id
    w.revisit_sent(complaint)
    # When the customer answers from the e-mail address, outside any thread
    accepted = w.receive(Channel.email, _mail("非常满意"))
    # Then it answers that complaint's revisit
    (event,) = w.of_type(CaseEvent)
    assert (accepted.complaint_id, event.data.score) == (complaint, 5)


def test_without_an_index_every_message_is_registered_as_before() -> None:
    w = World()
    w.intake.revisits = None
    w.revisit_sent(w.complaint())
    assert w.sms("4").kind == "registered"


def test_the_window_is_policy() -> None:
    # Given a policy whose reply window is a day
    w = World()
    policy = load_policy()
    w.intake.policy = policy.model_copy(update={
        "intake": policy.intake.model_copy(update={"reply_window": timedelta(days=1)})})
    complaint = w.complaint()
    w.revisit_sent(complaint)
    w.clock.advance(days=2)
    # Then a score two days later is no answer
    assert w.sms("4").kind == "registered"
