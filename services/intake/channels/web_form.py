"""`web_form`: the website's complaint form.

    {"form_id": "F-881", "name": "...", "phone": "...", "email": "...", "subject": "...",
     "description": "...", "order_id": "...", "product": "...", "demand": "replacement",
     "purchase_time": "2026-11-01T10:00:00+08:00", "consent": true,
     "submitted_at": "2026-11-23T09:30:00+08:00", "language": "en",
     "attachments": [{"name": "photo.jpg", "media_type": "image/jpeg", "size": 20431,
                      "sha256": "...", "url": "https://..."}]}
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from services.intake.channels._json import Attachment, Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class WebForm(Purchase):
    form_id: str | None = Field(default=None, max_length=200)
    message_id: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=60)
    email: str | None = Field(default=None, max_length=320)
    subject: str | None = Field(default=None, max_length=2000)
    description: str = Field(min_length=1, max_length=100_000)
    consent: bool = True
    submitted_at: AwareDatetime | None = None
    language: Literal["zh", "en"] | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=50)


def parse(payload: Payload) -> ChannelMessage:
    """Parse a web form submission."""
    form = WebForm.model_validate(as_object(payload, "web_form"))
    return ChannelMessage(
        text=form.description, subject=form.subject, message_id=form.form_id or form.message_id,
        occurred_at=form.submitted_at, name=form.name, phone=form.phone, email=form.email,
        language=form.language, product=form.product, order_id=form.order_id,
        purchase_time=form.purchase_time, demand=form.demand,
        evidence=[a.evidence() for a in form.attachments],
        details={**form.signals(), **({} if form.consent else {"contact_consent": False})},
    )
