"""A customer's sealed address in the notifier (pure): rendered sealed, recorded masked, opened only
for the transport; an erased customer's message fails for good with the reason "erased"."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from schemas.events import Contact, NotificationKind
from services.common import sealing
from services.common.policy import load_policy
from services.notifier import logic
from services.notifier.messages import Notification, record, render
from services.notifier.opening import OpeningTransport
from services.notifier.transports import PermanentDelivery

NOW = datetime(2026, 12, 1, 9, tzinfo=UTC)
EMAIL, PHONE = "li.lei@example.com", "+8613800138000"


class Keys:
    def __init__(self, deks: dict[tuple[str, str], bytes]) -> None:
        self.deks = deks

    async def data_key(self, subject: str, kid: str) -> bytes | None:
        return self.deks.get((subject, kid))


class Recording:
    name = "smtp"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        self.sent.append(notification)


def sealed_contact() -> tuple[Contact, Keys]:
    m = sealing.MasterKeys.parse(sealing.generate_master_keys("k1"))
    rec, dek = sealing.new_data_key(m, "cust-1", now=NOW)
    contact = sealing.seal_contact(Contact(name="Li Lei", phone=PHONE, email=EMAIL, language="en"),
                                   subject="cust-1", kid=rec.kid, dek=dek)
    return contact, Keys({("cust-1", rec.kid): dek})


def test_a_sealed_contacts_notification_carries_no_address_and_is_recorded_masked() -> None:
    contact, _ = sealed_contact()
    note = render(NotificationKind.acknowledgement, contact, complaint_id="C1",
                  templates=load_policy().notifier)
    assert note.transport == "email" and note.address == "customer:cust-1"
    assert EMAIL not in note.model_dump_json() and "li.lei" not in note.model_dump_json()
    assert note.sealed_address is not None and note.sealed_address.masked == "l***@example.com"
    event = record(note.notification_id, "C1", note.kind, "smtp", "queued", now=NOW, cause=None, note=note)
    assert event.data.recipient == "l***@example.com"
    # the per-recipient limit counts by the customer, never by a clear address
    assert logic.recipient_key(note.address) == logic.recipient_key("customer:cust-1")


def test_the_transport_gets_the_opened_address_and_an_erased_customer_fails_for_good() -> None:
    contact, keys = sealed_contact()
    note = render(NotificationKind.acknowledgement, contact, complaint_id="C1",
                  templates=load_policy().notifier)
    inner = Recording()
    asyncio.run(OpeningTransport(inner, keys).send(note))
    assert [(n.address, n.sealed_address) for n in inner.sent] == [(EMAIL, None)]
    # When the customer's key is erased, Then the send fails permanently, reason "erased"
    keys.deks.clear()
    with pytest.raises(PermanentDelivery, match=r"^erased: "):
        asyncio.run(OpeningTransport(inner, keys).send(note))
    assert len(inner.sent) == 1
    # And an old event's clear contact is sent as before
    clear = render(NotificationKind.acknowledgement, Contact(phone=PHONE), complaint_id="C2",
                   templates=load_policy().notifier)
    asyncio.run(OpeningTransport(inner, keys).send(clear))
    assert inner.sent[-1].address == PHONE and clear.transport == "sms"
