"""Notifier wiring: agents over registrations and case events, the transport, the record."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Literal

import faust
from prometheus_client import CollectorRegistry

from schemas.envelope import Envelope
from schemas.events import (
    CaseAction,
    CaseEvent,
    ComplaintRegistered,
    NotificationEvent,
    NotificationKind,
    NotificationRecord,
)
from schemas.topics import LIFECYCLE, NOTIFICATIONS, REGISTERED
from services.common.errors import Retry
from services.common.policy import Policy
from services.common.runtime import (
    Boundary,
    FaustPublisher,
    add_web,
    make_app,
    redis_client,
)
from services.notifier import logic
from services.notifier.adapters import FileOutbox, RedisCustomers, RedisSentLog
from services.notifier.metrics import NotifierMetrics
from services.notifier.ports import Clock, Customers, Publisher, SentLog, Transport
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)
SERVICE = "notifier"


class Notifier:
    def __init__(self, *, policy: Policy, publisher: Publisher, customers: Customers,
                 sent: SentLog, transport: Transport, clock: Clock, metrics: NotifierMetrics) -> None:
        self.policy, self.publisher, self.customers = policy, publisher, customers
        self.sent, self.transport, self.now, self.metrics = sent, transport, clock, metrics

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Keep the customer's contact and send the acknowledgement with the number."""
        event = ComplaintRegistered.model_validate_json(value)
        complaint = event.data
        await self.customers.save(logic.CustomerRecord(
            complaint_id=complaint.complaint_id, contact=complaint.customer,
            correlationid=event.correlationid))
        await self._deliver(logic.acknowledgement(complaint, templates=self.policy.notifier), event)

    async def on_case_event(self, key: bytes | None, value: bytes) -> None:
        """Send the result to the customer when a case is resolved."""
        event = CaseEvent.model_validate_json(value)
        if event.data.action is not CaseAction.resolved:
            return
        record = await self.customers.get(event.data.complaint_id)
        if record is None:
            raise Retry(f"complaint {event.data.complaint_id} not yet known to the notifier")
        await self._deliver(logic.render(
            NotificationKind.result, record.contact, complaint_id=event.data.complaint_id,
            templates=self.policy.notifier, result=event.data.result), event)

    async def _deliver(self, note: logic.Notification, cause: Envelope) -> None:
        status: Literal["sent", "failed"] = "sent"
        detail = None
        if note.transport == "none":
            status, detail = "failed", "no contact address"
            self.metrics.failed.labels(note.kind.value, self.transport.name, "no_address").inc()
        elif not await self.sent.was_sent(note.notification_id):
            await self.transport.send(note)
            await self.sent.mark_sent(note.notification_id)
            self.metrics.sent.labels(note.kind.value, self.transport.name).inc()
            self.metrics.latency.labels(note.kind.value).observe(
                max((self.now() - cause.time).total_seconds(), 0.0))
        record = NotificationRecord(
            notification_id=note.notification_id, complaint_id=note.complaint_id, kind=note.kind,
            transport=f"{self.transport.name}:{note.transport}",
            recipient=logic.mask(note.address) if note.address else "-",
            language=note.language, status=status, detail=detail,
        )
        event = NotificationEvent.new(record, id=note.notification_id, source=SERVICE,
                                      time=self.now(), subject=note.complaint_id, cause=cause)
        await self.publisher.publish(NOTIFICATIONS, event)
        log.debug("notification complaint=%s event=%s kind=%s status=%s", note.complaint_id,
                 event.id, note.kind.value, status)


def build(settings: NotifierSettings, policy: Policy, *, publisher: Publisher | None = None,
          customers: Customers | None = None, sent: SentLog | None = None,
          transport: Transport | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the notifier: two agents, the file outbox, /metrics, /healthz."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    ttl = settings.contact_ttl_days * 86400
    publisher = publisher or FaustPublisher(app)
    notifier = Notifier(
        policy=policy, publisher=publisher,
        customers=customers or RedisCustomers(redis, prefix=settings.redis_prefix, ttl_seconds=ttl),
        sent=sent or RedisSentLog(redis, prefix=settings.redis_prefix, ttl_seconds=ttl),
        transport=transport or FileOutbox(settings.outbox_dir),
        clock=clock or (lambda: datetime.now(UTC)), metrics=NotifierMetrics.create(registry),
    )
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry,
                        max_retries=settings.missing_contact_retries)

    n = settings.agent_concurrency
    boundary.subscribe(app, "registered", notifier.on_registered, REGISTERED, concurrency=n)
    boundary.subscribe(app, "lifecycle", notifier.on_case_event, LIFECYCLE, concurrency=n)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app
