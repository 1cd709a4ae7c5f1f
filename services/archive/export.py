"""Closed cases as CSV or JSON lines (`complaints export`), streamed from the archive.

A case is exported when it is closed (``archive_cases.status``) and its ``closed_at`` lies
in the range. The columns are an allow-list of the case row: the archive holds no personal
data, and the export leaves out even the pseudonymous customer key and the masked contact,
so a file handed round for analysis identifies nobody. Staff are named by their staff ids
(handler, co-handlers, approver, assessor); staff text (the result, an assessment's reason) is
kept as the archive keeps it, every e-mail address and phone number in it masked. Rows are
read ``batch`` at a time (a server-side cursor on PostgreSQL) and written as they come.

CSV: a header row, UTF-8 with a byte-order mark (Excel reads it as UTF-8), times ISO 8601
in UTC, booleans ``true``/``false``, empty for none; a text cell that a spreadsheet would
take for a formula (``= + - @``, tab, carriage return first) gets a leading apostrophe.
JSONL: one JSON object per line, times ISO 8601, UTF-8 unescaped. A compensation amount is
the decimal as text (``"800.00"``, as in CSV and on the topics): exact, never a float.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TextIO

from sqlalchemy import Engine, select

from services.archive.tables import cases

Format = Literal["csv", "jsonl"]

COLUMNS: tuple[str, ...] = (
    "complaint_id", "status", "channel", "nature", "language", "received_at", "registered_at",
    "demand", "product", "store_id", "first_contact_owner", "code", "code_name_zh", "code_name_en",
    "department", "severity", "level", "highest_level", "handler", "co_handlers", "review", "repeat_of",
    "routed_revision", "escalation_count", "acknowledged_at", "plan_decided_at", "plan_measures",
    "resolved_at", "closed_at", "result", "solution", "compensation_amount", "compensation_currency",
    "party_at_fault", "root_cause", "approved_by", "last_contact_at", "last_contact_kind",
    "last_contact_purpose", "last_contact_reached", "reopen_count", "satisfaction_score",
    "satisfaction_at", "assessment_decision", "assessment_reason", "assessed_at", "assessed_by",
    "policy_version",
)
"""The exported case columns, in order (never ``customer_key`` or ``contact_masked``): the case's
facts in the order of its life, each work column (revisions 0002, 0003) beside the step it
belongs to."""

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def closed_cases(engine: Engine, *, start: datetime, end: datetime,
                 batch: int = 1000) -> Iterator[dict[str, Any]]:
    """The cases closed in [start, end), oldest closure first, read ``batch`` rows at a time."""
    query = (select(*(cases.c[name] for name in COLUMNS))
             .where((cases.c.status == "closed") & (cases.c.closed_at >= start) & (cases.c.closed_at < end))
             .order_by(cases.c.closed_at, cases.c.complaint_id))
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="DEFERRED", yield_per=batch)
        with conn.begin():
            for row in conn.execute(query):
                yield dict(row._mapping)


def csv_cell(value: Any) -> str:
    """One CSV cell: ISO times, true/false, empty for none, formula-like text defused."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA) else value
    return str(value)


def json_line(row: dict[str, Any]) -> str:
    """One JSONL line (without the newline): times ISO 8601, amounts as decimal text, text unescaped."""
    return json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def write(rows: Iterable[dict[str, Any]], out: TextIO, *, fmt: Format) -> int:
    """Write the rows to ``out`` (a text stream opened with newline=""); return how many."""
    n = 0
    if fmt == "csv":
        out.write("\ufeff")
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([csv_cell(row.get(name)) for name in COLUMNS])
            n += 1
        return n
    for row in rows:
        out.write(json_line(row) + "\n")
        n += 1
    return n
