"""What intake needs from outside besides publishing."""

from __future__ import annotations

from typing import Protocol


class Registrations(Protocol):
    """Remembers which channel message became which registered event."""

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        """Store the event for the key if new and return None; else return the stored event."""
        ...


class Timelines(Protocol):
    """Each complaint's events, de-duplicated by event id (a rebuildable projection)."""

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None: ...

    async def get(self, complaint_id: str) -> list[bytes]: ...
