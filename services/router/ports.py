"""What the router needs from outside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from schemas.envelope import Model
from services.common.ports import Clock, Publisher

__all__ = ["CaseRead", "Cases", "Commit", "Clock", "FirstContacts", "Publisher", "PriorComplaint"]


Status = Literal["committed", "duplicate", "conflict"]


@dataclass(frozen=True)
class CaseRead:
    revision: int
    current: bytes | None  # the last decision event
    applied: bytes | None  # the event an already-applied trigger produced


@dataclass(frozen=True)
class Commit:
    status: Status
    event: bytes | None   # committed or duplicate: the stored event
    handler: str | None   # committed: the handler the case now holds


class PriorComplaint(Model):
    """A customer's earlier complaint and who owns it."""

    complaint_id: str
    owner: str


class FirstContacts(Protocol):
    """Remembers each customer's anchor complaint for a window (首接负责制).

    ``claim`` is atomic: of two router instances routing the same customer's
    complaints at once, one becomes the anchor and the other sees it.
    """

    async def claim(self, customer_key: str, prior: PriorComplaint, *,
                    window_seconds: int) -> PriorComplaint | None:
        """Make ``prior`` the anchor if the customer has none; else return the anchor."""
        ...


class Cases(Protocol):
    """Routing state per case and handler loads; see ``services.router.adapters.RedisCases``."""

    async def read(self, complaint_id: str, triggers: list[str]) -> CaseRead: ...

    async def commit(self, complaint_id: str, *, expected: int, template: str, triggers: list[str],
                     booking: Literal["book", "keep", "none"], candidates: list[tuple[str, int]],
                     assigned_reason: str, unassigned_reason: str) -> Commit: ...

    async def release(self, complaint_id: str, trigger: str) -> tuple[str, str | None]: ...

    async def loads(self) -> dict[str, int]: ...
