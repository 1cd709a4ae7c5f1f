"""What every channel adapter produces: the channel-neutral facts of one message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Model
from schemas.events import Demand, Evidence, Nature

Scalar = str | int | float | bool


class ChannelMessage(Model):
    """One channel message, parsed but not yet normalised (intake-internal, never on Kafka).

    Adapters fill what their format carries; ``services.intake.logic.normalise``
    cleans it (E.164 phones, validated e-mails, UTC times, NFC text) and turns
    it into the canonical ``Complaint``.
    """

    text: str = Field(min_length=1, max_length=100_000)
    subject: str | None = Field(default=None, max_length=2000)
    message_id: str | None = Field(default=None, max_length=300, description="The channel's own id.")
    occurred_at: AwareDatetime | None = None
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=60)
    email: str | None = Field(default=None, max_length=320)
    account: str | None = Field(default=None, max_length=200, description="Channel account / user id.")
    first_contact: str | None = Field(default=None, max_length=200)
    language: Literal["zh", "en"] | None = None
    nature: Nature | None = None
    product: str | None = Field(default=None, max_length=300)
    order_id: str | None = Field(default=None, max_length=200)
    store_id: str | None = Field(default=None, max_length=200)
    purchase_time: AwareDatetime | None = None
    demand: Demand | None = None
    evidence: list[Evidence] = Field(default_factory=list, max_length=100)
    details: dict[str, Scalar] = Field(default_factory=dict)
    complaint_ref: str | None = Field(default=None, max_length=100,
                                      description="survey_reply: the complaint answered.")
    score: int | None = Field(default=None, ge=1, le=5, description="survey_reply: satisfaction.")


Payload = dict[str, Any] | str
"""A payload as received: a JSON object, or text (raw e-mail, XML, SMS body)."""

Parser = Callable[[Payload], ChannelMessage]
"""An adapter: raises pydantic.ValidationError or Rejected for unusable input, nothing else."""


def as_object(payload: Payload, channel: str) -> dict[str, Any]:
    """The payload as a JSON object, or Rejected naming the channel's expectation."""
    from services.common.errors import Rejected

    if not isinstance(payload, dict):
        raise Rejected(f"payload: the {channel} channel expects a JSON object")
    return payload


def aware(value: datetime | None) -> datetime | None:
    """Keep only timezone-aware times (naive ones are ambiguous)."""
    return value if value is None or value.tzinfo is not None else None
