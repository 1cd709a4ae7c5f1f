"""`letter`: a postal letter or fax, entered by the staff who opened it.

    {"reference": "L-2026-118", "medium": "postal", "received_by": "mailroom-bj",
     "sender_name": "...", "phone": "...", "email": "...", "subject": "...", "text": "...",
     "received_at": "2026-11-23T09:30:00+08:00",
     "scans": [{"name": "letter.pdf", "media_type": "application/pdf", "sha256": "..."}]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from services.intake.channels._json import Attachment, Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class Letter(Purchase):
    reference: str | None = Field(default=None, max_length=200)
    medium: Literal["postal", "fax"] = "postal"
    received_by: str | None = Field(default=None, max_length=200)
    sender_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=60)
    email: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=2000)
    text: str = Field(min_length=1, max_length=100_000)
    received_at: AwareDatetime | None = None
    scans: list[Attachment] = Field(default_factory=list, max_length=50)


def parse(payload: Payload) -> ChannelMessage:
    """Parse a letter or fax entry."""
    r = Letter.model_validate(as_object(payload, "letter"))
    return ChannelMessage(
        text=r.text, subject=r.subject, message_id=f"{r.medium}:{r.reference}" if r.reference else None,
        occurred_at=r.received_at, name=r.sender_name, phone=r.phone, email=r.email,
        first_contact=r.received_by, product=r.product, order_id=r.order_id,
        purchase_time=r.purchase_time, demand=r.demand, evidence=[s.evidence() for s in r.scans],
        details={"medium": r.medium, **r.signals()},
    )
