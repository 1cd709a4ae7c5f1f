"""`store`: a counter entry made by staff in a store (门店现场).

    {"entry_id": "SH01-0042", "store_id": "store-sh-01", "staff_id": "staff-12",
     "name": "...", "phone": "...", "description": "...", "product": "...", "order_id": "...",
     "purchase_time": "...", "demand": "repair", "entered_at": "2026-11-23T09:30:00+08:00"}

The staff member who took it (or else the store) is the first contact.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from services.intake.channels._json import Attachment, Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class StoreEntry(Purchase):
    entry_id: str | None = Field(default=None, max_length=200)
    store_id: str = Field(min_length=1, max_length=200)
    staff_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=60)
    email: str | None = Field(default=None, max_length=320)
    description: str = Field(min_length=1, max_length=100_000)
    entered_at: AwareDatetime | None = None
    language: Literal["zh", "en"] | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)


def parse(payload: Payload) -> ChannelMessage:
    """Parse a store counter entry."""
    e = StoreEntry.model_validate(as_object(payload, "store"))
    return ChannelMessage(
        text=e.description, message_id=f"{e.store_id}:{e.entry_id}" if e.entry_id else None,
        occurred_at=e.entered_at, name=e.name, phone=e.phone, email=e.email,
        first_contact=e.staff_id or e.store_id, store_id=e.store_id, language=e.language,
        product=e.product, order_id=e.order_id, purchase_time=e.purchase_time, demand=e.demand,
        evidence=[a.evidence() for a in e.attachments], details=e.signals(),
    )
