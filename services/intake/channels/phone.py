"""`phone`: a call-centre record.

    {"call_id": "C-20261123-0042", "caller": "+86 138 0013 8000", "name": "...",
     "agent_id": "agent-007", "desk": "hotline-sh", "transcript": "...", "notes": "...",
     "recording_url": "https://...", "started_at": "2026-11-23T09:30:00+08:00",
     "language": "zh", "product": "...", "order_id": "...", "demand": "refund"}

The agent (or else the desk) that took the call is the first contact.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas.events import Evidence
from services.intake.channels._json import Purchase
from services.intake.channels.base import ChannelMessage, Payload, as_object


class PhoneCall(Purchase):
    call_id: str | None = Field(default=None, max_length=200)
    caller: str | None = Field(default=None, max_length=60)
    name: str | None = Field(default=None, max_length=200)
    agent_id: str | None = Field(default=None, max_length=200)
    desk: str | None = Field(default=None, max_length=200)
    transcript: str | None = Field(default=None, max_length=100_000)
    notes: str | None = Field(default=None, max_length=20_000)
    recording_url: str | None = Field(default=None, max_length=2000)
    started_at: AwareDatetime | None = None
    language: Literal["zh", "en"] | None = None

    @model_validator(mode="after")
    def _has_text(self) -> PhoneCall:
        if not (self.transcript or self.notes):
            raise ValueError("a call needs a transcript or notes")
        return self


def parse(payload: Payload) -> ChannelMessage:
    """Parse a call-centre record."""
    call = PhoneCall.model_validate(as_object(payload, "phone"))
    text = "\n\n".join(t for t in (call.notes, call.transcript) if t)
    return ChannelMessage(
        text=text, message_id=call.call_id, occurred_at=call.started_at, name=call.name,
        phone=call.caller, first_contact=call.agent_id or call.desk, language=call.language,
        product=call.product, order_id=call.order_id, purchase_time=call.purchase_time,
        demand=call.demand,
        evidence=[Evidence(name="call recording", media_type="audio/*", url=call.recording_url)]
        if call.recording_url else [], details=call.signals(),
    )
