"""The waiting queues, pure: who waits where, the offer of the oldest case, the queue gauges.

A case whose booking found nobody on duty with room waits in the queue of its department
and level (``queue_of``), ordered by when it started waiting. It leaves the queue when it
is booked (an offer, an escalation, a reclassification, an assignment or transfer) or
released (resolved, closed). When a handler frees capacity or comes on shift, the oldest
case of their department's queue at their level is *offered*: booked to them as a routing
decision of kind ``assigned`` with trigger ``queue``, so the SLA monitor and the notifier
see the new handler as they do for a staff assignment.

``waits`` and ``offer`` state what the Redis scripts of ``services.router.adapters`` do
(the commit and release scripts keep the queue, the offer script books from it);
tests/test_contract_router.py checks that they agree. The module is separate from
``logic`` only to keep modules small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from schemas.events import DecisionKind, Level, RoutingDecision
from services.router.logic import HANDLER, HANDLER_REASON, Booked, BookingMode, Seat, book

TRIGGER = "queue"
"""The trigger of an offered decision (kind ``assigned``)."""


@dataclass(frozen=True)
class Waiting:
    """Where a case waits and since when (epoch milliseconds)."""

    queue: str
    since: int


def queue_of(department: str, level: Level) -> str:
    """The queue of a department at a level, e.g. ``quality:L1``."""
    return f"{department}:{level.value}"


def department_of(queue: str) -> str:
    """The department a queue belongs to."""
    return queue.rpartition(":")[0]


def waits(seat: Seat, *, queued: Waiting | None, queue: str, now: int) -> Waiting | None:
    """Where the case waits after a commit whose booking had ``seat``, into ``queue`` at ``now``.

    Untouched: as before. Nobody with room: in ``queue``, since it first started waiting
    (a waiting case that escalates or moves keeps its place in time). Booked or kept: nowhere.
    """
    if seat is Seat.untouched:
        return queued
    if seat is Seat.unassigned:
        return Waiting(queue, queued.since if queued else now)
    return None


OfferStatus = Literal["booked", "gone", "full"]


def offer(*, queued: Waiting | None, queue: str, candidates: Sequence[tuple[str, int]],
          loads: Mapping[str, int]) -> tuple[OfferStatus, Booked | None]:
    """The offer rule: a case still waiting in ``queue`` goes to the least-loaded candidate with room.

    "gone" when the case no longer waits there (the queue entry is dropped), "full" when no
    candidate has room (the case keeps waiting), else "booked" with the booking's outcome.
    """
    if queued is None or queued.queue != queue:
        return "gone", None
    booked = book(BookingMode.book, held=None, candidates=candidates, loads=loads)
    if booked.seat is Seat.unassigned:
        return "full", None
    return "booked", booked


def offered(current: RoutingDecision, *, waited: timedelta) -> RoutingDecision:
    """The decision an offer makes of a waiting case's current one; the handler is a token."""
    minutes = max(0, int(waited.total_seconds() // 60))
    reasons = [f"offered from the {current.department} {current.level.value} queue after "
               f"waiting {minutes} min", HANDLER_REASON]
    return current.model_copy(update={
        "decision": DecisionKind.assigned, "revision": current.revision + 1, "trigger": TRIGGER,
        "handler": HANDLER, "notify": [], "reasons": reasons})


OFFER_REASON = "handler %s: on duty with room (%d open before), took the oldest waiting case"
"""The assigned reason of an offer (%s handler id, %d load)."""


@dataclass(frozen=True)
class QueueGauge:
    """One department's queue figures: cases waiting, the oldest's wait, the policy limit."""

    waiting: int
    oldest_seconds: float
    limit_seconds: float


def gauges(stats: Mapping[str, tuple[int, int | None]], *, departments: Sequence[str],
           limits: Mapping[str, timedelta], now: int) -> dict[str, QueueGauge]:
    """Per department, over its levels' queues (``stats``: queue -> (count, oldest since ms))."""
    out = {}
    for dept in departments:
        rows = [v for q, v in stats.items() if department_of(q) == dept]
        oldest = [now - since for _, since in rows if since is not None]
        out[dept] = QueueGauge(sum(n for n, _ in rows), max(0, max(oldest, default=0)) / 1000,
                               limits[dept].total_seconds())
    return out
