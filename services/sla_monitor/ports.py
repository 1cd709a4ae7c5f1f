"""What the SLA monitor needs from outside: a store of facts, alert claims and the schedule."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.common.ports import Clock, Publisher, RebuildableStore
from services.sla_monitor.facts import Fact, Terms

__all__ = ["Clock", "Publisher", "Snapshot", "Store", "TopicReader"]

TopicReader = Callable[[str], list[dict[str, object]]]
"""Reads a whole topic by name, from the beginning: its events as JSON objects (for rebuilds)."""


@dataclass(frozen=True)
class Snapshot:
    """What the store holds of one complaint."""

    complaint_id: str
    version: str
    terms: Terms | None
    facts: list[Fact]
    sent: frozenset[str]


class Store(RebuildableStore, Protocol):
    """Facts per complaint plus a schedule of when each next owes an alert.

    Every operation is atomic, so several monitor instances share one store: an alert
    is published by the instance that claims it, a due complaint is handed to one
    instance until its lease ends. See ``services.sla_monitor.adapters.RedisFacts``.
    """

    async def record(self, complaint_id: str, facts: list[Fact], terms: Terms | None) -> Snapshot:
        """Add facts and terms not yet held (first one per id wins); the version counts additions."""
        ...

    async def snapshot(self, complaint_id: str) -> Snapshot:
        """Everything held of the complaint (version "0", nothing else, when unknown)."""
        ...

    async def claim_alerts(self, complaint_id: str, event_ids: list[str], *, token: str,
                           lease: float) -> dict[str, str]:
        """Per alert: "mine" (publish it), "sent" (done) or "busy" (another token's live claim)."""
        ...

    async def mark_sent(self, complaint_id: str, event_ids: list[str]) -> None:
        """Mark alerts published: every later claim answers "sent"."""
        ...

    async def schedule(self, snap: Snapshot, *, next_due: float | None, deadline: float | None) -> bool:
        """Set the next due time and running deadline, releasing the complaint's claim, unless
        facts were added since ``snap`` (then False, nothing changed)."""
        ...

    async def due_now(self, complaint_id: str, now: float) -> None:
        """Have the next scan evaluate the complaint (an earlier due time is kept)."""
        ...

    async def claim_due(self, now: float, *, limit: int, lease: float) -> list[str]:
        """Up to ``limit`` complaints due by ``now``, expired claims first, each leased until
        ``now + lease``."""
        ...

    async def open_count(self) -> int:
        """How many complaints have a running deadline."""
        ...

    async def earliest_deadline(self) -> float | None:
        """The earliest running deadline (epoch seconds), if any."""
        ...

    async def restore(self, complaint_id: str, facts: list[Fact], terms: Terms | None,
                      sent: list[str]) -> Snapshot:
        """Rebuild: record facts and terms, mark the sent alerts."""
        ...
