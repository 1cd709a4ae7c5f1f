"""What the router needs from outside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from schemas.envelope import Model
from services.common.ports import Clock, Publisher
from services.router.logic import BookingMode

__all__ = ["BookingMode", "CaseRead", "Cases", "Commit", "Clock", "FirstContacts", "Publisher",
           "PriorComplaint"]


Status = Literal["committed", "duplicate", "conflict", "full", "gone"]  # full, gone: offers only


@dataclass(frozen=True)
class CaseRead:
    """A case's routing state as a decision starts from it."""

    revision: int
    current: bytes | None  # the last decision event
    applied: bytes | None  # the event an already-applied trigger produced


@dataclass(frozen=True)
class Commit:
    """What committing a proposed decision did."""

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
    """Routing state per case and handler loads; see ``services.router.adapters.RedisCases``.

    A case holds its revision (0 before its first decision), its last decision event,
    the handler whose load it holds, and the event each applied trigger key produced.
    ``commit`` and ``release`` are atomic and apply the booking rule of
    ``services.router.logic`` (``book``, ``fill``, ``release``).
    """

    async def read(self, complaint_id: str, triggers: list[str]) -> CaseRead:
        """The revision, the last decision, and the event the first applied trigger produced.

        A release marks its trigger too, but is no decision: it does not count as applied here.
        """
        ...

    async def commit(self, complaint_id: str, *, expected: int, template: str, triggers: list[str],
                     booking: BookingMode, candidates: list[tuple[str, int]],
                     assigned_reason: str, unassigned_reason: str, queue: str, now: int) -> Commit:
        """Store the decision ``template`` filled by the booking, as revision ``expected`` + 1.

        "duplicate" (with that trigger's stored value) when a trigger key was applied,
        "conflict" when the revision is not ``expected``; else "committed" with the event
        and the handler the case holds afterwards. A booking that finds nobody with room
        leaves the case waiting in ``queue`` since ``now`` (epoch ms; a case already
        waiting keeps its start), any other booking takes it out (``waiting.waits``).
        """
        ...

    async def offer(self, complaint_id: str, *, queue: str, expected: int, template: str,
                    trigger: str, candidates: list[tuple[str, int]], assigned_reason: str) -> Commit:
        """Book a case waiting in ``queue`` to the least-loaded candidate with room (``waiting.offer``).

        "duplicate" when ``trigger`` was applied, "gone" (its queue entry dropped) when the
        case no longer waits there, "conflict" when the revision is not ``expected``, "full"
        when no candidate has room (nothing changes); else "committed", the case out of the queue.
        """
        ...

    async def waiting(self, queue: str, *, limit: int) -> list[tuple[str, int]]:
        """The oldest ``limit`` cases waiting in ``queue``, oldest first: (id, since in epoch ms)."""
        ...

    async def queues(self, queues: list[str]) -> dict[str, tuple[int, int | None]]:
        """Per queue: how many cases wait, and the oldest's wait start (None when empty)."""
        ...

    async def release(self, complaint_id: str, trigger: str) -> tuple[str, str | None]:
        """Give up the case's handler load once per ``trigger``: (status, handler released).

        Status "released", "duplicate" (the trigger was applied) or "unknown" (no case).
        A released case no longer waits in any queue.
        """
        ...

    async def loads(self) -> dict[str, int]:
        """Open cases per handler (handlers with none are absent)."""
        ...
