"""Notifier wiring: four agents, one dispatch loop per transport, the store check, /metrics, /healthz.

What each event owes whom is ``services.notifier.handlers.Notifier``; sending from the
per-transport queues is ``services.notifier.dispatch.Dispatcher``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from schemas.topics import LIFECYCLE, REGISTERED, ROUTED, SLA
from services.common import sealing
from services.common.boundary import Boundary
from services.common.consumer import consume
from services.common.errors import ConfigError
from services.common.kafka import read_topic
from services.common.pii_keys import KeyStore, read_keys
from services.common.policy import Policy
from services.common.runtime import FaustPublisher, add_web, always_ready, make_app, redis_client
from services.notifier import logic
from services.notifier.adapters import RedisCustomers, RedisOutbox, RedisRecipientLimit, transports_of
from services.notifier.dispatch import Dispatcher
from services.notifier.handlers import Notifier
from services.notifier.messages import SERVICE
from services.notifier.metrics import NotifierMetrics
from services.notifier.opening import DataKeys, opening
from services.notifier.ports import Clock, Customers, Outbox, Publisher, RecipientLimit, Transport
from services.notifier.settings import NotifierSettings

log = logging.getLogger(__name__)


def build(settings: NotifierSettings, policy: Policy, *, publisher: Publisher | None = None,
          customers: Customers | None = None, outbox: Outbox | None = None,
          transports: dict[str, Transport] | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None, limit: RecipientLimit | None = None,
          keys: DataKeys | None = None) -> faust.App:
    """Wire the notifier (no Redis client when customers, outbox and limit are given)."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    check: Callable[[], Awaitable[object]] = always_ready
    redis = None
    if customers is None or outbox is None or limit is None:
        redis = redis_client(settings)
        ttl = settings.contact_ttl_days * 86400
        if customers is None:
            customers = RedisCustomers(redis, prefix=settings.redis_prefix, ttl_seconds=ttl)
        if outbox is None:
            outbox = RedisOutbox(redis, prefix=settings.redis_prefix, ttl_seconds=ttl)
        if limit is None:
            limit = RedisRecipientLimit(redis, prefix=settings.redis_prefix, limit=settings.recipient_limit,
                                        window=settings.recipient_window)
        check = redis.ping
    publisher = publisher or FaustPublisher(app)
    if transports is None:
        transports = transports_of(settings)
        check_outbox(settings, policy, transports)
    # customers' addresses are sealed (docs/privacy.md): opened with their data keys when sent
    masters = sealing.master_keys_of(settings.pii_master_keys, settings.data_dir)
    if keys is None and redis is not None:  # Redis is used (not every port given)
        keys = KeyStore(redis, prefix=settings.redis_prefix, masters=masters,
                        publisher=None, read=lambda: read_keys(settings.bootstrap_list()),
                        ttl=settings.pii_key_cache_ttl)
    if keys is not None:
        transports = opening(transports, keys)
    clock = clock or (lambda: datetime.now(UTC))
    metrics = NotifierMetrics.create(registry)
    metrics.start_at_zero(transports)
    bootstrap = settings.bootstrap_list()

    def read(topic: str) -> list[dict[str, Any]]:
        return list(read_topic(bootstrap, topic))

    wakes = {queue: asyncio.Event() for queue in transports}  # set when a queue has work due now

    def wake(queue: str) -> None:
        if queue in wakes:
            wakes[queue].set()

    notifier = Notifier(settings=settings, policy=policy, publisher=publisher, customers=customers,
                        outbox=outbox, queues=list(transports), clock=clock, metrics=metrics, read=read,
                        wake=wake)
    dispatcher = Dispatcher(settings=settings, publisher=publisher, outbox=outbox, transports=transports,
                            clock=clock, metrics=metrics, limit=limit)
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry,
                        max_retries=settings.missing_contact_retries, settings=settings)

    lag = consume(app, settings, boundary, {
        REGISTERED: notifier.on_registered,
        ROUTED: notifier.on_routed,
        LIFECYCLE: notifier.on_case_event,
        SLA: notifier.on_sla,
    })

    for queue in transports:  # each transport drains its own queue: a slow one holds up no other
        app.task(_dispatcher(_drainer(boundary, dispatcher, queue), wakes[queue],
                             interval=settings.dispatch_interval))

    @app.timer(interval=settings.store_check_interval)  # type: ignore[untyped-decorator]
    async def store() -> None:
        await boundary.guard("store check", notifier.check_store, timeout=settings.rebuild_timeout)

    add_web(app, service=SERVICE, registry=registry, lag=lag, check=check)
    return app


def check_outbox(settings: NotifierSettings, policy: Policy, transports: dict[str, Transport]) -> None:
    """Refuse to start while a channel would fall back to the file outbox, unless that is allowed
    (NOTIFIER_OUTBOX_ENABLED): its messages reach nobody, so a deployment must not run on it unawares."""
    missing = logic.outbox_stand_ins(transports, roles=logic.staff_roles(policy))
    if not missing:
        return
    if not settings.outbox_enabled:
        raise ConfigError(
            "environment: NOTIFIER_OUTBOX_ENABLED: false, yet the file outbox (which reaches nobody) "
            f"would take the messages of {', '.join(missing)}: configure those, or set "
            "NOTIFIER_OUTBOX_ENABLED=true where that is meant (development, tests)")
    log.warning("the file outbox %s stands in for %s: what it takes is recorded outboxed and reaches nobody",
                settings.outbox_dir, ", ".join(missing))


def _dispatcher(drain: Callable[[], Awaitable[None]], woken: asyncio.Event, *,
                interval: float) -> Callable[[], Awaitable[None]]:
    """A queue's dispatch loop: it drains the queue as soon as this instance queued something due
    now (``woken``), and every ``interval`` seconds whatever happened (what became due since: a
    deferred message, a retry, one another instance queued or left behind). A task body (no
    arguments: faust passes the app to a task that takes one)."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=interval)
            woken.clear()  # before the drain: what is queued during it wakes the next one
            await drain()

    return loop


def _drainer(boundary: Boundary, dispatcher: Dispatcher, queue: str) -> Callable[[], Awaitable[None]]:
    """One drain of a queue, guarded: an error is logged and the next drain tries again."""

    async def drain() -> None:
        while await dispatcher.dispatch(queue) >= dispatcher.settings.dispatch_batch:
            pass  # a full batch: more may be due at once

    async def guarded() -> None:
        await boundary.guard(f"dispatch {queue}", drain)

    return guarded
