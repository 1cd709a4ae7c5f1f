"""Fakes of intake's ports: message claims and timelines in dicts."""

from __future__ import annotations

from datetime import datetime, timedelta

from services.intake.ports import Registrations, Revisits, Timelines


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


class DictRevisits:
    """Open revisits in a dict of dicts: customer key -> complaint id -> sent at (kept, like the
    Redis sorted set, for ``ttl`` after the customer's newest one)."""

    def __init__(self, *, ttl: timedelta = timedelta(days=7)) -> None:
        self.open_: dict[str, dict[str, datetime]] = {}
        self.ttl = ttl

    async def open(self, entries: list[tuple[str, str, datetime]]) -> None:
        for customer_key, complaint_id, sent_at in entries:
            mine = self.open_.setdefault(customer_key, {})
            mine[complaint_id] = sent_at
            for old in [c for c, at in mine.items() if at < sent_at - self.ttl]:
                del mine[old]

    async def close(self, entries: list[tuple[str, str]]) -> None:
        for customer_key, complaint_id in entries:
            self.open_.get(customer_key, {}).pop(complaint_id, None)

    async def of_customers(self, customer_keys: list[str], *, since: datetime,
                           ) -> list[list[tuple[str, datetime]]]:
        return [sorted(((c, at) for c, at in self.open_.get(k, {}).items() if at >= since),
                       key=lambda e: (e[1], e[0])) for k in customer_keys]


_registrations: Registrations = DictRegistrations()
_timelines: Timelines = DictTimelines()
_revisits: Revisits = DictRevisits()
