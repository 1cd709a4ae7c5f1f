"""What intake needs from outside besides publishing."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Registrations(Protocol):
    """Remembers which channel message became which registered event."""

    async def claim(self, dedupe_key: str, registered_event: bytes) -> bytes | None:
        """Store the event for the key if new and return None; else return the stored event."""
        ...

    async def claim_many(self, claims: list[tuple[str, bytes]]) -> list[bytes | None]:
        """``claim`` for many keys at once, in order (a key repeated in one call claims once)."""
        ...

    async def reserve_numbers(self, numbers: list[str]) -> list[bool]:
        """Reserve complaint numbers, in order: True for each one nobody drew before (within the
        reservation time), False for a collision (the caller draws another; a number repeated in
        one call is reserved once)."""
        ...

    async def first_use(self, key: str, ttl_seconds: int) -> bool:
        """True the first time a signed request's nonce key is seen within ``ttl_seconds``, False
        for a replay (services.intake.auth.Nonces)."""
        ...


class Timelines(Protocol):
    """Each complaint's events, de-duplicated by event id (a rebuildable projection)."""

    async def add(self, complaint_id: str, event_id: str, event: bytes) -> None: ...

    async def add_many(self, entries: list[tuple[str, str, bytes]]) -> None:
        """``add`` for many (complaint id, event id, event) entries at once."""
        ...

    async def get(self, complaint_id: str) -> list[bytes]: ...


class Revisits(Protocol):
    """Which complaints of a customer have a revisit (回访) sent and not answered yet: a small
    index, by customer key, that a reply (an SMS "4") is matched against. Derived from the
    complaint topics (intake's timeline projection), so it may be rebuilt from them."""

    async def open(self, entries: list[tuple[str, str, datetime]]) -> None:
        """Record (customer key, complaint id, revisit sent at): the complaint awaits an answer
        (a later time for the same complaint replaces the earlier one)."""
        ...

    async def close(self, entries: list[tuple[str, str]]) -> None:
        """Forget (customer key, complaint id): answered, reopened, or never open."""
        ...

    async def of_customers(self, customer_keys: list[str], *, since: datetime,
                           ) -> list[list[tuple[str, datetime]]]:
        """Per customer key, in order: the (complaint id, sent at) open since ``since``."""
        ...
