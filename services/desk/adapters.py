"""The archive database, read only: ``queries`` run in a worker thread per call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from services.common.policy import StaffPolicy
from services.desk import queries
from services.desk.auth import Identity
from services.desk.ports import CaseRecord
from services.desk.queries import Search

T = TypeVar("T")


class ArchiveReader:
    """``CaseReader`` over the archive's engine (SQLite read beside the archive's writer, or PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _read(self, fn: Callable[[Connection], T]) -> T:
        try:
            with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn:
                return fn(conn)
        except (DBAPIError, PoolTimeout) as exc:
            raise ConnectionError(f"archive database: {type(exc).__name__}") from None

    async def _run(self, fn: Callable[[Connection], T]) -> T:
        return await asyncio.to_thread(self._read, fn)

    async def work_list(self, kind: str, who: Identity, staff: StaffPolicy, *, now: datetime,
                        limit: int, offset: int, department: str | None) -> list[dict[str, Any]]:
        return await self._run(lambda c: queries.work_list(c, kind, who, staff, now=now, limit=limit,
                                                           offset=offset, department=department))

    async def search(self, filters: Search, who: Identity, staff: StaffPolicy, *, limit: int,
                     offset: int) -> list[dict[str, Any]]:
        return await self._run(lambda c: queries.search(c, filters, who, staff, limit=limit, offset=offset))

    async def case(self, complaint_id: str) -> CaseRecord | None:
        def read(conn: Connection) -> CaseRecord | None:
            row = queries.case_row(conn, complaint_id)
            if row is None:
                return None
            return CaseRecord(row=row, timeline=queries.timeline(conn, complaint_id),
                              deadlines=queries.deadlines(conn, complaint_id))
        return await self._run(read)

    async def event(self, complaint_id: str, event_id: str) -> dict[str, Any] | None:
        return await self._run(lambda c: queries.archived_event(c, complaint_id, event_id))

    async def count_actions(self, complaint_id: str, action: str, actors: list[str]) -> int:
        return await self._run(lambda c: queries.actions_by(c, complaint_id, action, actors))

    async def ping(self) -> None:
        await self._run(lambda c: c.execute(text("SELECT 1")))


class SealedContacts:
    """``Contacts``: the registered event from intake's timeline in Redis (its projection of every
    complaint's events), opened with the customer's data key (services.common.pii_keys)."""

    def __init__(self, redis: Any, *, prefix: str, keys: Any) -> None:
        self._r, self._timeline, self.keys = redis, f"{prefix}timeline:", keys

    async def contact(self, complaint_id: str) -> Any:
        from schemas.events import ComplaintRegistered

        for raw in (await self._r.hgetall(self._timeline + complaint_id)).values():
            value = raw if isinstance(raw, bytes) else raw.encode()
            if b'"complaint.registered"' in value:
                return ComplaintRegistered.model_validate_json(value).data.customer
        return None

    async def open(self, contact: Any) -> Any:
        return await self.keys.open(contact)
