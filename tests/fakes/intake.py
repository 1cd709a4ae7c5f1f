"""Fakes of intake's ports: message claims and timelines in dicts."""

from __future__ import annotations

from services.intake.ports import Registrations, Timelines


class DictRegistrations:
    """Message claims in a dict (the first claim of a key wins)."""

    def __init__(self) -> None:
        self.claims: dict[str, bytes] = {}

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        if dedupe_key in self.claims:
            return self.claims[dedupe_key]
        self.claims[dedupe_key] = registered_event
        return None

    async def claim_many(self, claims: list[tuple[str, bytes]]) -> list[bytes | None]:
        return [await self.claim(k, v) for k, v in claims]


class DictTimelines:
    """Timelines in dicts, each event kept once by id."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, bytes]] = {}

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None:
        self.events.setdefault(complaint_id, {}).setdefault(event_id, event)

    async def add_many(self, entries: list[tuple[str, str, bytes]]) -> None:
        for complaint_id, event_id, event in entries:
            await self.add(complaint_id, event_id, event)

    async def get(self, complaint_id: str) -> list[bytes]:
        return list(self.events.get(complaint_id, {}).values())


_registrations: Registrations = DictRegistrations()
_timelines: Timelines = DictTimelines()
