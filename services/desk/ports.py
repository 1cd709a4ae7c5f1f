"""What the desk needs from outside: the archive to read, a publisher, the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from schemas.events import Contact
from services.common.policy import StaffPolicy
from services.common.ports import Clock, Publisher
from services.desk.auth import Identity
from services.desk.queries import Search

__all__ = ["CaseRecord", "CaseReader", "Clock", "Contacts", "Publisher"]


@dataclass(frozen=True)
class CaseRecord:
    """One archived case: its row, its events in trail order, its SLA rows."""

    row: dict[str, Any]
    timeline: list[dict[str, Any]]
    deadlines: list[dict[str, Any]]


class CaseReader(Protocol):
    """Read-only access to the archive (``adapters.ArchiveReader`` over its database).

    Lists return ``limit + 1`` rows from ``offset`` in a total order, filtered to what the
    person may read. An unreachable database raises ``ConnectionError``.
    """

    async def work_list(self, kind: str, who: Identity, staff: StaffPolicy, *, now: datetime,
                        limit: int, offset: int, department: str | None) -> list[dict[str, Any]]:
        """One work list: mine, department, review, unassigned, overdue."""
        ...

    async def search(self, filters: Search, who: Identity, staff: StaffPolicy, *, limit: int,
                     offset: int) -> list[dict[str, Any]]:
        """Cases matching every filter."""
        ...

    async def case(self, complaint_id: str) -> CaseRecord | None:
        """The case, or None when the archive does not hold it."""
        ...

    async def event(self, complaint_id: str, event_id: str) -> dict[str, Any] | None:
        """One archived event of the case, or None."""
        ...

    async def count_actions(self, complaint_id: str, action: str, actors: list[str]) -> int:
        """Archived case events of this action by these actors."""
        ...

    async def ping(self) -> None:
        """Raise unless the database answers."""
        ...


class Contacts(Protocol):
    """A case's sealed contact and the customer's data keys (``adapters.SealedContacts``)."""

    async def contact(self, complaint_id: str) -> Contact | None:
        """The contact as registered (sealed), or None when it is no longer kept."""
        ...

    async def open(self, contact: Contact) -> Contact:
        """The contact in clear; ``services.common.sealing.Erased`` when the customer was erased."""
        ...
