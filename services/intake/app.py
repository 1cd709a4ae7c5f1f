"""Intake wiring: the faust app, its agents, its HTTP API (``http``), /metrics and /healthz."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from schemas.topics import INBOUND, LIFECYCLE, NOTIFICATIONS, REGISTERED, ROUTED, SLA
from services.common import sealing
from services.common.boundary import Boundary
from services.common.consumer import consume_batches
from services.common.pii_keys import KeyStore, read_keys
from services.common.policy import Policy
from services.common.ports import Clock, Publisher
from services.common.runtime import FaustPublisher, add_web, always_ready, make_app, redis_client
from services.intake.adapters import RedisRegistrations, RedisRevisits, RedisTimelines
from services.intake.handlers import SERVICE, Intake
from services.intake.http import add_http_api
from services.intake.metrics import IntakeMetrics
from services.intake.ports import Registrations, Revisits, Timelines
from services.intake.settings import IntakeSettings


def build(
    settings: IntakeSettings, policy: Policy, *, publisher: Publisher | None = None,
    registrations: Registrations | None = None, timelines: Timelines | None = None,
    clock: Clock | None = None, registry: CollectorRegistry | None = None, keys: KeyStore | None = None,
    revisits: Revisits | None = None,
) -> faust.App:
    """Wire intake: Kafka agents, HTTP API, /metrics, /healthz (no Redis client if every port is given:
    then contacts are sealed only with a ``keys`` store given, and replies are matched to revisits
    only with a ``revisits`` index given)."""
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    registry = registry or CollectorRegistry()
    check: Callable[[], Awaitable[object]] = always_ready
    publisher = publisher or FaustPublisher(app)
    identity_secret = settings.identity_secret()  # both keys validated now, this one first
    masters = sealing.master_keys_of(settings.pii_master_keys, settings.data_dir)
    if registrations is None or timelines is None:
        redis = redis_client(settings)
        registrations = registrations or RedisRegistrations(redis, prefix=settings.redis_prefix)
        timelines = timelines or RedisTimelines(redis, prefix=settings.redis_prefix)
        revisits = revisits or RedisRevisits(
            redis, prefix=settings.redis_prefix,
            ttl_seconds=int(policy.intake.reply_window.total_seconds()))
        check = redis.ping
        # contacts are sealed under their customer's data key (docs/privacy.md); given every
        # port (tests of other concerns) and no key store, nothing is sealed
        keys = keys or KeyStore(redis, prefix=settings.redis_prefix, masters=masters, publisher=publisher,
                                read=lambda: read_keys(settings.bootstrap_list()),
                                ttl=settings.pii_key_cache_ttl)
    intake = Intake(
        policy=policy, publisher=publisher, registrations=registrations, timelines=timelines,
        clock=clock or (lambda: datetime.now(UTC)), random_bits=lambda: secrets.randbits(23),
        identity_secret=identity_secret,
        metrics=IntakeMetrics.create(registry), max_record_bytes=settings.max_body_bytes, keys=keys,
        revisits=revisits,
    )
    # inbound bytes hold contact details in clear: a dead letter keeps them sealed
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry, settings=settings,
                        seal=lambda original: sealing.seal_blob(masters, original))

    lag = consume_batches(app, settings, boundary, [
        ("inbound", (INBOUND,), intake.on_inbound_batch, intake.on_inbound),
        ("timeline", (REGISTERED, ROUTED, LIFECYCLE, SLA, NOTIFICATIONS), intake.on_timeline_batch,
         intake.project),
    ], size=settings.batch_size, within=settings.batch_within)

    add_web(app, service=SERVICE, registry=registry, lag=lag, check=check)
    add_http_api(app, intake, settings)
    return app
