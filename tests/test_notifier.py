"""Notifier rules (pure): masking, rendering in the customer's language, stable ids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.events import Contact, NotificationKind
from services.common.policy import load_policy
from services.notifier import logic

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
