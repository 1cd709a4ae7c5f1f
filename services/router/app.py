"""Router wiring: the faust app and its agent."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.envelope import derived_id
from schemas.events import ComplaintRegistered, ComplaintRouted
from schemas.topics import REGISTERED, ROUTED
from services.common.policy import Policy
from services.common.runtime import Boundary, FaustPublisher, add_web, make_app, redis_client
from services.router.adapters import RedisFirstContacts
from services.router.logic import route
from services.router.metrics import RouterMetrics
from services.router.ports import Clock, FirstContacts, PriorComplaint, Publisher
from services.router.settings import RouterSettings

log = logging.getLogger(__name__)
SERVICE = "router"
ANONYMOUS = "anonymous"  # intake's customer key when a message names nobody


class Router:
    def __init__(self, *, policy: Policy, publisher: Publisher, first_contacts: FirstContacts,
                 clock: Clock, metrics: RouterMetrics) -> None:
        self.policy, self.publisher, self.clock, self.metrics = policy, publisher, clock, metrics
        self.first_contacts = first_contacts

    async def on_registered(self, key: bytes | None, value: bytes) -> None:
        """Route one registered complaint; the decision's id derives from the registration's."""
        registered = ComplaintRegistered.model_validate_json(value)
        complaint = registered.data
        prior = None
        if complaint.customer_key != ANONYMOUS:
            prior = await self.first_contacts.claim(
                complaint.customer_key,
                PriorComplaint(complaint_id=complaint.complaint_id, owner=complaint.first_contact),
                window_seconds=int(self.policy.router.repeat_window.total_seconds()))
        decision = route(complaint, rules=self.policy.router, prior=prior)
        event = ComplaintRouted.new(
            decision, id=derived_id("routed", registered.id), source=SERVICE, time=self.clock(),
            subject=decision.complaint_id, cause=registered,
        )
        await self.publisher.publish(ROUTED, event)
        self.metrics.routed.labels(decision.severity.value, decision.level.value,
                                   decision.department).inc()
        log.debug("routed complaint=%s event=%s severity=%s level=%s department=%s",
                 event.subject, event.id, decision.severity.value, decision.level.value,
                 decision.department)


def build(settings: RouterSettings, policy: Policy, *, publisher: Publisher | None = None,
          first_contacts: FirstContacts | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the router: one agent over complaints.registered, /metrics, /healthz."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    redis = redis_client(settings)
    publisher = publisher or FaustPublisher(app)
    router = Router(policy=policy, publisher=publisher,
                    first_contacts=first_contacts or RedisFirstContacts(redis, prefix=settings.redis_prefix),
                    clock=clock or (lambda: datetime.now(UTC)), metrics=RouterMetrics.create(registry))
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry)

    boundary.subscribe(app, "registered", router.on_registered, REGISTERED,
                       concurrency=settings.agent_concurrency)

    add_web(app, service=SERVICE, registry=registry, check=redis.ping)
    return app
