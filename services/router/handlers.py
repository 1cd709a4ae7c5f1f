"""The router's service layer: parse an input, ask the rules, commit in Redis, publish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    ANONYMOUS_CUSTOMER,
    CaseEvent,
    ComplaintRegistered,
    ComplaintRouted,
    RoutingDecision,
    SlaEvent,
)
from schemas.topics import ROUTED
from services.common.errors import Retry
from services.common.policy import Policy
from services.router import casework, logic, waiting
from services.router.logic import Escalate, Ignore, Proposal, Reclassify, Release
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, Clock, Commit, FirstContacts, PriorComplaint, Publisher
from services.router.queueing import Queues, epoch_ms
from services.router.roster import Roster
from services.router.taxonomy import Taxonomy
from services.router.textmodel import SeverityModel, TextModel

log = logging.getLogger(__name__)
SERVICE = "router"
MAX_CONFLICTS = 20

Propose = Callable[[RoutingDecision | None], Awaitable[Proposal | None]]
"""Given the case's current decision (None before the first), the next one, or None."""


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the body of the ``async with``."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Router:
    """Decides who handles each complaint, at which level, and when it climbs.

    Consumes ``complaints.registered`` (the first decision: code, severity, level,
    first-contact owner, handler), ``complaints.lifecycle`` (``reclassified`` re-routes;
    a dissatisfied ``satisfaction`` and ``reopened`` escalate; ``resolved`` and
    ``closed`` release the handler's load) and ``complaints.sla`` (a breach of a
    milestone in ``escalate_on_breach`` escalates). What an input causes is decided by
    ``services.router.logic``; this class reads the case, commits the proposed decision
    with its booking atomically through ``Cases`` and publishes it to
    ``complaints.routed``, keyed by complaint id and numbered by revision.

    A case that finds nobody on duty with room waits in its department's queue; a handler
    who gives up a case is offered the oldest waiting one (``queues``, which the queue timer
    also sweeps for handlers who came on shift).

    Idempotent: every decision is stored under its trigger keys (the input's event id,
    and for a breach its milestone and cycle, for a reopen the answer that caused it),
    and a trigger already applied republishes the stored event under the same id. A
    release is applied once per event id.
    """

    def __init__(self, *, policy: Policy, taxonomy: Taxonomy, roster: Roster, publisher: Publisher,
                 first_contacts: FirstContacts, cases: Cases, clock: Clock,
                 metrics: RouterMetrics, model: TextModel | None = None,
                 severity_model: SeverityModel | None = None) -> None:
        self.policy, self.taxonomy, self.roster, self.model = policy, taxonomy, roster, model
        self.severity_model = severity_model
        self.publisher, self.first_contacts, self.cases = publisher, first_contacts, cases
        self.clock, self.metrics = clock, metrics
        self._locks = KeyedLocks()
        self.queues = Queues(cases=cases, roster=roster, limits=policy.queue, clock=clock,
                             metrics=metrics, hold=self._locks.hold, publish=self._publish_queued)

    # ---- inputs -------------------------------------------------------------------

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Route one registered complaint; the decision's id derives from the registration's."""
        registered = ComplaintRegistered.model_validate_json(value)
        complaint = registered.data
        rules = self.policy.router

        async def propose(current: RoutingDecision | None) -> Proposal | None:
            if current is not None:  # routed already (state rebuilt, or a second registration)
                self.metrics.ignored.labels("already_routed").inc()
                return None
            prior = None
            if complaint.customer_key != ANONYMOUS_CUSTOMER:
                prior = await self.first_contacts.claim(
                    complaint.customer_key,
                    PriorComplaint(complaint_id=complaint.complaint_id, owner=complaint.first_contact),
                    window_seconds=int(rules.repeat_window.total_seconds()))
            return logic.first_route(complaint, rules=rules, taxonomy=self.taxonomy, prior=prior,
                                     model=self.model, severity_model=self.severity_model)

        await self._decide(complaint.complaint_id, [registered.id], propose, cause=registered)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Re-book on assignment, re-route on reclassification, escalate on dissatisfaction, release."""
        event = CaseEvent.model_validate_json(value)
        cid = event.data.complaint_id
        work = casework.work_effect(event)
        if work is not None:
            async def assign(current: RoutingDecision | None) -> Proposal | None:
                return None if current is None else casework.propose(current, work, roster=self.roster)

            await self._decide(cid, list(work.triggers), assign, cause=event)
            return
        match logic.case_effect(event, satisfaction=self.policy.satisfaction):
            case Release(trigger):
                await self._release(cid, trigger)
            case Reclassify(triggers, code, actor):
                async def reclassify(current: RoutingDecision | None) -> Proposal | None:
                    return None if current is None else logic.reclassify(
                        current, code=code, actor=actor, taxonomy=self.taxonomy)

                await self._decide(cid, list(triggers), reclassify, cause=event)
            case Escalate() as escalation:
                await self._escalate(cid, escalation, cause=event)
            case Ignore(reason):
                self.metrics.ignored.labels(reason).inc()

    async def on_sla(self, key: bytes | None, value: bytes) -> None:
        """Escalate on a breached milestone (once per milestone and cycle)."""
        event = SlaEvent.model_validate_json(value)
        match logic.sla_effect(event, rules=self.policy.router):
            case Escalate() as escalation:
                await self._escalate(event.data.complaint_id, escalation, cause=event)
            case Ignore(reason):
                self.metrics.ignored.labels(reason).inc()

    # ---- deciding -----------------------------------------------------------------

    async def _release(self, cid: str, trigger: str) -> None:
        async with self._locks.hold(cid):
            status, handler = await self.cases.release(cid, trigger)
        if status == "released":
            self.metrics.released.inc()
        log.debug("release complaint=%s status=%s handler=%s", cid, status, handler)
        if handler is not None:
            await self.queues.freed(handler)

    async def _escalate(self, cid: str, escalation: Escalate, *, cause: Envelope) -> None:
        rules = self.policy.router

        async def escalate(current: RoutingDecision | None) -> Proposal | None:
            return None if current is None else logic.escalate(
                current, trigger=escalation.trigger, why=escalation.why, rules=rules)

        await self._decide(cid, list(escalation.triggers), escalate, cause=cause)

    async def _decide(self, cid: str, triggers: list[str], propose: Propose, *,
                      cause: Envelope) -> None:
        """Propose, commit atomically (book, release, store) and publish one decision.

        Per complaint, decisions are serialised in this process by a lock and across
        processes by the revision check of the commit; a conflict recomputes the proposal
        from the newer state. A trigger already applied republishes its stored event,
        so a redelivery or a repeated trigger changes nothing. A handler the decision took
        the case from is offered the oldest case waiting in their queue.
        """
        freed = None
        async with self._locks.hold(cid):
            for _ in range(MAX_CONFLICTS):
                read = await self.cases.read(cid, triggers)
                if read.applied is not None:
                    await self._publish_stored(read.applied, duplicate=True)
                    return
                current = ComplaintRouted.model_validate_json(read.current).data if read.current else None
                proposal = await propose(current)
                if proposal is None:
                    if current is None:
                        self.metrics.ignored.labels("unknown_case").inc()
                        log.warning("no routing state for complaint=%s; trigger ignored", cid)
                    return
                commit = await self._commit(cid, read.revision, triggers, proposal, cause)
                if commit.status == "conflict":
                    self.metrics.conflicts.inc()
                    continue
                assert commit.event is not None
                await self._publish_stored(commit.event, duplicate=commit.status == "duplicate")
                if (commit.status == "committed" and current is not None and current.handler
                        and proposal.booking is not None and commit.handler != current.handler):
                    freed = current.handler
                break
            else:
                raise Retry(f"complaint {cid}: {MAX_CONFLICTS} conflicting decisions in a row")
        if freed is not None:
            await self.queues.freed(freed)

    async def _commit(self, cid: str, revision: int, triggers: list[str], proposal: Proposal,
                      cause: Envelope) -> Commit:
        now = self.clock()
        event = ComplaintRouted.new(proposal.decision, id=derived_id("routed", triggers[0]),
                                    source=SERVICE, time=now, subject=cid, cause=cause)
        candidates: list[tuple[str, int]] = []
        assigned = unassigned = queue = ""
        booking = proposal.booking
        if booking is not None:
            queue = waiting.queue_of(booking.department, booking.level)
        if booking is not None and booking.handler is not None:
            candidates = [(booking.handler, 0)]  # named by staff: booked whatever the load
            assigned = "handler %s: named by staff (%d open before)"
        elif booking is not None:
            dept, level = booking.department, booking.level.value
            on_duty = self.roster.on_duty(booking.department, booking.level, now)
            candidates = [(h.id, h.capacity) for h in on_duty]
            assigned = (f"handler %s: least loaded (%d open) of {len(on_duty)} on-duty {level} "
                        f"handlers of {dept}")
            unassigned = (f"handler: none on duty with capacity at {level} in {dept}; "
                          f"waiting in the {dept} queue")
        return await self.cases.commit(
            cid, expected=revision, template=event.model_dump_json(), triggers=triggers,
            booking=logic.booking_mode(booking), candidates=candidates,
            assigned_reason=assigned, unassigned_reason=unassigned, queue=queue, now=epoch_ms(now))

    async def _publish_queued(self, stored: bytes, duplicate: bool) -> None:
        await self._publish_stored(stored, duplicate=duplicate)

    async def _publish_stored(self, stored: bytes, *, duplicate: bool) -> None:
        event = ComplaintRouted.model_validate_json(stored)
        d = event.data
        await self.publisher.publish(ROUTED, event)
        if duplicate:
            self.metrics.duplicates.labels(d.trigger or "registered").inc()
            return
        self.metrics.decisions.labels(d.decision.value, d.severity.value, d.level.value,
                                      d.department).inc()
        if d.decision.value == "routed":
            self.metrics.codes.labels(d.code or "none").inc()
            self.metrics.confidence.observe(d.confidence)
            if d.review:
                self.metrics.review.inc()
        if d.handler is None and d.nature.value != "praise" and d.decision.value != "at_ceiling":
            self.metrics.unassigned.labels(d.department, d.level.value).inc()
        log.debug("decision complaint=%s rev=%d kind=%s level=%s department=%s handler=%s",
                  d.complaint_id, d.revision, d.decision.value, d.level.value, d.department,
                  d.handler)

    async def refresh_loads(self) -> None:
        """Set the per-handler open-case gauge from Redis."""
        loads = await self.cases.loads()
        for dept, handlers in self.roster.departments.items():
            for h in handlers:
                self.metrics.load.labels(dept, h.level.value, h.id).set(loads.get(h.id, 0))
