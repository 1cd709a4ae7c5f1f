"""SLA monitor wiring: facts from routing, case and notification events; a timer for due alerts.

Every input event is recorded as facts of its complaint (idempotent), the complaint's
clocks are folded from its facts (``logic``), and the alerts they owe are published, each
once under a deterministic id, claimed atomically so that several instances share the
work. A timer claims complaints whose next warning or deadline has come. If Redis loses
the monitor's keys, the timer notices (the epoch marker is gone) and rebuilds them from
the topics before it emits anything again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import faust
from prometheus_client import CollectorRegistry

from schemas.events import CaseEvent, ComplaintRouted, NotificationEvent, SlaEvent, SlaOutcome
from schemas.topics import LIFECYCLE, NOTIFICATIONS, ROUTED, SLA
from services.common.kafka import read_topic
from services.common.policy import Policy
from services.common.redis_store import rebuild_once
from services.common.runtime import Boundary, FaustPublisher, add_web, make_app, redis_client
from services.sla_monitor import logic
from services.sla_monitor.adapters import RedisFacts
from services.sla_monitor.calendar import load_calendar
from services.sla_monitor.logic import CALENDAR_TIME, ClockKind, Fact, Plan, TimeLine
from services.sla_monitor.metrics import SlaMetrics
from services.sla_monitor.ports import Clock, Publisher, Snapshot, Store
from services.sla_monitor.settings import SlaMonitorSettings

log = logging.getLogger(__name__)
SERVICE = "sla-monitor"
TopicReader = Callable[[str], list[dict[str, object]]]


class Monitor:
    def __init__(self, *, settings: SlaMonitorSettings, policy: Policy, publisher: Publisher,
                 store: Store, clock: Clock, metrics: SlaMetrics, lines: dict[ClockKind, TimeLine],
                 read: TopicReader | None = None) -> None:
        self.settings, self.policy, self.publisher = settings, policy, publisher
        self.store, self.now, self.metrics, self.lines = store, clock, metrics, lines
        self.read = read
        self.token = uuid.uuid4().hex[:12]  # this instance, in alert claims
        # Known whole after the first scan finds the epoch marker; until then (and while
        # a rebuild runs) facts are recorded but nothing is emitted from partial facts.
        self.whole = False

    # ---- inputs -------------------------------------------------------------------

    async def on_routed(self, key: bytes | None, value: bytes) -> None:
        event = ComplaintRouted.model_validate_json(value)
        plan = logic.plan_for(event, policy=self.policy.sla, version=self.policy.version,
                              scale=self.settings.sla_scale)
        await self._record(event.data.complaint_id, logic.facts_of(event), plan)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        event = CaseEvent.model_validate_json(value)
        await self._record(event.data.complaint_id, logic.facts_of(event), None)

    async def on_notification(self, key: bytes | None, value: bytes) -> None:
        event = NotificationEvent.model_validate_json(value)
        facts = logic.facts_of(event)
        if facts:
            await self._record(event.data.complaint_id, facts, None)

    async def _record(self, complaint_id: str, facts: list[Fact], plan: Plan | None) -> None:
        snap = await self.store.record(complaint_id, facts, plan)
        if self.whole:
            await self.evaluate(snap)
        else:  # not known whole yet: the next scan evaluates it
            await self.store.due_now(complaint_id, self.now().timestamp())

    # ---- evaluating ---------------------------------------------------------------

    async def evaluate(self, snap: Snapshot) -> None:
        """Publish what the complaint's clocks owe now; schedule when it next owes something."""
        if snap.plan is None:  # not routed yet (or praise / a suggestion): no clocks
            await self.store.schedule(snap, next_due=None, deadline=None)
            return
        plan, now = snap.plan, self.now()
        cycles = logic.fold(plan, snap.facts, self.lines)
        route = logic.latest_route(snap.facts)
        owed, upcoming = logic.owed(snap.complaint_id, plan, cycles, route, self.lines, now=now)
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
                correlationid=plan.correlationid, causationid=plan.cause) for o in mine])
            await self.store.mark_sent(snap.complaint_id, [o.event_id() for o in mine])
            for o in mine:
                self._count(o, now)
        nxt = min((t for t in (upcoming, retry) if t is not None), default=None)
        deadline = logic.open_deadline(plan, cycles, self.lines)
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
        """Restore every complaint's facts, plan and sent alerts from the topics (one instance)."""
        if self.read is None:
            return
        await rebuild_once(self.store, token=self.token, lease=self.settings.rebuild_lock_lease,
                           rebuild=self._rebuild)

    def _fold_topics(self, routed: list[dict[str, object]], lifecycle: list[dict[str, object]],
                     notes: list[dict[str, object]], alerts: list[dict[str, object]],
                     ) -> tuple[dict[str, list[Fact]], dict[str, Plan], dict[str, list[str]]]:
        """Every complaint's facts, plan and sent alerts, from the topics' events."""
        facts: dict[str, list[Fact]] = {}
        plans: dict[str, Plan] = {}
        for raw in routed:
            event = ComplaintRouted.model_validate(raw)
            cid = event.data.complaint_id
            facts.setdefault(cid, []).extend(logic.facts_of(event))
            plan = logic.plan_for(event, policy=self.policy.sla, version=self.policy.version,
                                  scale=self.settings.sla_scale)
            if plan is not None:
                plans.setdefault(cid, plan)
        for raw in lifecycle:
            case = CaseEvent.model_validate(raw)
            facts.setdefault(case.data.complaint_id, []).extend(logic.facts_of(case))
        for raw in notes:
            note = NotificationEvent.model_validate(raw)
            facts.setdefault(note.data.complaint_id, []).extend(logic.facts_of(note))
        sent: dict[str, list[str]] = {}
        for raw in alerts:
            sent.setdefault(str(raw.get("subject")), []).append(str(raw["id"]))
        return facts, plans, sent

    async def _rebuild(self) -> None:
        assert self.read is not None
        log.warning("sla store lost its keys: rebuilding from the topics")
        read = self.read
        routed, lifecycle, notes, alerts = await asyncio.gather(*(
            asyncio.to_thread(read, t.name) for t in (ROUTED, LIFECYCLE, NOTIFICATIONS, SLA)))
        # parsing a whole topic is CPU work: off the event loop, which must keep heartbeating
        facts, plans, sent = await asyncio.to_thread(self._fold_topics, routed, lifecycle, notes, alerts)
        for cid, fs in facts.items():
            await self.store.restore(cid, fs, plans.get(cid), sent.get(cid, []))
            await self.store.due_now(cid, self.now().timestamp())  # the scans, shared, evaluate it
        self.metrics.rebuilds.inc()
        log.warning("sla store rebuilt: %d complaints", len(facts))


