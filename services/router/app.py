"""Router wiring: the Router (decisions over three inputs), its faust agents, /metrics.

Inputs and what they cause:

- ``complaints.registered``  the first decision: code, severity, level, owner, handler
- ``complaints.lifecycle``   ``reclassified`` re-routes; a dissatisfied ``satisfaction`` and
                             ``reopened`` escalate; ``resolved`` and ``closed`` release the
                             handler's load
- ``complaints.sla``         a ``breached`` milestone escalates

Every decision goes to ``complaints.routed`` keyed by complaint id, numbered by revision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope, derived_id
from schemas.events import (
    CaseAction,
    CaseEvent,
    ComplaintRegistered,
    ComplaintRouted,
    RoutingDecision,
    SlaEvent,
    SlaOutcome,
)
from schemas.topics import LIFECYCLE, REGISTERED, ROUTED, SLA
from services.common.errors import Retry
from services.common.policy import Policy
from services.common.runtime import Boundary, FaustPublisher, add_web, make_app, redis_client
from services.router import logic
from services.router.adapters import RedisCases, RedisFirstContacts
from services.router.logic import Plan
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, Clock, Commit, FirstContacts, PriorComplaint, Publisher
from services.router.roster import Roster, load_roster
from services.router.settings import RouterSettings
from services.router.taxonomy import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)
SERVICE = "router"
ANONYMOUS = "anonymous"  # intake's customer key when a message names nobody
MAX_CONFLICTS = 20


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
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
    def __init__(self, *, policy: Policy, taxonomy: Taxonomy, roster: Roster, publisher: Publisher,
                 first_contacts: FirstContacts, cases: Cases, clock: Clock,
                 metrics: RouterMetrics) -> None:
        self.policy, self.taxonomy, self.roster = policy, taxonomy, roster
        self.publisher, self.first_contacts, self.cases = publisher, first_contacts, cases
        self.clock, self.metrics = clock, metrics
        self._locks = KeyedLocks()

    # ---- inputs -------------------------------------------------------------------

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Route one registered complaint; the decision's id derives from the registration's."""
        registered = ComplaintRegistered.model_validate_json(value)
        complaint = registered.data
        rules = self.policy.router

        async def plan(current: RoutingDecision | None) -> Plan | None:
            if current is not None:  # routed already (state rebuilt, or a second registration)
                self.metrics.ignored.labels("already_routed").inc()
                return None
            prior = None
            if complaint.customer_key != ANONYMOUS:
                prior = await self.first_contacts.claim(
                    complaint.customer_key,
                    PriorComplaint(complaint_id=complaint.complaint_id, owner=complaint.first_contact),
                    window_seconds=int(rules.repeat_window.total_seconds()))
            return logic.first_route(complaint, rules=rules, taxonomy=self.taxonomy, prior=prior)

        await self._decide(complaint.complaint_id, [registered.id], plan, cause=registered)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Re-route on reclassification, escalate on dissatisfaction or reopen, release on resolution."""
        event = CaseEvent.model_validate_json(value)
        update, rules = event.data, self.policy.router
        cid = update.complaint_id
        if update.action in (CaseAction.resolved, CaseAction.closed):
            async with self._locks.hold(cid):
                status, handler = await self.cases.release(cid, event.id)
            if status == "released":
                self.metrics.released.inc()
            log.debug("release complaint=%s status=%s handler=%s", cid, status, handler)
            return
        if update.action is CaseAction.reclassified and update.code is not None:
            code = update.code

            async def reclassify(current: RoutingDecision | None) -> Plan | None:
                return None if current is None else logic.reclassify(
                    current, code=code, actor=update.actor, taxonomy=self.taxonomy)

            await self._decide(cid, [event.id], reclassify, cause=event)
            return
        if update.action is CaseAction.satisfaction and update.score is not None \
                and update.score <= rules.dissatisfied_at_most:
            why = f"customer dissatisfied (score {update.score} of 5)"
            await self._escalate(cid, [event.id], "dissatisfied", why, cause=event)
            return
        if update.action is CaseAction.reopened:
            # a reopen caused by a dissatisfied answer is the same trigger: escalate once
            triggers = [event.id, *([event.causationid] if event.causationid else [])]
            await self._escalate(cid, triggers, "reopened", f"case reopened by {update.actor}",
                                 cause=event)
            return
        self.metrics.ignored.labels(f"action_{update.action.value}").inc()

    async def on_sla(self, key: bytes | None, value: bytes) -> None:
        """Escalate on a breached milestone (once per milestone and deadline)."""
        event = SlaEvent.model_validate_json(value)
        alert = event.data
        if alert.outcome is not SlaOutcome.breached:
            self.metrics.ignored.labels(f"sla_{alert.outcome.value}").inc()
            return
        if alert.milestone not in self.policy.router.escalate_on_breach:
            self.metrics.ignored.labels("sla_breach_not_escalating").inc()
            return
        # one breach per milestone and cycle (a reopen's new resolve cycle may breach again)
        triggers = [event.id, f"sla:{alert.milestone.value}:{alert.cycle}"]
        due = alert.due_at or alert.deadline
        why = f"{alert.milestone.value} deadline{f' {due.isoformat()}' if due else ''} breached"
        await self._escalate(alert.complaint_id, triggers, f"sla_breach:{alert.milestone.value}",
                             why, cause=event)

    # ---- deciding -----------------------------------------------------------------

    async def _escalate(self, cid: str, triggers: list[str], trigger: str, why: str, *,
                        cause: Envelope) -> None:
        rules = self.policy.router

        async def plan(current: RoutingDecision | None) -> Plan | None:
            return None if current is None else logic.escalate(current, trigger=trigger, why=why,
                                                              rules=rules)

        await self._decide(cid, triggers, plan, cause=cause)

    async def _decide(self, cid: str, triggers: list[str],
                      plan_for: Callable[[RoutingDecision | None], Awaitable[Plan | None]], *,
                      cause: Envelope) -> None:
        """Plan, commit atomically (book, release, store) and publish one decision.

        Per complaint, decisions are serialised in this process by a lock and across
        processes by the revision check of the commit; a conflict recomputes the plan
        from the newer state. A trigger already applied republishes its stored event,
        so a redelivery or a repeated trigger changes nothing.
        """
        async with self._locks.hold(cid):
            for _ in range(MAX_CONFLICTS):
                read = await self.cases.read(cid, triggers)
                if read.applied is not None:
                    await self._publish_stored(read.applied, duplicate=True)
                    return
                current = ComplaintRouted.model_validate_json(read.current).data if read.current else None
                planned = await plan_for(current)
                if planned is None:
                    if current is None:
                        self.metrics.ignored.labels("unknown_case").inc()
                        log.warning("no routing state for complaint=%s; trigger ignored", cid)
                    return
                commit = await self._commit(cid, read.revision, triggers, planned, cause)
                if commit.status == "conflict":
                    self.metrics.conflicts.inc()
                    continue
                assert commit.event is not None
                await self._publish_stored(commit.event, duplicate=commit.status == "duplicate")
                return
            raise Retry(f"complaint {cid}: {MAX_CONFLICTS} conflicting decisions in a row")

    async def _commit(self, cid: str, revision: int, triggers: list[str], plan: Plan,
                      cause: Envelope) -> Commit:
        now = self.clock()
        event = ComplaintRouted.new(plan.decision, id=derived_id("routed", triggers[0]),
                                    source=SERVICE, time=now, subject=cid, cause=cause)
        candidates: list[tuple[str, int]] = []
        assigned = unassigned = ""
        if plan.booking is not None:
            dept, level = plan.booking.department, plan.booking.level.value
            on_duty = self.roster.on_duty(plan.booking.department, plan.booking.level, now)
            candidates = [(h.id, h.capacity) for h in on_duty]
            assigned = (f"handler %s: least loaded (%d open) of {len(on_duty)} on-duty {level} "
                        f"handlers of {dept}")
            unassigned = (f"handler: none on duty with capacity at {level} in {dept}; "
                          f"waiting in the {dept} queue")
        return await self.cases.commit(
            cid, expected=revision, template=event.model_dump_json(), triggers=triggers,
            booking=("none" if plan.booking is None else "keep" if plan.booking.keep else "book"),
            candidates=candidates, assigned_reason=assigned,
            unassigned_reason=unassigned)

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


def load_rules(settings: RouterSettings, policy: Policy) -> tuple[Taxonomy, Roster]:
    """The taxonomy and the roster; every department a code or the review queue names is staffed."""
    taxonomy = load_taxonomy(settings.taxonomy_file)
    departments = {t.department for t in taxonomy.types} | {policy.router.review_department}
    return taxonomy, load_roster(settings.roster_file, departments=departments)


def build(settings: RouterSettings, policy: Policy, *, publisher: Publisher | None = None,
          clock: Clock | None = None, registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the router: agents over registered, lifecycle and sla; /metrics, /healthz."""
    taxonomy, roster = load_rules(settings, policy)
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    publisher = publisher or FaustPublisher(app)
    router = Router(
        policy=policy, taxonomy=taxonomy, roster=roster, publisher=publisher,
        first_contacts=RedisFirstContacts(redis, prefix=settings.redis_prefix),
        cases=RedisCases(redis, prefix=settings.redis_prefix,
                         ttl_seconds=settings.case_ttl_days * 86400),
        clock=clock or (lambda: datetime.now(UTC)), metrics=RouterMetrics.create(registry))
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry)

    n = settings.agent_concurrency
    boundary.subscribe(app, "registered", router.on_registered, REGISTERED, concurrency=n)
    boundary.subscribe(app, "lifecycle", router.on_case_event, LIFECYCLE, concurrency=n)
    boundary.subscribe(app, "sla", router.on_sla, SLA, concurrency=n)

    @app.timer(interval=settings.load_interval)  # type: ignore[untyped-decorator]
    async def loads() -> None:
        await boundary.guard("loads", router.refresh_loads)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app
