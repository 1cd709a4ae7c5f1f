"""SLA monitor wiring: agents over routing and case events, a timer for due deadlines."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.envelope import derived_id
from schemas.events import CaseEvent, ComplaintRouted, SlaAlert, SlaEvent, SlaOutcome
from schemas.topics import LIFECYCLE, ROUTED, SLA
from services.common.policy import Policy
from services.common.runtime import (
    Boundary,
    FaustPublisher,
    add_web,
    make_app,
    redis_client,
)
from services.sla_monitor import logic
from services.sla_monitor.adapters import RedisClocks
from services.sla_monitor.metrics import SlaMetrics
from services.sla_monitor.ports import Clock, Clocks, Publisher
from services.sla_monitor.settings import SlaMonitorSettings

log = logging.getLogger(__name__)
SERVICE = "sla-monitor"


class Monitor:
    def __init__(self, *, settings: SlaMonitorSettings, policy: Policy, publisher: Publisher,
                 clocks: Clocks, clock: Clock, metrics: SlaMetrics) -> None:
        self.settings, self.policy, self.publisher = settings, policy, publisher
        self.clocks, self.now, self.metrics = clocks, clock, metrics

    async def on_routed(self, key: bytes | None, value: bytes) -> None:
        """Start the milestone clocks of a routed complaint."""
        routed = ComplaintRouted.model_validate_json(value)
        for clock in logic.start_clocks(
            routed.data, policy=self.policy.sla, version=self.policy.version,
            scale=self.settings.sla_scale, correlationid=routed.correlationid,
            causationid=routed.id,
        ):
            state = await self.clocks.start(clock)
            await self._emit(logic.alerts_after_start(state), correlationid=routed.correlationid,
                             causationid=routed.id)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Stop the clocks a handler's or customer's step meets."""
        event = CaseEvent.model_validate_json(value)
        for milestone in logic.milestones_stopped_by(event.data.action, policy=self.policy.sla):
            state = await self.clocks.stop(event.data.complaint_id, milestone, event.time)
            await self._emit(logic.alerts_after_stop(state), correlationid=event.correlationid,
                             causationid=event.id)

    async def tick(self) -> None:
        """Claim due deadlines and publish their breaches."""
        now = self.now()
        for state in await self.clocks.claim_due(now, limit=self.settings.batch,
                                                 lease=self.settings.claim_lease):
            if state.clock is None:
                continue
            alerts = logic.alerts_when_due(state, now=now)
            if alerts:
                await self._emit(alerts, correlationid=state.clock.correlationid,
                                 causationid=state.clock.causationid)
            else:
                await self.clocks.release(state.clock.complaint_id, state.clock.milestone)
        self.metrics.open_deadlines.set(await self.clocks.open_count())

    async def _emit(self, alerts: list[SlaAlert], *, correlationid: str, causationid: str) -> None:
        for alert in alerts:
            event = SlaEvent.new(
                alert, id=derived_id("sla", alert.complaint_id, alert.milestone, alert.outcome),
                source=SERVICE, time=self.now(), subject=alert.complaint_id,
                correlationid=correlationid, causationid=causationid,
            )
            await self.publisher.publish(SLA, event)
            await self.clocks.mark_sent(alert.complaint_id, alert.milestone, alert.outcome)
            self.metrics.alerts.labels(alert.milestone.value, alert.severity.value,
                                       alert.outcome.value).inc()
            if alert.outcome is SlaOutcome.breached:
                self.metrics.lateness.observe((alert.observed_at - alert.deadline).total_seconds())
            level = logging.WARNING if alert.outcome is SlaOutcome.breached else logging.DEBUG
            log.log(level, "sla complaint=%s event=%s milestone=%s outcome=%s on_time=%s",
                     alert.complaint_id, event.id, alert.milestone.value, alert.outcome.value,
                     alert.on_time)


def build(settings: SlaMonitorSettings, policy: Policy, *, publisher: Publisher | None = None,
          clocks: Clocks | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the SLA monitor: two agents, a deadline timer, /metrics, /healthz."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    publisher = publisher or FaustPublisher(app)
    monitor = Monitor(settings=settings, policy=policy, publisher=publisher,
                      clocks=clocks or RedisClocks(redis, prefix=settings.redis_prefix),
                      clock=clock or (lambda: datetime.now(UTC)), metrics=SlaMetrics.create(registry))
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry)

    n = settings.agent_concurrency
    boundary.subscribe(app, "routed", monitor.on_routed, ROUTED, concurrency=n)
    boundary.subscribe(app, "lifecycle", monitor.on_case_event, LIFECYCLE, concurrency=n)

    @app.timer(interval=settings.tick_interval)  # type: ignore[untyped-decorator]
    async def due() -> None:
        await boundary.guard("tick", monitor.tick)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app
