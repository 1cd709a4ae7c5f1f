"""Row helpers of the archive's SQL adapter: dataclass rows as dicts, the row an event
belongs to, and PostgreSQL's batched upsert text. No I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Table

from services.archive.records import ArchivedEvent

STAGE_PREFIX = "archive_stage_"  # session-private staging tables (PostgreSQL: TEMP)


def stage_sql(table: Table, keys: list[str], *, update: bool) -> tuple[str, str, str]:
    """PostgreSQL, the COPY path: the staging table's CREATE (a TEMP copy of ``table``'s
    columns, emptied at every commit), the COPY into it, and the INSERT ... SELECT from it in
    key order ON CONFLICT ... RETURNING the keys. psycopg formats COPY rows in C; rows sent as
    one array per column (``INSERT ... SELECT * FROM unnest(...)``) were dumped element by
    element in Python: a third of the archive's CPU on a backlog."""
    names = [c.name for c in table.c]
    stage = STAGE_PREFIX + table.name
    cols = ", ".join(names)
    conflict = (("DO UPDATE SET " + ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in keys))
                if update else "DO NOTHING")
    return (f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table.name}) ON COMMIT DELETE ROWS",
            f"COPY {stage} ({cols}) FROM STDIN",
            f"INSERT INTO {table.name} ({cols}) SELECT {cols} FROM {stage} "  # noqa: S608 - names from the tables module
            f"ORDER BY {', '.join(keys)} ON CONFLICT ({', '.join(keys)}) {conflict} "
            f"RETURNING {', '.join(keys)}")


def fields(row: Any) -> dict[str, Any]:
    """A row dataclass as a dict (shallow: ``dataclasses.asdict`` deep-copies, and costs)."""
    names = _NAMES.get(type(row))
    if names is None:
        names = _NAMES[type(row)] = tuple(f.name for f in dataclasses.fields(row))
    values = getattr(row, "__dict__", None)
    if values is not None and len(values) == len(names):  # a plain dataclass: its fields, a C copy
        return dict(values)
    return {name: getattr(row, name) for name in names}


_NAMES: dict[type, tuple[str, ...]] = {}


def row_key(e: ArchivedEvent) -> tuple[object, ...]:
    """The SLA or notification row an event belongs to."""
    if e.type == "sla.alert":
        return "sla", e.complaint_id, str(e.summary["milestone"]), int(e.summary["cycle"])
    if e.type == "notification.recorded":
        return "notification", e.complaint_id, str(e.summary["notification_id"])
    return ("case",)


