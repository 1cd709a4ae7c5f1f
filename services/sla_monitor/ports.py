"""What the SLA monitor needs from outside: a store of clocks and due deadlines."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from schemas.events import Milestone, SlaOutcome
from services.common.ports import Clock, Publisher
from services.sla_monitor.logic import ClockState, MilestoneClock

__all__ = ["Clock", "Clocks", "Publisher"]


class Clocks(Protocol):
    """Clock state per (complaint, milestone) plus a schedule of deadlines.

    Every operation is atomic, so several monitor instances can share one
    store: a due deadline is handed to exactly one claimer until its lease ends.
    """

    async def start(self, clock: MilestoneClock) -> ClockState:
        """Record the clock unless one exists; schedule it unless already stopped."""
        ...

    async def stop(self, complaint_id: str, milestone: Milestone, at: datetime) -> ClockState:
        """Record the first stop time and unschedule the deadline."""
        ...

    async def claim_due(self, now: datetime, *, limit: int, lease: float) -> list[ClockState]:
        """Take up to ``limit`` deadlines due at ``now`` (and expired leases of others)."""
        ...

    async def mark_sent(self, complaint_id: str, milestone: Milestone, outcome: SlaOutcome) -> None:
        """Record that the alert was published; a claimed deadline is then done."""
        ...

    async def release(self, complaint_id: str, milestone: Milestone) -> None:
        """Give up a claimed deadline that owed nothing (it was met meanwhile)."""
        ...

    async def open_count(self) -> int:
        """Number of scheduled deadlines."""
        ...
