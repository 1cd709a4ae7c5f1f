"""The envelope every message on every topic travels in.

Attribute names follow CloudEvents 1.0 where they fit (``id``, ``type``,
``source``, ``time``, ``subject``, ``specversion``); the project's own
attributes use CloudEvents extension spelling (lower-case, no separators):
``schemaversion``, ``correlationid``, ``causationid``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Deterministic event ids: the same cause always yields the same id, so a
# redelivered input produces an event that every consumer recognises.
EVENT_NAMESPACE = uuid.UUID("6f1c1f4e-2b8e-4f57-9a55-3c1d2b7a9e10")


def derived_id(*parts: str) -> str:
    """Return a deterministic event id for the given causal parts."""
    return str(uuid.uuid5(EVENT_NAMESPACE, "|".join(parts)))


class Model(BaseModel):
    """Base for message bodies: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(Model):
    """Common attributes of every event; subclasses fix ``type`` and ``data``."""

    EVENT_TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1

    specversion: str = "1.0"
    id: str = Field(description="Event id; deterministic for derived events.")
    type: str = Field(description="Event type, e.g. complaint.registered.")
    schemaversion: int = Field(ge=1, description="Version of this event's schema.")
    source: str = Field(description="Producing service, e.g. intake.")
    time: AwareDatetime = Field(description="When the event happened.")
    subject: str | None = Field(
        default=None, description="Complaint id; absent only before registration."
    )
    correlationid: str = Field(description="Id shared by every event of one complaint's loop.")
    causationid: str | None = Field(default=None, description="Id of the event that caused this.")
    data: Any

    @classmethod
    def new(
        cls,
        data: Any,
        *,
        source: str,
        time: datetime,
        subject: str | None,
        cause: Envelope | None = None,
        id: str | None = None,
        correlationid: str | None = None,
        causationid: str | None = None,
    ) -> Self:
        """Build an event; with ``cause`` it inherits the correlation id."""
        event_id = id or str(uuid.uuid4())
        if time.tzinfo is None:
            raise ValueError("event time must be timezone-aware")
        return cls(
            id=event_id,
            type=cls.EVENT_TYPE,
            schemaversion=cls.SCHEMA_VERSION,
            source=source,
            time=time.astimezone(UTC),
            subject=subject,
            correlationid=correlationid or (cause.correlationid if cause else event_id),
            causationid=causationid or (cause.id if cause else None),
            data=data,
        )

    def key(self) -> bytes | None:
        """Kafka key: the complaint id once one exists."""
        return self.subject.encode() if self.subject else None

    def to_bytes(self) -> bytes:
        """Serialise as JSON bytes."""
        return self.model_dump_json().encode()
