"""The archive's SQL store on SQLite and on a real PostgreSQL: idempotent, order-free, private,
retention, migrations. Every test gets a fresh database migrated with ``alembic upgrade head``."""

from __future__ import annotations

import contextlib
import json
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import event, inspect, text

from services.archive import logic
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.records import ArchivedEvent
from services.archive.tables import TABLES, metadata
from tests.postgres import fresh_database, postgres_url  # noqa: F401 - the session fixture
from tests.test_archive_logic import PERSONAL, closed_story, open_story, reopened_story

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEYS = {"archive_events": ("event_id",), "archive_cases": ("complaint_id",),
        "archive_sla": ("complaint_id", "milestone", "cycle"), "archive_notifications": ("notification_id",)}
WRITE_TIMES = {"archive_events": "ingested_at", "archive_cases": "updated_at"}  # when written, not what

Stores = Callable[[], SqlStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Makes fresh, migrated archives on one backend (SQLite files, or PostgreSQL databases)."""
    opened: contextlib.ExitStack = contextlib.ExitStack()
    server = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    made = iter(range(1000))

    def make() -> SqlStore:
        if server is None:
            url = f"sqlite:///{tmp_path / f'archive-{next(made)}.sqlite3'}"
        else:
            url = opened.enter_context(fresh_database(server))
        engine = make_engine(url)
        opened.callback(engine.dispose)
        upgrade(engine)
        return SqlStore(engine)

    with opened:
        yield make


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database (never migrated) on one backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'blank.sqlite3'}"
        return
    with fresh_database(request.getfixturevalue("postgres_url")) as url:
        yield url


def deliver(store: SqlStore, events: list[ArchivedEvent], *, batch: int = 5) -> int:
    """Append in batches, as the agent does; return how many events were new."""
    return sum(len(store.append(events[i:i + batch], now=NOW).new_events)
               for i in range(0, len(events), batch))


def snapshot(store: SqlStore, *, with_write_times: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, by primary key (without the write times unless asked)."""
    out = {}
    for table in TABLES:
        skip = set() if with_write_times else {WRITE_TIMES.get(table.name)}
        rows = [{k: v for k, v in row.items() if k not in skip} for row in store.rows(table)]
        out[table.name] = sorted(rows, key=lambda r: tuple(r[k] for k in KEYS[table.name]))
    return out


def stories() -> list[ArchivedEvent]:
    return [e for s in (closed_story("D1"), reopened_story("D2"), open_story("D3")) for e in s.archived()]


def test_any_order_and_a_second_delivery_leave_identical_rows(stores: Stores) -> None:
    # Given the events of three cases (closed, reopened and closed, still open)
    events = stories()
    shuffled = random.Random(12).sample(events, len(events))
    results = []
    # When each order is delivered in batches to a fresh archive, and then delivered again
    for order in (events, events[::-1], shuffled):
        store = stores()
        assert deliver(store, order) == len(events)
        first = snapshot(store, with_write_times=True)
        assert deliver(store, order[::-1], batch=7) == 0
        # Then the second delivery changed nothing at all
        assert snapshot(store, with_write_times=True) == first
        results.append(snapshot(store))
    # And every order gave the same rows
    assert results[0] == results[1] == results[2]
    # And they are the pure fold of the events
    cases = {r["complaint_id"]: r for r in results[0]["archive_cases"]}
    for cid in ("D1", "D2", "D3"):
        case, clocks, notes = logic.fold([e for e in events if e.complaint_id == cid])
        assert cases[cid] == vars(case)
    assert [r["status"] for r in results[0]["archive_cases"]] == ["closed", "closed", "awaiting_customer"]
    assert len(results[0]["archive_events"]) == len(events)


def test_the_trail_and_the_case_read_back_as_archived(stores: Stores) -> None:
    # Given an archived case
    store = stores()
    events = closed_story("D4").archived()
    deliver(store, events)
    # When its trail and case row are read back, then they are what was archived and folded
    assert store.trail("D4") == logic.ordered(events)
    assert store.case("D4") == logic.fold_case(events)
    assert store.trail("nobody") == [] and store.case("nobody") is None
    assert logic.history_lines(store.trail("D4"), lang="zh") == logic.history_lines(events, lang="zh")


def test_complaints_without_a_row_are_folded_from_the_batch_without_reading_their_trail(
        stores: Stores) -> None:
    # Given an archive that holds one case, and a batch with the whole trails of two new
    # complaints and a later event of the archived one
    store = stores()
    held = closed_story("D5").archived()
    deliver(store, held[:-1], batch=100)
    fresh = [e for cid in ("D6", "D7") for e in closed_story(cid).archived()]
    later = held[-1:]
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        # When the batch is appended
        appended = store.append([*fresh, *later], now=NOW)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    # Then no whole trail was read back: the new complaints' trails are the batch's events
    trail_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")
                   and "archive_events" in s and "sla.alert" not in s and "notification" not in s]
    assert trail_reads == [], trail_reads
    assert appended.complaints == 3 and len(appended.new_events) == len(fresh) + 1
    # And the rows are the pure fold of every archived event (as a refold from the trails writes)
    folded = snapshot(store)
    assert store.refold(now=NOW) == 3
    assert snapshot(store) == folded
    for cid in ("D6", "D7"):
        assert store.case(cid) == logic.fold_case([e for e in fresh if e.complaint_id == cid])


