"""The router's waiting queues as a service: offer the oldest waiting case, refresh the gauges.

A case that found nobody on duty with room waits in its department's queue at its level
(``services.router.waiting``). ``freed`` offers the oldest case of a handler's queue to
that handler when they give up a case (resolved, closed, moved away); ``sweep``, on the
router's queue timer, offers every non-empty queue to its on-duty handlers, which is how a
handler who comes on shift gets the cases that waited for them. Each offer is one atomic
step in Redis (``Cases.offer``: the revision check and the handler's capacity checked and
booked in one script), so router instances may sweep at the same time and never book a case
twice or a handler beyond capacity.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime

from schemas.envelope import derived_id
from schemas.events import ComplaintRouted, Level
from services.common.policy import QueuePolicy
from services.router import waiting
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, Clock
from services.router.roster import Roster

log = logging.getLogger(__name__)
SERVICE = "router"
MAX_OFFERS = 200  # per queue and call: a sweep comes back for the rest


def epoch_ms(at: datetime) -> int:
    """Milliseconds since the epoch: the queues' scores."""
    return int(at.timestamp() * 1000)


class Queues:
    """Offers waiting cases to handlers with room, and exports the queues' gauges."""

    def __init__(self, *, cases: Cases, roster: Roster, limits: QueuePolicy, clock: Clock,
                 metrics: RouterMetrics, hold: Callable[[str], AbstractAsyncContextManager[None]],
                 publish: Callable[[bytes, bool], Awaitable[None]]) -> None:
        self.cases, self.roster, self.limits, self.clock = cases, roster, limits, clock
        self.metrics, self._hold, self._publish = metrics, hold, publish
        self.names = [waiting.queue_of(d, lv) for d in roster.departments for lv in Level]

    async def freed(self, handler: str) -> None:
        """``handler`` gave up a case: offer them the oldest case of their queue, if on duty."""
        now = self.clock()
        for dept, handlers in self.roster.departments.items():
            for h in handlers:
                if h.id == handler and h in self.roster.on_duty(dept, h.level, now):
                    await self.offer(waiting.queue_of(dept, h.level), [(h.id, h.capacity)])
                    return

    async def sweep(self) -> int:
        """Offer every non-empty queue to its on-duty handlers; the number of cases booked."""
        now, booked = self.clock(), 0
        stats = await self.cases.queues(self.names)
        for dept in self.roster.departments:
            for level in Level:
                queue = waiting.queue_of(dept, level)
                if not stats.get(queue, (0, None))[0]:
                    continue
                on_duty = self.roster.on_duty(dept, level, now)
                if on_duty:
                    booked += await self.offer(queue, [(h.id, h.capacity) for h in on_duty])
        return booked

    async def offer(self, queue: str, candidates: list[tuple[str, int]]) -> int:
        """Offer the oldest cases of ``queue`` to ``candidates`` until none has room; how many booked."""
        booked = 0
        for _ in range(MAX_OFFERS):
            head = await self.cases.waiting(queue, limit=1)
            if not head:
                break
            status = await self._offer_one(head[0][0], queue, head[0][1], candidates)
            if status == "full":
                break
            booked += status == "committed"
        return booked

    async def _offer_one(self, cid: str, queue: str, since: int,
                         candidates: list[tuple[str, int]]) -> str:
        async with self._hold(cid):
            read = await self.cases.read(cid, [])
            now = self.clock()
            template, trigger = "", ""
            if read.current is not None:
                current = ComplaintRouted.model_validate_json(read.current)
                decision = waiting.offered(current.data, waited=now - datetime.fromtimestamp(
                    since / 1000, tz=now.tzinfo))
                event = ComplaintRouted.new(decision, id=derived_id("routed", current.id),
                                            source=SERVICE, time=now, subject=cid, cause=current)
                template, trigger = event.model_dump_json(), current.id
            commit = await self.cases.offer(cid, queue=queue, expected=read.revision,
                                            template=template, trigger=trigger,
                                            candidates=candidates,
                                            assigned_reason=waiting.OFFER_REASON)
            if commit.event is not None:
                await self._publish(commit.event, commit.status == "duplicate")
        if commit.status == "committed":
            self.metrics.offered.labels(waiting.department_of(queue)).inc()
        log.debug("offer complaint=%s queue=%s status=%s handler=%s", cid, queue, commit.status,
                  commit.handler)
        return commit.status

    async def refresh(self) -> None:
        """Set the queue gauges: cases waiting, the oldest's wait, the policy limit."""
        stats = await self.cases.queues(self.names)
        departments = list(self.roster.departments)
        limits = {d: self.limits.limit(d) for d in departments}
        for dept, g in waiting.gauges(stats, departments=departments, limits=limits,
                                      now=epoch_ms(self.clock())).items():
            self.metrics.queue_waiting.labels(dept).set(g.waiting)
            self.metrics.queue_oldest.labels(dept).set(g.oldest_seconds)
            self.metrics.queue_limit.labels(dept).set(g.limit_seconds)
