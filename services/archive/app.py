"""Archive wiring: one batch consumer over the five complaint topics (ARCHIVE_CONSUMER=batch,
the default; =faust: faust's batched agent), the retention timer, /metrics and /healthz. What
the archive keeps is ``handlers.Archive``'s and ``logic``'s."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from services.archive.adapters import SqlArchive, open_store
from services.archive.handlers import SERVICE, Archive
from services.archive.metrics import ArchiveMetrics
from services.archive.ports import CaseArchive, Clock, Publisher
from services.archive.records import INPUTS
from services.archive.reports.http import add_report_api
from services.archive.settings import ArchiveSettings
from services.common.boundary import Boundary
from services.common.consumer import BatchConsumer, attach, batched
from services.common.policy import Policy
from services.common.runtime import FaustPublisher, add_web, make_app
from services.sla_monitor.calendar import load_calendar

log = logging.getLogger(__name__)


def open_archive(settings: ArchiveSettings) -> SqlArchive:
    """The configured database, migrated to the latest schema (``alembic upgrade head``)."""
    store = open_store(settings.database())
    log.info("archive database %s at the latest schema",
             store.engine.url.render_as_string(hide_password=True))
    return SqlArchive(store)


def build(settings: ArchiveSettings, policy: Policy, *, publisher: Publisher | None = None,
          archive: CaseArchive | None = None, clock: Clock | None = None,
          registry: CollectorRegistry | None = None) -> faust.App:
    """Wire the archive: the batch consumer (or agent), the retention timer, /metrics, /healthz.

    Without ``archive`` the configured database is migrated here, at start-up; with it no
    database connection is made. /healthz asks the archive's database.
    """
    app = make_app(SERVICE, settings, web_port=settings.http_port)
    app.conf.stream_buffer_maxsize = settings.stream_buffer  # before the agent's channel exists
    registry = registry or CollectorRegistry()
    publisher = publisher or FaustPublisher(app)
    owned = archive is None
    archive = archive or open_archive(settings)
    service = Archive(archive=archive, clock=clock or (lambda: datetime.now(UTC)),
                      metrics=ArchiveMetrics.create(registry), retention_years=settings.retention_years)
    boundary = Boundary(service=SERVICE, publisher=publisher, registry=registry, settings=settings)

    lag = None
    if settings.consumer == "batch":  # aiokafka's getmany into one write per batch
        consumer = BatchConsumer(settings=settings, group_id=app.conf.id,
                                 handle=batched(boundary, service.on_batch, service.on_record),
                                 specs=INPUTS, size=settings.batch_size, within=settings.batch_within,
                                 fetch_ahead=settings.stream_buffer, depth=settings.in_flight,
                                 fetch_wait=min(settings.batch_within, settings.kafka_fetch_max_wait))
        lag = consumer.lag
        attach(app, consumer)
    else:  # faust's agent, one record at a time through its stream, batched by take_events
        boundary.subscribe_batches(app, "events", service.on_batch, service.on_record, *INPUTS,
                                   size=settings.batch_size, within=settings.batch_within,
                                   concurrency=settings.concurrency)

    @app.timer(interval=settings.retention_interval)  # type: ignore[untyped-decorator]
    async def retention() -> None:
        await boundary.guard("retention", service.retain, timeout=settings.retention_timeout)

    add_web(app, service=SERVICE, registry=registry, check=archive.ping, lag=lag)
    if owned and isinstance(archive, SqlArchive):  # the reports read the same database
        from services.desk.auth import TokenVerifier

        add_report_api(app, engine=archive.store.engine, policy=policy,
                       calendar=load_calendar(settings.calendar_file),
                       verifier=TokenVerifier.from_settings(settings),
                       retry_after=settings.http_retry_after)
    return app