def test_postgresql_sessions_run_in_utc(postgres_url: str) -> None:  # noqa: F811 - the fixture
    # Given the archive's engine on PostgreSQL, when it connects, then its session's zone is UTC
    # whatever the server's (times come back with datetime.UTC: no conversion per value)
    with fresh_database(postgres_url) as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            with engine.connect() as conn:
                assert conn.execute(text("SHOW TIME ZONE")).scalar_one() == "UTC"
            store = SqlStore(engine)
            deliver(store, closed_story("D8").archived())
            trail = store.trail("D8")
            assert trail and all(e.time.tzinfo is UTC for e in trail)
        finally:
            engine.dispose()


def test_a_refold_of_everything_rewrites_the_same_rows(stores: Stores) -> None:
    # Given archived cases
    store = stores()
    deliver(store, stories())
    before = snapshot(store)
    # When every row is refolded from the trails (as after an upgrade that changed a fold)
    assert store.refold(now=NOW + timedelta(days=1)) == 3
    # Then the rows are the same, rewritten now
    assert snapshot(store) == before
    assert {r["updated_at"] for r in snapshot(store, with_write_times=True)["archive_cases"]} == {
        NOW + timedelta(days=1)}


def test_no_personal_data_in_any_table(stores: Stores) -> None:
    # Given archived cases whose registration names, phone, e-mail and words are the customer's
    store = stores()
    deliver(store, stories())
    # When every column of every row is read back
    dump = json.dumps(snapshot(store, with_write_times=True), ensure_ascii=False, default=str)
    # Then none of the personal data is there (the masked forms and the keyed identity are)
    for secret in PERSONAL:
        assert secret not in dump, secret
    assert "+86*******8000" in dump and "z***@example.com" in dump


