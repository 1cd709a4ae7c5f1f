"""The archive in a relational database through SQLAlchemy Core: SQLite or PostgreSQL.

``SqlStore`` does the work synchronously, one transaction per call; ``SqlArchive`` (the
service's ``CaseArchive``) runs its calls in a worker thread so the event loop keeps going.
Writes are set-based, one transaction per batch (per ``TX_COMPLAINTS`` complaints of a larger
one): one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` for the batch's events, one read of
the touched complaints' rows, one upsert (``ON CONFLICT DO UPDATE``) per table. On PostgreSQL
the rows are COPYed into a session-private staging table and inserted from it in one
statement (``sqlrows.stage_sql``); on SQLite, SQLAlchemy's batched multi-row VALUES.

Concurrency: on PostgreSQL an append first takes a transaction-scoped advisory lock per
complaint it touches (in one statement, in key order, so two batches cannot deadlock); the
trail is read after the lock, so the last writer of a complaint always folds every event
committed before it. On SQLite every write transaction begins IMMEDIATE (one writer at a
time; WAL lets readers go on).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    JSON,
    ColumnElement,
    Connection,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    delete,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import InterfaceError, OperationalError

from services.archive import logic
from services.archive.database import json_text, make_engine, upgrade
from services.archive.ports import Appended
from services.archive.records import ArchivedEvent, CaseRow
from services.archive.sqlrows import STAGE_PREFIX, fields, row_key, stage_sql
from services.archive.tables import cases, events, notifications, sla

LOCK_SPACE = 712_041  # first key of the archive's per-complaint advisory locks (PostgreSQL)
CHUNK = 500  # complaint ids per IN (...) list
# complaints per append transaction: each holds one advisory lock per complaint, and the
# server's lock table is shared (max_locks_per_transaction x max_connections, 6,400 by
# default), so a large batch of distinct complaints is written in several transactions
TX_COMPLAINTS = 1000
_CASE_FIELDS = tuple(f.name for f in dataclasses.fields(CaseRow))
_TRAIL = tuple(events.c[f.name] for f in dataclasses.fields(ArchivedEvent))  # in field order
# one type instance for every ``= ANY(array)`` parameter: its cache key is computed once (a new
# ARRAY per call made SQLAlchemy derive the key again for every statement, a tenth of the CPU)
_IDS = ARRAY(String())
# an SLA clock's key, "complaint|milestone|cycle", of an sla.alert event (built once: building
# the expression cost as much as the query it is in)
_CLOCK_KEY = (events.c.complaint_id.concat("|").concat(events.c.summary["milestone"].as_string())
              .concat("|").concat(events.c.summary["cycle"].as_string()))


_STAGES = "archive_stages"  # conn.info: the staging tables this session has created
_STAGED = "archive_staged"  # conn.info: (transaction, the tables it staged rows in)


class DatabaseUnavailable(ConnectionError):
    """The archive database did not answer, or refused for now (locked, deadlock): retry."""


class SqlStore:
    """The archive's database work, synchronous: one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pg = engine.dialect.name == "postgresql"

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Connection]:
        try:
            conn = self.engine.connect()
        except (OperationalError, InterfaceError) as exc:
            raise _unavailable(exc) from exc
        try:
            if not write:
                conn = conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn
        except BaseException as exc:
            # a staging table created in a transaction that rolled back is gone with it
            conn.info.pop(_STAGES, None)
            if isinstance(exc, OperationalError | InterfaceError):
                raise _unavailable(exc) from exc
            raise
        finally:
            conn.close()

    def _in(self, column: Any, values: Sequence[str]) -> ColumnElement[bool]:
        """``column IN values``; on PostgreSQL ``= ANY(array)``: one parameter, a statement that caches."""
        if self._pg:
            return column == any_(bindparam("ids", list(values), type_=_IDS, unique=True))  # type: ignore[no-any-return]
        return column.in_(list(values))  # type: ignore[no-any-return]

    def _write(self, conn: Connection, table: Table, rows: list[dict[str, Any]], *, keys: list[str],
               update: bool) -> list[tuple[Any, ...]]:
        """Insert rows (sorted by key); on a key conflict update them, or (``update=False``) skip
        them; return the keys of the rows written."""
        if not rows:
            return []
        rows = sorted(rows, key=itemgetter(*keys))
        if self._pg:  # COPY into a staging table, then one INSERT ... SELECT (sqlrows.stage_sql)
            return self._copy(conn, table, rows, keys=keys, update=update)
        ins = sqlite.insert(table)
        stmt = (ins.on_conflict_do_update(index_elements=keys, set_={
                    c.name: ins.excluded[c.name] for c in table.c if c.name not in keys})
                if update else ins.on_conflict_do_nothing(index_elements=keys))
        return [tuple(r) for r in conn.execute(stmt.returning(*(table.c[k] for k in keys)), rows)]

    def _copy(self, conn: Connection, table: Table, rows: list[dict[str, Any]], *, keys: list[str],
              update: bool) -> list[tuple[Any, ...]]:
        """PostgreSQL: the rows COPYed into the table's staging table (created once per
        session, emptied at commit), then inserted from it in key order in one statement.
        (Tried before: the rows as one array per column through ``unnest``, dumped element by
        element in Python; one JSON parameter through ``json_populate_recordset``, dearer in
        PostgreSQL.)"""
        create, copy_sql, insert = stage_sql(table, keys, update=update)
        names = [c.name for c in table.c]
        jsons = {c.name for c in table.c if isinstance(c.type.dialect_impl(conn.dialect), JSON)}
        stages: set[str] = conn.info.setdefault(_STAGES, set())
        tx = conn.get_transaction()
        staged: tuple[object, set[str]] | None = conn.info.get(_STAGED)
        if staged is None or staged[0] is not tx:
            staged = conn.info[_STAGED] = (tx, set())
        if table.name not in stages:  # a new session (or one whose creating transaction rolled back)
            conn.exec_driver_sql(create)
            stages.add(table.name)
        elif table.name in staged[1]:  # a second write to the table in one transaction
            conn.exec_driver_sql(f"DELETE FROM {STAGE_PREFIX}{table.name}")  # noqa: S608 - our own table name
        staged[1].add(table.name)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(copy_sql) as copy:
                for r in rows:
                    copy.write_row([json_text(r[n]) if n in jsons and r[n] is not None else r[n]
                                    for n in names])
        finally:
            cursor.close()
        return [tuple(r) for r in conn.exec_driver_sql(insert).all()]

    def _lock(self, conn: Connection, complaint_ids: Sequence[str]) -> None:
        """PostgreSQL: lock the complaints until the transaction ends, in key order."""
        if self._pg and complaint_ids:
            conn.execute(text(
                "SELECT pg_advisory_xact_lock(:space, k) FROM "
                "(SELECT DISTINCT hashtext(c) AS k FROM unnest(CAST(:ids AS text[])) AS c) AS s "
                "ORDER BY k"), {"space": LOCK_SPACE, "ids": list(complaint_ids)})

    # ---- writing ------------------------------------------------------------------

    def append(self, batch: Sequence[ArchivedEvent], *, now: datetime) -> Appended:
        """Insert the events not archived yet and refold their complaints: one transaction per
        ``TX_COMPLAINTS`` complaints of the batch (each complaint's events in one of them)."""
        by_complaint: dict[str, dict[str, ArchivedEvent]] = {}
        for e in {e.event_id: e for e in batch}.values():  # the last copy of an id stands
            by_complaint.setdefault(e.complaint_id, {})[e.event_id] = e
        ids = sorted(by_complaint)
        new: set[str] = set()
        touched = 0
        folds: Counter[str] = Counter()
        for start in range(0, len(ids), TX_COMPLAINTS):
            chunk = ids[start:start + TX_COMPLAINTS]
            unique = sorted((e for cid in chunk for e in by_complaint[cid].values()),
                            key=lambda e: e.event_id)
            appended = self._append(unique, chunk, now=now)
            new |= appended.new_events
            touched += appended.complaints
            folds.update(dict(appended.folds))
        return Appended(frozenset(new), touched, tuple(sorted(folds.items())))

    def _append(self, unique: Sequence[ArchivedEvent], complaint_ids: Sequence[str], *,
                now: datetime) -> Appended:
        """One transaction: lock the complaints, insert the new events, refold."""
        with self._tx() as conn:
            self._lock(conn, complaint_ids)
            rows = [{**fields(e), "ingested_at": now} for e in unique]
            new = frozenset(k for (k,) in self._write(conn, events, rows, keys=["event_id"], update=False))
            added = [e for e in unique if e.event_id in new]
            touched = sorted({e.complaint_id for e in added})
            folds = self._refold(conn, touched, now=now, new=added)
        return Appended(new, len(touched), tuple(sorted(folds.items())))

    def refold(self, *, now: datetime, complaint_ids: Sequence[str] | None = None) -> int:
        """Refold the rows of the given complaints (all, by default) from their archived events,
        e.g. after an upgrade changed a fold; return how many complaints were refolded."""
        if complaint_ids is None:
            with self._tx(write=False) as conn:
                complaint_ids = list(conn.execute(select(events.c.complaint_id).distinct()).scalars())
        ids = sorted(set(complaint_ids))
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start:start + CHUNK]
            with self._tx() as conn:
                self._lock(conn, chunk)
                self._refold(conn, chunk, now=now)
        return len(ids)

    def _refold(self, conn: Connection, complaint_ids: Sequence[str], *, now: datetime,
                new: Sequence[ArchivedEvent] | None = None) -> Counter[str]:
        """Fold the complaints' rows and upsert them. Without ``new``: from their whole trails.
        With ``new`` (the events this append added): a case row whose new events all come
        after its last one is advanced from the row alone (``logic.advance_case``), the others
        are folded from their trails; a complaint without a row has no archived events but the
        new ones (its events and its rows are written, and purged, together), so its trail is
        not read; SLA and notification rows are folded from the events of the rows the new
        events changed, and no others. Returns how many case rows took each path."""
        trails: dict[str, list[ArchivedEvent]] = {}
        first: dict[str, list[ArchivedEvent]] = {}
        case_rows: list[dict[str, Any]] = []
        if new is None:
            trails = self._trails(conn, complaint_ids)
        else:
            later: dict[str, list[ArchivedEvent]] = {}
            for e in new:
                later.setdefault(e.complaint_id, []).append(e)
            stored = self._case_rows(conn, complaint_ids)
            refold = []
            for cid in complaint_ids:
                row = stored.get(cid)
                if row is None:  # no row, so no event archived before (an append writes both, or
                    first[cid] = later[cid]  # a purge deletes both): its trail is what came now
                    continue
                advanced = logic.advance_case(row, later[cid])
                if advanced is None:
                    refold.append(cid)
                else:
                    case_rows.append({**fields(advanced), "updated_at": now})
            trails = {**self._trails(conn, refold), **first}
        folds = Counter({"advanced": len(case_rows), "trail": len(trails) - len(first),
                         "new": len(first)})
        changed = None if new is None else {row_key(e) for e in new}
        sla_rows, note_rows = [], []
        for trail in trails.values():
            case_rows.append({**fields(logic.fold_case(trail)), "updated_at": now})
        clocks = trails if changed is None else self._clock_trails(conn, changed, have=trails)
        for trail in clocks.values():
            # an SLA or notification row is the fold of its own events only: fold the changed ones
            mine = trail if changed is None else [e for e in trail if row_key(e) in changed]
            sla_rows += [fields(r) for r in logic.fold_sla(mine)]
            note_rows += [fields(r) for r in logic.fold_notifications(mine)]
        self._write(conn, cases, case_rows, keys=["complaint_id"], update=True)
        self._write(conn, sla, sla_rows, keys=["complaint_id", "milestone", "cycle"], update=True)
        self._write(conn, notifications, note_rows, keys=["notification_id"], update=True)
        return +folds

    def _trails(self, conn: Connection, complaint_ids: Sequence[str], *,
                types: Sequence[str] = ()) -> dict[str, list[ArchivedEvent]]:
        """The archived events of the complaints (of the given types only, if any), by complaint."""
        trails: dict[str, list[ArchivedEvent]] = {}
        for start in range(0, len(complaint_ids), CHUNK):
            chunk = complaint_ids[start:start + CHUNK]
            query = select(*_TRAIL).where(self._in(events.c.complaint_id, chunk))
            if types:
                query = query.where(events.c.type.in_(list(types)))
            for row in conn.execute(query).all():  # fetchall: one call, not one per row
                e = ArchivedEvent(*row)
                trails.setdefault(e.complaint_id, []).append(e)
        return trails

    def _clock_trails(self, conn: Connection, changed: set[tuple[object, ...]], *,
                      have: dict[str, list[ArchivedEvent]]) -> dict[str, list[ArchivedEvent]]:
        """The events of the changed SLA and notification rows (by complaint), read by row key
        in the database; the trails already read are reused, not read again."""
        clocks = sorted(f"{k[1]}|{k[2]}|{k[3]}" for k in changed if k[0] == "sla" and k[1] not in have)
        notes = sorted((str(k[1]), str(k[2])) for k in changed if k[0] == "notification" and k[1] not in have)
        out: dict[str, list[ArchivedEvent]] = {cid: list(trail) for cid, trail in have.items()}
        summary = events.c.summary
        for start in range(0, len(clocks), CHUNK):
            chunk = clocks[start:start + CHUNK]
            ids = sorted({k.split("|", 1)[0] for k in chunk})
            query = select(*_TRAIL).where(self._in(events.c.complaint_id, ids),
                                          events.c.type == "sla.alert", self._in(_CLOCK_KEY, chunk))
            for row in conn.execute(query).all():
                e = ArchivedEvent(*row)
                out.setdefault(e.complaint_id, []).append(e)
        for start in range(0, len(notes), CHUNK):
            pairs = notes[start:start + CHUNK]
            query = select(*_TRAIL).where(
                self._in(events.c.complaint_id, sorted({cid for cid, _ in pairs})),
                events.c.type == "notification.recorded",
                self._in(summary["notification_id"].as_string(), [nid for _, nid in pairs]))
            for row in conn.execute(query).all():
                e = ArchivedEvent(*row)
                out.setdefault(e.complaint_id, []).append(e)
        return out

    def _case_rows(self, conn: Connection, complaint_ids: Sequence[str]) -> dict[str, CaseRow]:
        """The stored case rows of the complaints, by complaint."""
        out: dict[str, CaseRow] = {}
        for start in range(0, len(complaint_ids), CHUNK):
            chunk = complaint_ids[start:start + CHUNK]
            query = select(*(cases.c[f] for f in _CASE_FIELDS)).where(self._in(cases.c.complaint_id, chunk))
            for row in conn.execute(query).all():  # columns in field order
                out[row.complaint_id] = CaseRow(*row)
        return out

    def purge(self, *, closed_before: datetime, limit: int) -> int:
        """Delete up to ``limit`` cases closed before ``closed_before``, with every row of theirs."""
        old = (cases.c.status == "closed") & (cases.c.closed_at < closed_before)
        with self._tx() as conn:
            ids = list(conn.execute(select(cases.c.complaint_id).where(old)
                                    .order_by(cases.c.closed_at).limit(limit)).scalars())
            if not ids:
                return 0
            self._lock(conn, sorted(ids))  # then look again: a new event may have reopened one
            ids = list(conn.execute(select(cases.c.complaint_id)
                                    .where(old & self._in(cases.c.complaint_id, ids))).scalars())
            for table in (events, sla, notifications, cases):
                conn.execute(delete(table).where(self._in(table.c.complaint_id, ids)))
        return len(ids)

    # ---- reading ------------------------------------------------------------------

    def trail(self, complaint_id: str) -> list[ArchivedEvent]:
        """The complaint's archived events in trail order."""
        with self._tx(write=False) as conn:
            rows = conn.execute(select(*_TRAIL).where(events.c.complaint_id == complaint_id))
            return logic.ordered(ArchivedEvent(*r) for r in rows)

    def case(self, complaint_id: str) -> CaseRow | None:
        """The complaint's case row, if archived."""
        with self._tx(write=False) as conn:
            row = conn.execute(select(*(cases.c[f] for f in _CASE_FIELDS))
                               .where(cases.c.complaint_id == complaint_id)).first()
        return CaseRow(**row._asdict()) if row is not None else None

    def rows(self, table: Table, *, batch: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row of one of the archive's tables, streamed (for exports)."""
        with self._tx(write=False) as conn:
            result = conn.execution_options(yield_per=batch).execute(select(table))
            for row in result:
                yield row._asdict()

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self._tx(write=False) as conn:
            conn.execute(text("SELECT 1"))


def open_store(url: str, *, migrate: bool = True) -> SqlStore:
    """A store on the database at ``url``, migrated to the latest schema unless told not to
    (for the service, a rebuild, and the command line's history and export)."""
    engine = make_engine(url)
    if migrate:
        upgrade(engine)
    return SqlStore(engine)


class SqlArchive:
    """The service's ``CaseArchive``: ``SqlStore``'s calls, each in a worker thread."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def append(self, batch: Sequence[ArchivedEvent], *, now: datetime) -> Appended:
        return await asyncio.to_thread(self.store.append, batch, now=now)

    async def trail(self, complaint_id: str) -> list[ArchivedEvent]:
        return await asyncio.to_thread(self.store.trail, complaint_id)

    async def case(self, complaint_id: str) -> CaseRow | None:
        return await asyncio.to_thread(self.store.case, complaint_id)

    async def purge(self, *, closed_before: datetime, limit: int) -> int:
        return await asyncio.to_thread(self.store.purge, closed_before=closed_before, limit=limit)

    async def ping(self) -> None:
        await asyncio.to_thread(self.store.ping)


def _unavailable(exc: OperationalError | InterfaceError) -> DatabaseUnavailable:
    first = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else ""
    return DatabaseUnavailable(f"archive database: {type(exc.orig).__name__}: {first}"[:300])
