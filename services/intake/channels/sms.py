"""`sms`: a text message: the body as plain text, or an SMS-gateway JSON object.

    {"message_id": "SM-1", "sender": "+8613800138000", "text": "...",
     "received_at": "2026-11-23T09:30:00+08:00"}
"""

from __future__ import annotations

from pydantic import AwareDatetime, Field

from services.intake.channels._json import JsonPayload
from services.intake.channels.base import ChannelMessage, Payload


class Sms(JsonPayload):
    message_id: str | None = Field(default=None, max_length=200)
    sender: str | None = Field(default=None, max_length=60)
    text: str = Field(min_length=1, max_length=10_000)
    received_at: AwareDatetime | None = None


def parse(payload: Payload) -> ChannelMessage:
    """Parse an SMS."""
    sms = Sms(text=payload) if isinstance(payload, str) else Sms.model_validate(payload)
    return ChannelMessage(text=sms.text, message_id=sms.message_id, phone=sms.sender,
                          occurred_at=sms.received_at)
