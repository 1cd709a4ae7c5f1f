"""Ports every service uses: publishing events and reading the clock."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from schemas.envelope import Envelope
from schemas.topics import TopicSpec

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware (UTC)."""


class Publisher(Protocol):
    """Publishes an event to a topic and returns once the broker has it.

    Keyed by the event's complaint id. Publishing the same event twice is
    allowed (at-least-once); consumers de-duplicate on the event id.
    """

    async def publish(self, topic: TopicSpec, event: Envelope) -> None: ...

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        """Publish several events, sent together, returning once the broker has all."""
        ...


class RebuildableStore(Protocol):
    """Derived state that knows when it was lost and lets one instance rebuild it."""

    async def whole(self) -> bool: ...

    async def mark_whole(self) -> None: ...

    async def lock_rebuild(self, token: str, seconds: float) -> bool: ...

    async def renew_rebuild(self, token: str, seconds: float) -> bool: ...

    async def unlock_rebuild(self, token: str) -> None: ...
