"""The archive's service class and wiring, with an in-memory archive: no broker, no database server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from sqlalchemy import inspect

from schemas.envelope import Envelope
from schemas.topics import LIFECYCLE, REGISTERED, TopicSpec
from services.archive import logic
from services.archive.handlers import Archive
from services.archive.metrics import ArchiveMetrics
from services.archive.ports import Appended, CaseArchive
from services.archive.records import ArchivedEvent, CaseRow
from services.archive.settings import ArchiveSettings
from services.common.boundary import Record
from services.common.errors import ConfigError, Rejected
from services.common.settings import load_settings
from tests.test_archive_logic import closed_story

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class MemoryArchive:
    """A ``CaseArchive`` in a dict: the same contract (idempotent on the id, rows folded)."""

    def __init__(self, purgeable: int = 0) -> None:
        self.events: dict[str, ArchivedEvent] = {}
        self.purgeable = purgeable
        self.purges: list[datetime] = []
        self.pings = 0

    async def append(self, events: Sequence[ArchivedEvent], *, now: datetime) -> Appended:
        new = frozenset(e.event_id for e in events if e.event_id not in self.events)
        self.events.update({e.event_id: e for e in events if e.event_id in new})
        return Appended(new, len({e.complaint_id for e in events if e.event_id in new}))

    async def trail(self, complaint_id: str) -> list[ArchivedEvent]:
        return logic.ordered(e for e in self.events.values() if e.complaint_id == complaint_id)

    async def case(self, complaint_id: str) -> CaseRow | None:
        trail = await self.trail(complaint_id)
        return logic.fold_case(trail) if trail else None

    async def purge(self, *, closed_before: datetime, limit: int) -> int:
        self.purges.append(closed_before)
        n = min(limit, self.purgeable)
        self.purgeable -= n
        return n

    async def ping(self) -> None:
        self.pings += 1


class NoPublisher:
    async def publish(self, topic: TopicSpec, event: Envelope) -> None:
        raise AssertionError("the archive publishes nothing but dead letters")

    async def publish_many(self, topic: TopicSpec, events: Sequence[Envelope]) -> None:
        raise AssertionError("the archive publishes nothing but dead letters")


def service(archive: CaseArchive, registry: CollectorRegistry | None = None) -> Archive:
    return Archive(archive=archive, clock=lambda: NOW, retention_years=10,
                   metrics=ArchiveMetrics.create(registry or CollectorRegistry()))


def records() -> list[Record]:
    return [Record(spec.name, 0, i, e.key(), e.to_bytes())
            for i, (spec, e) in enumerate(closed_story("H1").events)]


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_a_batch_is_archived_and_its_bad_records_come_back() -> None:
    # Given a case's records with a malformed one and one on the wrong topic among them
    archive, registry = MemoryArchive(), CollectorRegistry()
    good = records()
    registered = good[0]
    batch = [*good, Record(LIFECYCLE.name, 0, 99, None, b"{not json"),
             Record(LIFECYCLE.name, 0, 100, registered.key, registered.value)]
    # When the batch is handled
    outcomes = asyncio.run(service(archive, registry).on_batch(batch))
    # Then the good ones are archived and each bad one's error comes back for the dead letters
    assert outcomes[: len(good)] == [None] * len(good)
    assert type(outcomes[-2]).__name__ == "ValidationError" and isinstance(outcomes[-1], Rejected)
    assert len(archive.events) == len(good)
    assert metric(registry, "complaints_archive_events_total", topic=REGISTERED.name) == 1
    assert metric(registry, "complaints_archive_batches_total") == 1
    assert metric(registry, "complaints_archive_cases_touched_total") == 1


def test_a_redelivered_batch_counts_as_duplicates() -> None:
    archive, registry = MemoryArchive(), CollectorRegistry()
    archive_service = service(archive, registry)
    asyncio.run(archive_service.on_batch(records()))
    # When the same batch comes again
    outcomes = asyncio.run(archive_service.on_batch(records()))
    # Then nothing is new, and the counters say so
    assert outcomes == [None] * len(records())
    assert metric(registry, "complaints_archive_duplicates_total", topic=REGISTERED.name) == 1
    assert metric(registry, "complaints_archive_events_total", topic=REGISTERED.name) == 1
    assert metric(registry, "complaints_archive_cases_touched_total") == 1


def test_the_single_record_fallback_parses_by_type() -> None:
    archive = MemoryArchive()
    record = records()[1]
    asyncio.run(service(archive).on_record(record.key, record.value))
    (event,) = archive.events.values()
    assert (event.topic, event.type) == ("complaints.routed", "complaint.routed")


def test_retention_purges_in_chunks_until_none_is_left() -> None:
    # Given 1,200 closed cases past the retention period
    archive, registry = MemoryArchive(purgeable=1200), CollectorRegistry()
    # When retention runs
    deleted = asyncio.run(service(archive, registry).retain())
    # Then all went, 500 at a time, older than ten years before now
    assert deleted == 1200
    assert archive.purges == [datetime(2016, 12, 1, 12, 0, tzinfo=UTC)] * 3
    assert metric(registry, "complaints_archive_retention_deleted_total") == 1200
    assert metric(registry, "complaints_archive_last_retention_timestamp_seconds") == NOW.timestamp()


def test_build_with_an_archive_given_connects_to_no_database(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: Path) -> None:
    from services.archive import app as archive_app
    from services.archive import database
    from services.common.policy import load_policy

    # Given engine factories that fail the test if called
    def no_database(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("build() made a database engine although an archive was given")

    monkeypatch.setattr(archive_app, "open_store", no_database)
    monkeypatch.setattr(database, "create_engine", no_database)
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    # When the archive is built with an archive port
    archive = MemoryArchive()
    app = archive_app.build(ArchiveSettings(), load_policy(), publisher=NoPublisher(), archive=archive)
    # Then it is wired without a database: the batch consumer, a task of the app, in place of
    # faust's agent and consumer (which would join the same group with another protocol)
    assert ArchiveSettings().consumer == "batch"
    assert not list(app.agents.values())
    assert "consume" in {t.__name__ for t in app._app_tasks}
    assert app.boot_strategy.enable_kafka_consumer is False
    assert not (tmp_path / "archive.sqlite3").exists()
    # and with ARCHIVE_CONSUMER=faust, one batched agent over the five topics
    monkeypatch.setenv("ARCHIVE_CONSUMER", "faust")
    agent_app = archive_app.build(ArchiveSettings(), load_policy(), publisher=NoPublisher(),
                                  archive=MemoryArchive())
    assert {a.name for a in agent_app.agents.values()} == {"archive.events"}
    assert agent_app.boot_strategy.enable_kafka_consumer is not False
    monkeypatch.setenv("ARCHIVE_CONSUMER", "kafka-streams")
    with pytest.raises(ValidationError, match="ARCHIVE_CONSUMER"):
        ArchiveSettings()


def test_the_archive_batches_with_its_own_concurrency_and_stream_buffer(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    from services.archive import app as archive_app
    from services.common.policy import load_policy

    # Given the services' AGENT_CONCURRENCY and the archive's own settings
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AGENT_CONCURRENCY", "8")
    monkeypatch.setenv("ARCHIVE_STREAM_BUFFER", "12345")
    monkeypatch.setenv("ARCHIVE_CONSUMER", "faust")  # the agent's settings
    # When the archive is built with the defaults, and with two batches at once
    one = archive_app.build(ArchiveSettings(), load_policy(), publisher=NoPublisher(),
                            archive=MemoryArchive())
    monkeypatch.setenv("ARCHIVE_AGENT_CONCURRENCY", "2")
    two = archive_app.build(ArchiveSettings(), load_policy(), publisher=NoPublisher(),
                            archive=MemoryArchive())
    # Then one agent gathers the batches (several would split them and contend for the same
    # complaints), unless told otherwise, and the records fetched ahead are the archive's own
    assert [a.concurrency for a in one.agents.values()] == [1]
    assert [a.concurrency for a in two.agents.values()] == [2]
    assert one.conf.stream_buffer_maxsize == 12345
    # And a batch may be large, with a validated bound
    assert ArchiveSettings().batch_size == 20000
    monkeypatch.setenv("ARCHIVE_BATCH_SIZE", "100001")
    with pytest.raises(ValidationError, match="ARCHIVE_BATCH_SIZE"):
        ArchiveSettings()


def test_build_without_an_archive_migrates_the_default_sqlite_file(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    from services.archive import app as archive_app
    from services.archive.database import make_engine
    from services.common.policy import load_policy

    # Given no database URL: the default SQLite file under the data dir
    monkeypatch.setenv("COMPLAINTS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DESK_JWT_SECRET", "archive-test-staff-token-secret-32chars")
    settings = ArchiveSettings()
    # When the archive is built
    archive_app.build(settings, load_policy(), publisher=NoPublisher())
    # Then the file holds the migrated tables
    engine = make_engine(settings.database())
    try:
        with engine.connect() as conn:
            assert {"archive_events", "archive_cases", "alembic_version"} <= set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert (tmp_path / "archive.sqlite3").exists()


def test_the_database_url_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.archive.database import make_engine

    # Given a PostgreSQL URL with a password, and a bad setting beside it
    monkeypatch.setenv("ARCHIVE_DATABASE_URL", "postgresql://archive:s3cret-pw@db:5432/archive")
    monkeypatch.setenv("ARCHIVE_RETENTION_YEARS", "0")
    # When the settings are read, then the error names the bad variable and not the URL
    with pytest.raises(ConfigError) as error:
        load_settings(ArchiveSettings)
    assert "ARCHIVE_RETENTION_YEARS" in str(error.value) and "s3cret" not in str(error.value)
    # And neither the settings nor the engine print the password
    monkeypatch.setenv("ARCHIVE_RETENTION_YEARS", "100")
    settings = load_settings(ArchiveSettings)
    engine = make_engine(settings.database())
    assert "s3cret-pw" not in repr(settings) + str(settings) + repr(engine)
    assert engine.url.drivername == "postgresql+psycopg"  # psycopg 3 unless a driver is named
    engine.dispose()


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "not a url"])
def test_an_unsupported_database_url_is_a_configuration_error(url: str) -> None:
    from services.archive.database import make_engine

    with pytest.raises(ConfigError) as error:
        make_engine(url)
    assert "ARCHIVE_DATABASE_URL" in str(error.value) and "u:p" not in str(error.value)


def test_a_rebuild_sends_every_topic_through_the_write_path_and_repeats_harmlessly(tmp_path: Path) -> None:
    import json

    from services.archive.adapters import SqlStore
    from services.archive.database import make_engine, upgrade
    from services.archive.rebuild import archive_topics

    # Given topics holding a case's events and one unreadable event
    story = closed_story("RB1")
    topics: dict[str, list[dict[str, Any]]] = {}
    for spec, event in story.events:
        topics.setdefault(spec.name, []).append(json.loads(event.to_bytes()))
    topics[LIFECYCLE.name].append({"type": "case.updated", "data": {"complaint_id": "RB1"}})
    engine = make_engine(f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
    upgrade(engine)
    store = SqlStore(engine)
    try:
        # When the archive is rebuilt from them, in small batches
        report = archive_topics(store, lambda t: topics.get(t, []), batch_size=4, clock=lambda: NOW)
        # Then every readable event is archived, the case folded, the unreadable one counted
        assert sum(report.new.values()) == len(story.events)
        assert report.skipped == {LIFECYCLE.name: 1}
        assert store.case("RB1") == logic.fold_case(story.archived())
        # And a second rebuild adds nothing
        again = archive_topics(store, lambda t: topics.get(t, []), batch_size=4, clock=lambda: NOW)
        assert sum(again.new.values()) == 0 and again.complaints == 0
        assert str(again).startswith("rebuilt archive: 0 events new, 0 case refolds (complaints.lifecycle")
    finally:
        engine.dispose()
