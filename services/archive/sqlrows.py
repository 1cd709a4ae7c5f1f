"""Row helpers of the archive's SQL adapter: dataclass rows as dicts, the row an event
belongs to, and PostgreSQL's batched upsert text. No I/O."""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import Dialect, Table

from services.archive.records import ArchivedEvent

_UNNEST: dict[tuple[str, bool], str] = {}


def unnest_sql(table: Table, keys: list[str], *, update: bool, dialect: Dialect) -> str:
    """PostgreSQL: INSERT ... SELECT * FROM unnest(one array per column) ON CONFLICT ... RETURNING
    the keys. The text is the same for every batch, so psycopg parses it once and the server
    prepares it; a multi-row VALUES list is a new text per batch size, parsed every time."""
    sql = _UNNEST.get((table.name, update))
    if sql is None:
        names = [c.name for c in table.c]
        # %(name)b: psycopg sends the array in binary (no per-element escaping in Python)
        arrays = ", ".join(f"CAST(%({c.name})b AS {c.type.compile(dialect=dialect)}[])" for c in table.c)
        conflict = (("DO UPDATE SET " + ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in keys))
                    if update else "DO NOTHING")
        sql = (f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "  # noqa: S608 - names from the tables module, values bound
               f"ON CONFLICT ({', '.join(keys)}) {conflict} RETURNING {', '.join(keys)}")
        _UNNEST[(table.name, update)] = sql
    return sql


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


