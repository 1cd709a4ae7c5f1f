"""What the SLA monitor needs from outside: a store of facts, alert claims and the schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.common.ports import Clock, Publisher, RebuildableStore
from services.sla_monitor.logic import Fact, Plan

__all__ = ["Clock", "Publisher", "Snapshot", "Store"]


@dataclass(frozen=True)
class Snapshot:
    """What the store holds of one complaint."""

    complaint_id: str
    version: str
    plan: Plan | None
    facts: list[Fact]
    sent: frozenset[str]


class Store(RebuildableStore, Protocol):
    """Facts per complaint plus a schedule of when each next owes an alert.

    Every operation is atomic, so several monitor instances share one store: an alert
    is published by the instance that claims it, a due complaint is handed to one
    instance until its lease ends. See ``services.sla_monitor.adapters.RedisFacts``.
    """

    async def record(self, complaint_id: str, facts: list[Fact], plan: Plan | None) -> Snapshot: ...

    async def snapshot(self, complaint_id: str) -> Snapshot: ...

    async def claim_alerts(self, complaint_id: str, event_ids: list[str], *, token: str,
                           lease: float) -> dict[str, str]: ...

    async def mark_sent(self, complaint_id: str, event_ids: list[str]) -> None: ...

    async def schedule(self, snap: Snapshot, *, next_due: float | None, deadline: float | None) -> bool: ...

    async def due_now(self, complaint_id: str, now: float) -> None: ...

    async def claim_due(self, now: float, *, limit: int, lease: float) -> list[str]: ...

    async def open_count(self) -> int: ...

    async def earliest_deadline(self) -> float | None: ...

    async def restore(self, complaint_id: str, facts: list[Fact], plan: Plan | None,
                      sent: list[str]) -> Snapshot: ...