def test_appends_of_one_case_from_many_writers_at_once_lose_nothing(stores: Stores) -> None:
    store = stores()
    errors: list[BaseException] = []

    def write(share: list[ArchivedEvent]) -> None:
        try:
            for e in share:
                store.append([e], now=NOW)
        except BaseException as exc:  # reported below
            errors.append(exc)

    for round_ in range(3):
        # Given two cases' events split between four writers, one event per transaction each
        first, second = reopened_story(f"R{round_}").archived(), closed_story(f"S{round_}").archived()
        events = first + second
        # When they all write at once
        threads = [threading.Thread(target=write, args=(events[i::4],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        # Then every event is archived and each row is the fold of all its case's events
        assert not errors
        assert store.case(f"R{round_}") == logic.fold_case(first)
        assert store.case(f"S{round_}") == logic.fold_case(second)


def test_a_batch_of_more_complaints_than_the_servers_lock_table_holds_is_archived(
        stores: Stores) -> None:
    # Given one batch of events of 24,000 different complaints, as a large ARCHIVE_BATCH_SIZE
    # gathers in a backlog (each complaint takes an advisory lock; PostgreSQL's lock table,
    # shared by all transactions, holds some thousands)
    store = stores()
    n = 24_000
    batch = [ArchivedEvent(event_id=f"L-{i}", complaint_id=f"L{i:05d}", topic="complaints.registered",
                           type="complaint.registered", time=NOW - timedelta(minutes=i % 600),
                           actor="intake", action="registered", causation_id=None,
                           summary={"channel": "web_form"}) for i in range(n)]
    # When it is appended at once
    appended = store.append(batch, now=NOW)
    # Then every event is new and every complaint has its case row; a second delivery adds nothing
    assert len(appended.new_events) == n and appended.complaints == n
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archive_cases")).scalar_one() == n
    assert store.case("L12345") == logic.fold_case([batch[12345]])
    again = store.append(batch, now=NOW)
    assert again.new_events == frozenset() and again.complaints == 0


def test_retention_deletes_exactly_the_closed_cases_older_than_the_limit(stores: Stores) -> None:
    # Given cases closed long ago, one still open from then, one closed recently,
    # and one closed exactly at the cutoff (10 years before now)
    store = stores()
    cutoff = logic.retention_cutoff(NOW, years=10)
    old = closed_story("OLD", datetime(2014, 3, 1, tzinfo=UTC))
    older = reopened_story("OLDER", datetime(2012, 3, 1, tzinfo=UTC))
    still_open = open_story("OPEN", datetime(2014, 3, 1, tzinfo=UTC))
    recent = closed_story("NEW", datetime(2025, 3, 1, tzinfo=UTC))
    edge = closed_story("EDGE", cutoff - timedelta(minutes=1860))  # closed at the cutoff itself
    for story in (old, older, still_open, recent, edge):
        deliver(store, story.archived())
    assert store.case("EDGE") is not None and store.case("EDGE").closed_at == cutoff  # type: ignore[union-attr]
    # When retention runs, a case at a time
    deleted = [store.purge(closed_before=cutoff, limit=1) for _ in range(3)]
    # Then the two old closed cases went, with their events, SLA and notification rows
    assert deleted == [1, 1, 0]
    rows = snapshot(store)
    for name, table_rows in rows.items():
        assert {r["complaint_id"] for r in table_rows} <= {"OPEN", "NEW", "EDGE"}, name
    assert {r["complaint_id"] for r in rows["archive_cases"]} == {"OPEN", "NEW", "EDGE"}
    assert store.trail("OLD") == [] and len(store.trail("NEW")) == len(recent.events)


def test_the_migration_builds_the_tables_of_the_metadata_and_runs_again_harmlessly(stores: Stores) -> None:
    # Given an empty database migrated to head (by the fixture), holding one case
    store = stores()
    deliver(store, closed_story("D7").archived())
    before = snapshot(store, with_write_times=True)
    # When the migration runs again
    upgrade(store.engine)
    upgrade(store.engine)
    # Then nothing changed, the version is the head, and the schema is the tables module's
    assert snapshot(store, with_write_times=True) == before
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003"]
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        names = set(inspect(conn).get_table_names())
    assert names == {t.name for t in TABLES} | {"alembic_version"}


def test_the_work_on_a_case_reads_back_as_folded_and_an_0001_archive_upgrades(
        stores: Stores, blank_url: str) -> None:
    from tests.test_casework_archive import worked_story

    # Given a case with structured work (a compensation of 800.00 CNY), archived
    store = stores()
    events = worked_story("W1").archived()
    deliver(store, events)
    # Then the row reads back exactly as folded (the amount as a decimal with two places)
    case = store.case("W1")
    assert case == logic.fold_case(events) and case is not None
    assert str(case.compensation_amount) == "800.00" and case.co_handlers == "quality-l1-02@quality"
    # Given an archive at revision 0001 holding a case
    engine = make_engine(blank_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO archive_cases (complaint_id, status, escalation_count, "
                              "reopen_count, event_count, updated_at) VALUES ('OLD', 'closed', 0, 0, 1, "
                              "'2026-11-01 00:00:00')"))
        # When it is upgraded to head
        upgrade(engine)
        # Then the case is kept, its new columns empty, and the schema is the tables module's
        with engine.connect() as conn:
            row = conn.execute(text("SELECT status, co_handlers, compensation_amount, approved_by, "
                                    "assessment_decision, assessed_by FROM archive_cases")).one()
            assert tuple(row) == ("closed", None, None, None, None, None)
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()


def test_instances_that_start_together_migrate_one_after_the_other(blank_url: str) -> None:
    # Given an empty database and three instances (processes), each ready to migrate
    code = ("import sys; from services.archive.database import make_engine, upgrade; "
            "engine = make_engine(sys.argv[1]); print('ready', flush=True); sys.stdin.readline(); "
            "upgrade(engine)")
    starts = [subprocess.Popen([sys.executable, "-c", code, blank_url], stdin=subprocess.PIPE,  # noqa: S603
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(3)]
    assert [p.stdout.readline().strip() for p in starts if p.stdout] == ["ready"] * 3
    # When they are told to go at once
    for p in starts:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.close()
    codes = [p.wait(timeout=60) for p in starts]
    errors = []
    for p in starts:
        assert p.stdout is not None and p.stderr is not None
        errors.append(p.stderr.read())
        p.stdout.close()
        p.stderr.close()
    # Then all succeed, and the schema is there once
    assert codes == [0, 0, 0], errors
    engine = make_engine(blank_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0003"]
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    finally:
        engine.dispose()
