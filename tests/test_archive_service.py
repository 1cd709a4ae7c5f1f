"""The archive as deployed: ``python -m services.archive`` on a private broker, a SQLite file.

Cases' events are published to the five topics (keyed by complaint, as the services publish
them), with one unreadable record among them. Mid-stream the archive is killed with SIGKILL
and started again while more events arrive. In the end every event is archived once, every
case row is the fold of all its case's events, and the unreadable record was dead-lettered.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaProducer
from sqlalchemy import Engine, func, select

from schemas.envelope import Envelope
from schemas.topics import DEADLETTER, LIFECYCLE, TopicSpec
from services.archive import logic
from services.archive.adapters import SqlStore
from services.archive.database import make_engine
from services.archive.rebuild import rebuild
from services.archive.records import ArchivedEvent
from services.archive.settings import ArchiveSettings
from services.archive.tables import TABLES
from services.archive.tables import events as events_table
from tests.conftest import own_broker
from tests.harness import TopicReader, free_port, http, wait_for
from tests.test_archive_logic import closed_story, open_story, reopened_story

pytestmark = pytest.mark.integration
COMPLAINTS = 30  # ten of each story: 420 events


class ArchiveProcess:
    """One archive running as a child process, as deployments run it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = int(env["ARCHIVE_HTTP_PORT"])
        self.log = log
        with log.open("ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "services.archive"], env={**os.environ, **env},
                stdout=out, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"the archive exited with {self.proc.returncode}:\n{tail}")
        try:
            return http("GET", f"http://127.0.0.1:{self.port}/healthz")[0] == 200
        except OSError:
            return False

    def stop(self, *, kill: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def the_stories() -> list[list[tuple[TopicSpec, Envelope]]]:
    start = datetime.now(UTC) - timedelta(days=3)
    makers = (closed_story, reopened_story, open_story)
    return [makers[i % 3](f"A{i:03d}-{os.getpid()}", start + timedelta(minutes=i)).events
            for i in range(COMPLAINTS)]


def publish(producer: KafkaProducer, items: list[tuple[TopicSpec, Envelope]]) -> None:
    for spec, event in items:
        producer.send(spec.name, key=event.key(), value=event.to_bytes())
    producer.flush()


def archived(engine: Engine) -> int:
    with engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
        return int(conn.execute(select(func.count()).select_from(events_table)).scalar_one())


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    with own_broker(tmp_path) as bootstrap:
        yield bootstrap


def test_killed_mid_stream_and_restarted_the_archive_loses_nothing_and_doubles_nothing(
        broker: str, tmp_path: Path) -> None:
    database = tmp_path / "archive.sqlite3"
    env = {"KAFKA_BOOTSTRAP_SERVERS": broker, "KAFKA_REBALANCE_TIMEOUT": "3",
           "COMPLAINTS_DATA_DIR": str(tmp_path / "data"), "ARCHIVE_DATABASE_URL": f"sqlite:///{database}",
           "ARCHIVE_HTTP_PORT": str(free_port()), "ARCHIVE_BATCH_SIZE": "50", "LOG_LEVEL": "info",
           "DESK_JWT_SECRET": "archive-service-test-staff-token-secret"}
    stories = the_stories()
    # events interleaved across cases, as the topics carry them
    stream = sorted((item for story in stories for item in story), key=lambda item: item[1].time)
    half = len(stream) // 2
    producer = KafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=5)
    archives = [ArchiveProcess(env, tmp_path / "archive-1.log")]
    engine = make_engine(f"sqlite:///{database}")
    try:
        wait_for(archives[0].healthy, timeout=90, what="the archive healthy")
        # Given half the events published, and an unreadable record among them
        publish(producer, stream[:half])
        producer.send(LIFECYCLE.name, key=b"A000", value=b"{not an event").get(timeout=10)
        # When the archive is killed while it works through them
        wait_for(lambda: archived(engine) >= half // 4, timeout=60, what="a quarter of the first half")
        archives[0].stop(kill=True)
        at_kill = archived(engine)
        print(f"archived at the kill: {at_kill} of {half} published (of {len(stream)})")
        # And the rest is published while it is down, and it is started again
        publish(producer, stream[half:])
        archives.append(ArchiveProcess(env, tmp_path / "archive-2.log"))
        wait_for(archives[1].healthy, timeout=90, what="the restarted archive healthy")
        # Then every event is archived, once
        wait_for(lambda: archived(engine) == len(stream), timeout=120, what="every event archived")
        assert at_kill < len(stream)
        store = SqlStore(engine)
        for story in stories:
            cid = story[0][1].data.complaint_id
            expected: list[ArchivedEvent] = [summarise_event(e) for _, e in story]
            # and each case row is the fold of all its events (a lost or doubled one would show)
            assert store.trail(cid) == logic.ordered(expected)
            assert store.case(cid) == logic.fold_case(expected)
        # And the unreadable record was dead-lettered (once, by id), not archived
        reader = TopicReader(broker, DEADLETTER.name)
        try:
            letters = reader.wait(lambda e: e["data"]["service"] == "archive", timeout=30,
                                  what="the archive's dead letter")
        finally:
            reader.close()
        assert len({e["id"] for e in letters}) == 1
        assert archived(engine) == len(stream)

        # And a rebuild from the topics into an empty database gives the same rows
        rebuilt_db = tmp_path / "rebuilt.sqlite3"
        report = rebuild(ArchiveSettings.model_validate(
            {**env, "ARCHIVE_DATABASE_URL": f"sqlite:///{rebuilt_db}"}))
        assert sum(report.new.values()) == sum(report.read.values()) == len(stream)  # the bad one unread
        rebuilt = make_engine(f"sqlite:///{rebuilt_db}")
        try:
            assert rows(SqlStore(rebuilt)) == rows(store)
        finally:
            rebuilt.dispose()
        # and one beside the running archive, into its database, adds nothing
        before = rows(store, with_write_times=True)
        again = rebuild(ArchiveSettings.model_validate(env))
        assert sum(again.new.values()) == 0 and again.complaints == 0
        assert rows(store, with_write_times=True) == before
    finally:
        producer.close()
        for archive in archives:
            archive.stop()
        engine.dispose()


def rows(store: SqlStore, *, with_write_times: bool = False) -> dict[str, list[dict[str, object]]]:
    """Every row of every table, in key order (without the write times unless asked)."""
    skip = set() if with_write_times else {"ingested_at", "updated_at"}
    return {t.name: sorted(({k: v for k, v in r.items() if k not in skip or t.name == "archive_notifications"}
                            for r in store.rows(t)), key=repr) for t in TABLES}


def summarise_event(event: Envelope) -> ArchivedEvent:
    from services.archive.records import summarise

    return summarise(event)
