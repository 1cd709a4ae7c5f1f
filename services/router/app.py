"""Router wiring: the faust app, its agents over registered, lifecycle and sla, the load and
queue timers, /metrics and /healthz. What the router decides is in ``handlers.Router`` and ``logic``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.topics import LIFECYCLE, REGISTERED, SLA
from services.common.boundary import Boundary
from services.common.consumer import consume
from services.common.errors import ConfigError
from services.common.policy import DEFAULT_POLICY, Policy
from services.common.runtime import FaustPublisher, add_web, always_ready, make_app, redis_client
from services.router.adapters import RedisCases, RedisFirstContacts
from services.router.handlers import SERVICE, Router
from services.router.metrics import RouterMetrics
from services.router.ports import Cases, Clock, FirstContacts, Publisher
from services.router.roster import Roster, load_roster
from services.router.settings import RouterSettings
from services.router.taxonomy import Taxonomy, load_taxonomy
from services.router.textmodel import load_model, load_severity_model


def load_rules(settings: RouterSettings, policy: Policy) -> tuple[Taxonomy, Roster]:
    """The taxonomy and the roster; every department a code or the review queue names is staffed."""
    taxonomy = load_taxonomy(settings.taxonomy_file)
    departments = {t.department for t in taxonomy.types} | {policy.router.review_department}
    roster = load_roster(settings.roster_file, departments=departments)
    unknown = sorted(set(policy.queue.departments) - set(roster.departments))
    if unknown:
        raise ConfigError("\n".join(
            f"{settings.policy_file or DEFAULT_POLICY}: queue.departments.{d}: not a department "
            f"of roster {roster.version}" for d in unknown))
    return taxonomy, roster


def build(settings: RouterSettings, policy: Policy, *, publisher: Publisher | None = None,
          first_contacts: FirstContacts | None = None, cases: Cases | None = None,
          clock: Clock | None = None, registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the router: agents over registered, lifecycle and sla; /metrics, /healthz.

    A Redis client is made only for the ports not given; /healthz pings it.
    """
    taxonomy, roster = load_rules(settings, policy)
    model = (load_model(settings.text_model_file, codes={t.code for t in taxonomy.types})
             if settings.text_model else None)
    severity_model = (load_severity_model(settings.severity_model_file)
                      if settings.severity_model else None)
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    publisher = publisher or FaustPublisher(app)
    check: Callable[[], Awaitable[object]] = always_ready
    if first_contacts is None or cases is None:
        redis = redis_client(settings)
        check = redis.ping
        first_contacts = first_contacts or RedisFirstContacts(redis, prefix=settings.redis_prefix)
        cases = cases or RedisCases(redis, prefix=settings.redis_prefix,
                                    ttl_seconds=settings.case_ttl_days * 86400)
    metrics = RouterMetrics.create(registry)
    metrics.models.info({"text_model": model.version if model else "off",
                         "severity_model": severity_model.version if severity_model else "off",
                         "taxonomy": taxonomy.version})
    router = Router(
        policy=policy, taxonomy=taxonomy, roster=roster, publisher=publisher,
        first_contacts=first_contacts, cases=cases,
        clock=clock or (lambda: datetime.now(UTC)), metrics=metrics,
        model=model, severity_model=severity_model)
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry, settings=settings)

    lag = consume(app, settings, boundary, {
        REGISTERED: router.on_registered,
        LIFECYCLE: router.on_case_event,
        SLA: router.on_sla,
    })

    @app.timer(interval=settings.load_interval)  # type: ignore[untyped-decorator]
    async def loads() -> None:
        await boundary.guard("loads", router.refresh_loads)

    @app.timer(interval=settings.queue_interval)  # type: ignore[untyped-decorator]
    async def queues() -> None:
        await boundary.guard("queues", router.queues.sweep)
        await boundary.guard("queue_gauges", router.queues.refresh)

    add_web(app, service=SERVICE, registry=registry, lag=lag, check=check)
    return app
