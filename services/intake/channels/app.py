"""`app`: in-app feedback.

    {"feedback_id": "fb-123", "user_id": "u-42", "app_version": "5.2.1", "device": "iPhone 15",
     "os": "iOS 18.1", "text": "...", "email": "...", "phone": "...", "category": "...",
     "created_at": "2026-11-23T09:30:00+08:00",
     "screenshots": [{"name": "s1.png", "media_type": "image/png", "url": "https://..."}]}
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from services.intake.channels._json import Attachment, Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class AppFeedback(Purchase):
    feedback_id: str | None = Field(default=None, max_length=200)
    user_id: str | None = Field(default=None, max_length=200)
    app_version: str | None = Field(default=None, max_length=50)
    device: str | None = Field(default=None, max_length=200)
    os: str | None = Field(default=None, max_length=100)
    text: str = Field(min_length=1, max_length=100_000)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=60)
    created_at: AwareDatetime | None = None
    screenshots: list[Attachment] = Field(default_factory=list, max_length=50)


def parse(payload: Payload) -> ChannelMessage:
    """Parse in-app feedback."""
    fb = AppFeedback.model_validate(as_object(payload, "app"))
    details = {k: v for k, v in (("app_version", fb.app_version), ("device", fb.device),
                                 ("os", fb.os)) if v}
    return ChannelMessage(
        text=fb.text, message_id=fb.feedback_id, occurred_at=fb.created_at, account=fb.user_id,
        email=fb.email, phone=fb.phone, product=fb.product, order_id=fb.order_id,
        purchase_time=fb.purchase_time, demand=fb.demand,
        evidence=[s.evidence() for s in fb.screenshots], details={**details, **fb.signals()},
    )
