"""Fakes of intake's ports: message claims and timelines in dicts."""

from __future__ import annotations

from services.intake.ports import Registrations, Timelines


class DictRegistrations:
    """Message claims in a dict (the first claim of a key wins)."""

    def __init__(self) -> None:
        self.claims: dict[str, bytes] = {}
        self.numbers: set[str] = set()  # reserved complaint numbers (no expiry: tests are short)
        self.nonces: set[str] = set()  # signed requests' nonce keys seen

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        if dedupe_key in self.claims:
            return self.claims[dedupe_key]
        self.claims[dedupe_key] = registered_event
        return None

    async def claim_many(self, claims: list[tuple[str, bytes]]) -> list[bytes | None]:
        return [await self.claim(k, v) for k, v in claims]

    async def reserve_numbers(self, numbers: list[str]) -> list[bool]:
        fresh = []
        for number in numbers:
            fresh.append(number not in self.numbers)
            self.numbers.add(number)
        return fresh

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        if key in self.nonces:
            return False
        self.nonces.add(key)
        return True


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
