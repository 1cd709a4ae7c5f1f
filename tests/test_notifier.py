"""Notifier rules (pure) and its handler over fakes: what is sent, once, in which language."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from schemas.events import (
    CaseEvent,
    CaseUpdate,
    Channel,
    Complaint,
    ComplaintRegistered,
    Contact,
    NotificationKind,
)
from services.common.errors import Retry
from services.common.policy import load_policy
from services.notifier import logic
from services.notifier.app import Notifier
from services.notifier.metrics import NotifierMetrics
from tests.fakes import CountingTransport, DictCustomers, FixedClock, RecordingPublisher, SetSentLog

POLICY = load_policy()
T0 = datetime(2026, 11, 23, 9, tzinfo=UTC)


@pytest.mark.parametrize(("address", "masked"), [
    ("wang.fang@example.com", "w***@example.com"),
    ("+8613800138000", "+86*******8000"),
    ("12345", "***"),
])
def test_mask(address: str, masked: str) -> None:
    assert logic.mask(address) == masked


@pytest.mark.parametrize(("contact", "transport", "needle"), [
    (Contact(email="a@b.cn", language="zh"), "email", "投诉编号 C-1"),
    (Contact(phone="+8613800138000", language="en"), "sms", "complaint number is C-1"),
    (Contact(language="en"), "none", "C-1"),
])
def test_acknowledgement_is_rendered_in_the_customer_language(contact: Contact, transport: str,
                                                              needle: str) -> None:
    note = logic.render(NotificationKind.acknowledgement, contact, complaint_id="C-1",
                        templates=POLICY.notifier)
    assert note.transport == transport and needle in note.body
    assert note.notification_id == logic.render(NotificationKind.acknowledgement, contact,
                                                complaint_id="C-1", templates=POLICY.notifier).notification_id


def _notifier() -> tuple[Notifier, CountingTransport, RecordingPublisher]:
    transport, publisher = CountingTransport(), RecordingPublisher()
    notifier = Notifier(policy=POLICY, publisher=publisher, customers=DictCustomers(),
                        sent=SetSentLog(), transport=transport, clock=FixedClock(T0),
                        metrics=NotifierMetrics.create(CollectorRegistry()))
    return notifier, transport, publisher


def _registered() -> ComplaintRegistered:
    complaint = Complaint(
        complaint_id="C-1", channel=Channel.sms, received_at=T0, source_message_id="m",
        customer=Contact(phone="+8613800138000", language="zh"), customer_key="k",
        first_contact="sms-desk", subject="s", description="d")
    return ComplaintRegistered.new(complaint, source="intake", time=T0, subject="C-1")


def test_a_redelivered_registration_sends_one_acknowledgement() -> None:
    # Given a notifier over fakes
    notifier, transport, publisher = _notifier()
    raw = _registered().to_bytes()
    # When the registration is delivered twice
    asyncio.run(notifier.on_registered(None, raw))
    asyncio.run(notifier.on_registered(None, raw))
    # Then the transport saw it once, and both records carry the same event id
    assert len(transport.sent) == 1 and transport.sent[0].transport == "sms"
    assert len({e.id for e in publisher.of_type("notification.recorded")}) == 1
    assert "13800138000" not in publisher.published[0][1].to_bytes().decode()


def test_the_result_goes_to_the_registered_customer() -> None:
    notifier, transport, _ = _notifier()
    registered = _registered()
    resolved = CaseEvent.new(CaseUpdate(complaint_id="C-1", action="resolved", actor="a",
                                        result="已退款"), source="intake", time=T0, subject="C-1")
    asyncio.run(notifier.on_registered(None, registered.to_bytes()))
    asyncio.run(notifier.on_case_event(None, resolved.to_bytes()))
    assert [n.kind for n in transport.sent] == [NotificationKind.acknowledgement, NotificationKind.result]
    assert "已退款" in transport.sent[1].body


def test_a_result_before_its_registration_is_retried_not_dropped() -> None:
    notifier, transport, _ = _notifier()
    resolved = CaseEvent.new(CaseUpdate(complaint_id="C-9", action="resolved", actor="a", result="ok"),
                             source="intake", time=T0, subject="C-9")
    with pytest.raises(Retry):
        asyncio.run(notifier.on_case_event(None, resolved.to_bytes()))
    assert transport.sent == []
