"""Desk wiring: the staff API on its own listener (DESK_HTTP_PORT), /metrics and /healthz.

The desk consumes no topic: it reads the archive's database and publishes case events
(complaints.lifecycle) and access records (complaints.audit) through the faust producer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import faust
from prometheus_client import CollectorRegistry

from services.common.pii_keys import KeyStore, read_keys
from services.common.policy import Policy
from services.common.runtime import FaustPublisher, add_web, make_app, redis_client
from services.desk.adapters import ArchiveReader, SealedContacts
from services.desk.auth import TokenVerifier
from services.desk.console import Console, add_console
from services.desk.handlers import SERVICE, Desk
from services.desk.http import add_desk_api
from services.desk.metrics import DeskMetrics
from services.desk.ports import CaseReader, Clock, Contacts, Publisher
from services.desk.settings import DeskSettings


def build(settings: DeskSettings, policy: Policy, *, publisher: Publisher | None = None,
          reader: CaseReader | None = None, verifier: TokenVerifier | None = None,
          clock: Clock | None = None, registry: CollectorRegistry | None = None,
          contacts: Contacts | None = None) -> faust.App:
    """Wire the desk (the token keys are checked here: a bad setting stops the start)."""
    from services.archive.database import make_engine
    from services.sla_monitor.calendar import load_calendar

    app = make_app(SERVICE, settings, web_port=settings.http_port)
    # The desk consumes no topic: faust starts its web server and producer only (a consumer
    # with nothing to subscribe to fails on its first rebalance).
    app.producer_only = True
    registry = registry or CollectorRegistry()
    reader = reader or ArchiveReader(make_engine(settings.database()))
    masters = settings.master_keys()  # a malformed PII_MASTER_KEYS stops the start here
    if contacts is None and masters is not None:
        keys = KeyStore(redis_client(settings), prefix=settings.redis_prefix, masters=masters, publisher=None,
                        read=lambda: read_keys(settings.bootstrap_list()), ttl=settings.pii_key_cache_ttl)
        contacts = SealedContacts(redis_client(settings), prefix=settings.redis_prefix, keys=keys)
    desk = Desk(policy=policy, reader=reader, publisher=publisher or FaustPublisher(app),
                verifier=verifier or TokenVerifier.from_settings(settings),
                clock=clock or (lambda: datetime.now(UTC)), metrics=DeskMetrics.create(registry),
                identity_secret=settings.identity_secret(), contacts=contacts)
    add_web(app, service=SERVICE, registry=registry, check=reader.ping)
    add_desk_api(app, desk, settings)
    engine = reader.engine if isinstance(reader, ArchiveReader) else None
    add_console(app, Console(desk, settings, engine, load_calendar(settings.calendar_file)))
    return app
