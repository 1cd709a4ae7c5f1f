"""The archive's PostgreSQL writes through COPY and a session's staging tables: a staging table
created in a transaction that rolled back is made again, a table written twice in one
transaction holds only the second batch, and how each case row was folded is reported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from services.archive import logic
from services.archive.adapters import SqlStore
from services.archive.database import make_engine, upgrade
from services.archive.sqlrows import fields
from services.archive.tables import cases
from tests.postgres import fresh_database, postgres_url  # noqa: F401 - the session fixture
from tests.test_archive_db import NOW, snapshot
from tests.test_archive_logic import closed_story

pytestmark = pytest.mark.integration


@pytest.fixture
def store(postgres_url: str) -> Iterator[SqlStore]:  # noqa: F811 - the fixture
    with fresh_database(postgres_url) as url:
        engine = make_engine(url)
        upgrade(engine)
        # calls one after the other check the pool's one connection out again: one session,
        # whose staging tables are at stake
        yield SqlStore(engine)
        engine.dispose()


def test_a_staging_table_lost_with_a_rolled_back_transaction_is_made_again(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a first append whose transaction fails after its events were staged (the staging
    # table was created in it, and goes with its rollback)
    trail = closed_story("S1").archived()
    calls = {"n": 0}
    refold = SqlStore._refold

    def failing(self: SqlStore, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the process fails mid-transaction")
        return refold(self, *args, **kwargs)

    monkeypatch.setattr(SqlStore, "_refold", failing)
    with pytest.raises(RuntimeError):
        store.append(trail, now=NOW)
    # When the same session appends again
    appended = store.append(trail, now=NOW)
    # Then everything is archived, and folded as the pure fold of the trail
    assert len(appended.new_events) == len(trail)
    assert store.case("S1") == logic.fold_case(trail)


def test_a_table_written_twice_in_one_transaction_gets_each_batch_once(store: SqlStore) -> None:
    # Given the case rows of two complaints, upserted one batch after the other in one transaction
    rows = [{**fields(logic.fold_case(closed_story(cid).archived())), "updated_at": NOW}
            for cid in ("S2", "S3")]
    with store._tx() as conn:
        a = store._write(conn, cases, rows[:1], keys=["complaint_id"], update=True)
        b = store._write(conn, cases, rows[1:], keys=["complaint_id"], update=True)
    # Then each statement wrote its own batch: the second did not write the first's row again
    assert (a, b) == ([("S2",)], [("S3",)])
    assert [r["complaint_id"] for r in snapshot(store)["archive_cases"]] == ["S2", "S3"]


def test_the_fold_paths_are_reported_new_advanced_and_from_the_trail(store: SqlStore) -> None:
    # Given a case archived up to its resolution
    trail = logic.ordered(closed_story("S4").archived())
    resolved = next(i for i, e in enumerate(trail) if e.action == "resolved")
    assert store.append(trail[:resolved], now=NOW).folds == (("new", 1),)
    # When its later events come, then the row advances without the trail
    assert store.append(trail[resolved + 1:], now=NOW).folds == (("advanced", 1),)
    # And an older case event (arrival out of order) asks for the trail
    assert store.append([trail[resolved]], now=NOW).folds == (("trail", 1),)
    with store._tx(write=False) as conn:
        row = conn.execute(cases.select().where(cases.c.complaint_id == "S4")).one()._asdict()
    assert row["event_count"] == len(trail)
    assert store.case("S4") == logic.fold_case(trail)
