"""SLA monitor wiring: three input agents, the due-alert timer, /metrics and /healthz.

The work is ``handlers.Monitor``'s: facts from routing, case and notification events,
alerts when a warning or deadline comes, a rebuild from the topics if Redis lost the
monitor's keys. This module only connects it to faust, Redis and the broker.
"""

from __future__ import annotations

from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.topics import LIFECYCLE, NOTIFICATIONS, ROUTED
from services.common.boundary import Boundary
from services.common.consumer import consume
from services.common.kafka import read_topic
from services.common.policy import Policy
from services.common.runtime import FaustPublisher, add_web, always_ready, make_app, redis_client
from services.sla_monitor.adapters import RedisFacts
from services.sla_monitor.calendar import load_calendar
from services.sla_monitor.handlers import SERVICE, Monitor
from services.sla_monitor.logic import CALENDAR_TIME, Calendars
from services.sla_monitor.metrics import SlaMetrics
from services.sla_monitor.ports import Clock, Publisher, Store, TopicReader
from services.sla_monitor.settings import SlaMonitorSettings


def calendars(settings: SlaMonitorSettings) -> Calendars:
    """How each clock kind counts time: calendar time, and the configured business calendar."""
    return {"calendar": CALENDAR_TIME, "business": load_calendar(settings.calendar_file)}


def topic_reader(bootstrap: list[str]) -> TopicReader:
    """Reads a whole topic from the broker (a consumer per call, for rebuilds)."""
    def read(topic: str) -> list[dict[str, object]]:
        return list(read_topic(bootstrap, topic))
    return read


def build(settings: SlaMonitorSettings, policy: Policy, *, publisher: Publisher | None = None,
          store: Store | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None, read: TopicReader | None = None) -> faust.App:
    """Wire the SLA monitor: three agents, the due-alert timer, /metrics, /healthz.

    No Redis client is made when ``store`` is given (and /healthz then always answers).
    """
    clocks = calendars(settings)
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    publisher = publisher or FaustPublisher(app)
    redis = None
    if store is None:
        redis = redis_client(settings)
        store = RedisFacts(redis, prefix=settings.redis_prefix, ttl_seconds=settings.ttl_days * 86400)
    monitor = Monitor(
        settings=settings, policy=policy, publisher=publisher, store=store,
        clock=clock or (lambda: datetime.now(UTC)), metrics=SlaMetrics.create(registry),
        calendars=clocks, read=read or topic_reader(settings.bootstrap_list()))
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry, settings=settings)

    lag = consume(app, settings, boundary, {
        ROUTED: monitor.on_routed,
        LIFECYCLE: monitor.on_case_event,
        NOTIFICATIONS: monitor.on_notification,
    })

    @app.timer(interval=settings.tick_interval)  # type: ignore[untyped-decorator]
    async def due() -> None:
        # a rebuild may take long; a scan must not: a hung one is cancelled and retried
        await boundary.guard("rebuild", monitor.ensure_whole, timeout=settings.rebuild_timeout)
        if monitor.whole:
            await boundary.guard("tick", monitor.scan, timeout=settings.tick_timeout)

    add_web(app, service=SERVICE, registry=registry, lag=lag,
            check=redis.ping if redis is not None else always_ready)
    return app
