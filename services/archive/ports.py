"""What the archive needs from outside: a case archive (the database) and the clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.archive.records import ArchivedEvent, CaseRow
from services.common.ports import Clock, Publisher

__all__ = ["Appended", "CaseArchive", "Clock", "Publisher"]


@dataclass(frozen=True)
class Appended:
    """What one ``append`` changed: the events new to the archive and the complaints refolded."""

    new_events: frozenset[str]
    complaints: int
    # how the touched case rows were folded: advanced from the row (in order), from the
    # whole trail (an event arrived out of order), or from the batch alone (a new case)
    folds: tuple[tuple[str, int], ...] = ()


class CaseArchive(Protocol):
    """Every complaint's audit trail and the rows folded from it, in one database.

    ``append`` is the write path: in one transaction (per 1,000 complaints of a larger
    batch; each complaint's events in one) it inserts the events not archived yet
    (idempotent on the event id) and, for every complaint that got a new event, reads the
    complaint's whole trail back, folds it (``services.archive.logic.fold``) and upserts the
    case, SLA and notification rows. Appending the same events again changes nothing, and
    the rows do not depend on the order in which the events came. Appends for the same
    complaint from several instances at once are serialised by the database, so none is lost.
    An unreachable or busy database raises ``ConnectionError`` (the boundary retries).
    See ``services.archive.adapters.SqlArchive``.
    """

    async def append(self, events: Sequence[ArchivedEvent], *, now: datetime) -> Appended:
        """Archive the events and refold the complaints they add to (``now``: the write time)."""
        ...

    async def trail(self, complaint_id: str) -> list[ArchivedEvent]:
        """The complaint's archived events in trail order (empty when unknown)."""
        ...

    async def case(self, complaint_id: str) -> CaseRow | None:
        """The complaint's case row, if archived."""
        ...

    async def purge(self, *, closed_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` cases closed before ``closed_before`` with all their rows and
        events; return how many cases went."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers."""
        ...
