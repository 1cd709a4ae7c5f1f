"""`partner`: a report by internal staff or a partner (referrals, regulators' transfers ...).

    {"reference": "REF-77", "reporter": "partner-acme", "customer_name": "...", "phone": "...",
     "email": "...", "subject": "...", "description": "...", "product": "...", "order_id": "...",
     "reported_at": "2026-11-23T09:30:00+08:00"}

The reporter is the first contact.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from services.intake.channels._json import Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class PartnerReport(Purchase):
    reference: str | None = Field(default=None, max_length=200)
    reporter: str = Field(min_length=1, max_length=200)
    customer_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=60)
    email: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=2000)
    description: str = Field(min_length=1, max_length=100_000)
    reported_at: AwareDatetime | None = None
    language: Literal["zh", "en"] | None = None


def parse(payload: Payload) -> ChannelMessage:
    """Parse a staff or partner report."""
    r = PartnerReport.model_validate(as_object(payload, "partner"))
    return ChannelMessage(
        text=r.description, subject=r.subject,
        message_id=f"{r.reporter}:{r.reference}" if r.reference else None,
        occurred_at=r.reported_at, name=r.customer_name, phone=r.phone, email=r.email,
        first_contact=r.reporter, language=r.language, product=r.product, order_id=r.order_id,
        purchase_time=r.purchase_time, demand=r.demand, details=r.signals(),
    )
