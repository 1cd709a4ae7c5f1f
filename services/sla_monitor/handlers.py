"""The SLA monitor's service class: record facts, evaluate clocks, publish alerts, rebuild."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

from schemas.events import CaseEvent, ComplaintRouted, NotificationEvent, SlaEvent, SlaOutcome
from schemas.topics import LIFECYCLE, NOTIFICATIONS, ROUTED, SLA
from services.common.policy import Policy
from services.common.redis_store import rebuild_once
from services.sla_monitor import logic
from services.sla_monitor.facts import Fact, Terms, facts_of, terms_for
from services.sla_monitor.logic import Calendars
from services.sla_monitor.metrics import SlaMetrics
from services.sla_monitor.ports import Clock, Publisher, Snapshot, Store, TopicReader
from services.sla_monitor.settings import SlaMonitorSettings

log = logging.getLogger(__name__)
SERVICE = "sla-monitor"


class Monitor:
    """Keeps every complaint's SLA clocks and publishes the alerts they owe, each once.

    Every input event (routing decision, case action, notification) is recorded in the
    ``Store`` as facts of its complaint, idempotently; the complaint's first routing
    decision also freezes its ``Terms``. The clocks are folded from the facts (``logic``)
    and the alerts owed are published to complaints.sla under deterministic ids, each
    claimed atomically so that several instances share the work. ``scan`` (on a timer)
    claims complaints whose next warning or deadline has come.

    If the store lost its keys (the epoch marker is gone), ``ensure_whole`` rebuilds it
    from the topics (``logic.restore_from_topics``; one instance at a time) and nothing
    is emitted until it is whole again, so no alert goes out twice from partial facts.
    """

    def __init__(self, *, settings: SlaMonitorSettings, policy: Policy, publisher: Publisher,
                 store: Store, clock: Clock, metrics: SlaMetrics, calendars: Calendars,
                 read: TopicReader | None = None) -> None:
        self.settings, self.policy, self.publisher = settings, policy, publisher
        self.store, self.now, self.metrics, self.calendars = store, clock, metrics, calendars
        self.read = read
        self.token = uuid.uuid4().hex[:12]  # this instance, in alert claims
        # Known whole after the first scan finds the epoch marker; until then (and while
        # a rebuild runs) facts are recorded but nothing is emitted from partial facts.
        self.whole = False

    # ---- inputs -------------------------------------------------------------------

    async def on_routed(self, key: bytes | None, value: bytes) -> None:
        """Record a routing decision's facts (and, for the first one, the complaint's terms)."""
        event = ComplaintRouted.model_validate_json(value)
        terms = terms_for(event, policy=self.policy.sla, version=self.policy.version,
                          scale=self.settings.sla_scale)
        await self._record(event.data.complaint_id, facts_of(event), terms)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Record a case action as a fact."""
        event = CaseEvent.model_validate_json(value)
        await self._record(event.data.complaint_id, facts_of(event), None)

    async def on_notification(self, key: bytes | None, value: bytes) -> None:
        """Record a sent notification as a fact (others raise no signal)."""
        event = NotificationEvent.model_validate_json(value)
        facts = facts_of(event)
        if facts:
            await self._record(event.data.complaint_id, facts, None)

    async def _record(self, complaint_id: str, facts: list[Fact], terms: Terms | None) -> None:
        snap = await self.store.record(complaint_id, facts, terms)
        if self.whole:
            await self.evaluate(snap)
        else:  # not known whole yet: the next scan evaluates it
            await self.store.due_now(complaint_id, self.now().timestamp())

    # ---- evaluating ---------------------------------------------------------------

    async def evaluate(self, snap: Snapshot) -> None:
        """Publish what the complaint's clocks owe now; schedule when it next owes something."""
        if snap.terms is None:  # not routed yet (or praise / a suggestion): no clocks
            await self.store.schedule(snap, next_due=None, deadline=None)
            return
        terms, now = snap.terms, self.now()
        cycles = logic.fold(terms, snap.facts, self.calendars)
        route = logic.latest_route(snap.facts)
        owed, upcoming = logic.owed(snap.complaint_id, terms, cycles, route, self.calendars, now=now)
        retry: datetime | None = None
        by_id = {o.event_id(): o for o in sorted(owed, key=lambda o: o.due)}
        todo = {e: o for e, o in by_id.items() if e not in snap.sent}
        claims = await self.store.claim_alerts(snap.complaint_id, list(todo), token=self.token,
                                               lease=self.settings.claim_lease)
        if any(v == "busy" for v in claims.values()):  # another instance publishes some: look later
            retry = now + timedelta(seconds=self.settings.claim_lease)
        mine = [todo[e] for e, v in claims.items() if v == "mine"]
        if mine:
            await self.publisher.publish_many(SLA, [SlaEvent.new(
                o.alert, id=o.event_id(), source=SERVICE, time=now, subject=snap.complaint_id,
                correlationid=terms.correlationid, causationid=terms.cause) for o in mine])
            await self.store.mark_sent(snap.complaint_id, [o.event_id() for o in mine])
            for o in mine:
                self._count(o, now)
        nxt = min((t for t in (upcoming, retry) if t is not None), default=None)
        deadline = logic.open_deadline(terms, cycles, self.calendars)
        await self.store.schedule(snap, next_due=nxt.timestamp() if nxt else None,
                                  deadline=deadline.timestamp() if deadline else None)

    def _count(self, item: logic.Owed, now: datetime) -> None:
        a = item.alert
        if a.outcome is SlaOutcome.warning:
            self.metrics.warnings.labels(a.milestone.value, a.severity.value, f"{a.threshold:g}").inc()
            self.metrics.lateness.labels("warning").observe((now - item.due).total_seconds())
            return
        outcome = a.outcome.value
        if a.outcome is SlaOutcome.met:
            outcome = "met_on_time" if a.on_time else "met_late"
        self.metrics.milestones.labels(a.milestone.value, a.severity.value, outcome).inc()
        if a.outcome is SlaOutcome.breached:
            self.metrics.lateness.labels("breach").observe((now - item.due).total_seconds())
            log.warning("sla breach complaint=%s milestone=%s cycle=%d severity=%s",
                        a.complaint_id, a.milestone.value, a.cycle, a.severity.value)

    async def tick(self) -> None:
        """Claim complaints that owe an alert now and evaluate them (rebuild first if needed)."""
        if await self.ensure_whole():
            await self.scan()

    async def ensure_whole(self) -> bool:
        """True when the store is whole; otherwise rebuild it (here, or wait for another instance)."""
        if not await self.store.whole():
            self.whole = False
            await self.rebuild()
            return False
        self.whole = True
        return True

    async def scan(self) -> None:
        """Claim complaints that owe an alert now and evaluate them."""
        now = self.now()
        due = await self.store.claim_due(now.timestamp(), limit=self.settings.batch,
                                         lease=self.settings.claim_lease)
        gate = asyncio.Semaphore(self.settings.parallel)

        async def one(complaint_id: str) -> None:
            async with gate:
                await self.evaluate(await self.store.snapshot(complaint_id))

        await asyncio.gather(*(one(c) for c in due))
        self.metrics.open_deadlines.set(await self.store.open_count())
        earliest = await self.store.earliest_deadline()
        self.metrics.most_urgent.set(0 if earliest is None else earliest - self.now().timestamp())
        self.metrics.last_tick.set(self.now().timestamp())

    # ---- rebuilding ---------------------------------------------------------------

    async def rebuild(self) -> None:
        """Restore every complaint's facts, terms and sent alerts from the topics (one instance)."""
        if self.read is None:
            return
        await rebuild_once(self.store, token=self.token, lease=self.settings.rebuild_lock_lease,
                           rebuild=self._rebuild)

    async def _rebuild(self) -> None:
        assert self.read is not None
        log.warning("sla store lost its keys: rebuilding from the topics")
        read = self.read
        routed, lifecycle, notes, alerts = await asyncio.gather(*(
            asyncio.to_thread(read, t.name) for t in (ROUTED, LIFECYCLE, NOTIFICATIONS, SLA)))
        # parsing a whole topic is CPU work: off the event loop, which must keep heartbeating
        restored = await asyncio.to_thread(
            logic.restore_from_topics, routed, lifecycle, notes, alerts, policy=self.policy.sla,
            version=self.policy.version, scale=self.settings.sla_scale)
        for cid, r in restored.items():
            await self.store.restore(cid, r.facts, r.terms, r.sent)
            await self.store.due_now(cid, self.now().timestamp())  # the scans, shared, evaluate it
        self.metrics.rebuilds.inc()
        log.warning("sla store rebuilt: %d complaints", len(restored))