def timelines(settings: SlaMonitorSettings) -> dict[ClockKind, TimeLine]:
    return {"calendar": CALENDAR_TIME, "business": load_calendar(settings.calendar_file)}


def build(settings: SlaMonitorSettings, policy: Policy, *, publisher: Publisher | None = None,
          store: Store | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the SLA monitor: three agents, the due-alert timer, /metrics, /healthz."""
    lines = timelines(settings)
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    publisher = publisher or FaustPublisher(app)
    bootstrap = settings.bootstrap_list()

    def read(topic: str) -> list[dict[str, object]]:
        return list(read_topic(bootstrap, topic))

    monitor = Monitor(
        settings=settings, policy=policy, publisher=publisher,
        store=store or RedisFacts(redis, prefix=settings.redis_prefix,
                                  ttl_seconds=settings.ttl_days * 86400),
        clock=clock or (lambda: datetime.now(UTC)), metrics=SlaMetrics.create(registry),
        lines=lines, read=read)
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry)

    n = settings.agent_concurrency
    boundary.subscribe(app, "routed", monitor.on_routed, ROUTED, concurrency=n)
    boundary.subscribe(app, "lifecycle", monitor.on_case_event, LIFECYCLE, concurrency=n)
    boundary.subscribe(app, "notifications", monitor.on_notification, NOTIFICATIONS, concurrency=n)

    @app.timer(interval=settings.tick_interval)  # type: ignore[untyped-decorator]
    async def due() -> None:
        # a rebuild may take long; a scan must not: a hung one is cancelled and retried
        await boundary.guard("rebuild", monitor.ensure_whole, timeout=settings.rebuild_timeout)
        if monitor.whole:
            await boundary.guard("tick", monitor.scan, timeout=settings.tick_timeout)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app
