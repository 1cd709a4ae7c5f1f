"""The archive's tables (SQLAlchemy Core). Created and changed only by the Alembic migrations
in ``services/archive/migrations``; this MetaData is what their ``env.py`` compares against.

- ``archive_events``         the audit trail: every event once (by id), its facts without
                             personal data (``records.summarise``)
- ``archive_cases``          one row per complaint, folded from its events (``logic.fold_case``)
- ``archive_sla``            one row per (complaint, milestone, cycle): the clock's outcome
- ``archive_notifications``  one row per notification: its final (or current) status

Strings are unbounded (VARCHAR): the event models bound what they carry, and a longer value
must not cost an event. Times are UTC: ``timestamptz`` on PostgreSQL; on SQLite, naive UTC
text in a fixed-width format, so that comparisons in SQL order them correctly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """An aware datetime stored in UTC and read back aware, in UTC, on every database."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is UTC:  # PostgreSQL's sessions are in UTC (database.py)
            return value
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> Any:
    """JSON, as JSONB on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")


def work_columns() -> list[Column[Any]]:
    """The case row's columns of the structured work (revision 0002)."""
    return [
        Column("co_handlers", String(), comment="handler@department, in the order added"),
        Column("plan_measures", Integer(), comment="corrective measures of the latest plan"),
        Column("solution", String()),
        Column("compensation_amount", Numeric(14, 2)),
        Column("compensation_currency", String()),
        Column("party_at_fault", String()),
        Column("root_cause", String(), comment="root-cause taxonomy code"),
        Column("approved_by", String(), comment="staff id of the resolution's approver"),
        Column("last_contact_at", UtcDateTime()),
        Column("last_contact_kind", String(), comment="phone_callback | visit | chat"),
        Column("last_contact_purpose", String(), comment="feedback | revisit | other"),
        Column("last_contact_reached", Boolean()),
    ]


def assessment_columns() -> list[Column[Any]]:
    """The case row's columns of a suggestion's assessment (revision 0003)."""
    return [
        Column("assessment_decision", String(), comment="a suggestion's: adopted | declined"),
        Column("assessment_reason", Text(), comment="why, staff text scrubbed"),
        Column("assessed_at", UtcDateTime()),
        Column("assessed_by", String(), comment="staff id of the assessor"),
    ]


metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})

events = Table(
    "archive_events", metadata,
    Column("event_id", String(), primary_key=True),
    Column("complaint_id", String(), nullable=False),
    Column("topic", String(), nullable=False),
    Column("type", String(), nullable=False),
    Column("time", UtcDateTime(), nullable=False, comment="event time"),
    Column("actor", String(), nullable=False, comment="a case event's actor, else the producing service"),
    Column("action", String(), nullable=False,
           comment="decision kind, case action, SLA outcome or notification status"),
    Column("causation_id", String()),
    Column("summary", json_type(), nullable=False, comment="the event's facts, personal data removed"),
    Column("ingested_at", UtcDateTime(), nullable=False),
    Index("ix_archive_events_complaint_id", "complaint_id"),
)

cases = Table(
    "archive_cases", metadata,
    Column("complaint_id", String(), primary_key=True),
    Column("status", String(), nullable=False,
           comment="open | awaiting_customer | resolved | reopened | closed"),
    Column("channel", String()),
    Column("nature", String()),
    Column("language", String()),
    Column("received_at", UtcDateTime()),
    Column("registered_at", UtcDateTime()),
    Column("customer_key", String(), comment="keyed hash of the customer's identity"),
    Column("contact_masked", String()),
    Column("demand", String()),
    Column("product", Text()),
    Column("store_id", String()),
    Column("first_contact_owner", String()),
    Column("code", String()),
    Column("code_name_zh", String()),
    Column("code_name_en", String()),
    Column("department", String()),
    Column("severity", String()),
    Column("level", String()),
    Column("highest_level", String()),
    Column("handler", String()),
    Column("review", Boolean()),
    Column("repeat_of", String()),
    Column("routed_revision", Integer()),
    Column("escalation_count", Integer(), nullable=False),
    Column("acknowledged_at", UtcDateTime()),
    Column("plan_decided_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("closed_at", UtcDateTime()),
    Column("result", Text()),
    Column("reopen_count", Integer(), nullable=False),
    Column("satisfaction_score", Integer()),
    Column("satisfaction_at", UtcDateTime()),
    Column("policy_version", String()),
    Column("event_count", Integer(), nullable=False),
    *work_columns(),
    *assessment_columns(),
    Column("last_event_time", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False, comment="when the archive last wrote the row"),
    Index("ix_archive_cases_status_closed_at", "status", "closed_at"),
    Index("ix_archive_cases_received_at", "received_at"),
)

sla = Table(
    "archive_sla", metadata,
    Column("complaint_id", String(), nullable=False),
    Column("milestone", String(), nullable=False),
    Column("cycle", Integer(), nullable=False),
    Column("severity", String()),
    Column("clock", String()),
    Column("started_at", UtcDateTime()),
    Column("deadline", UtcDateTime()),
    Column("outcome", String(), nullable=False, comment="met | breached | cancelled | open"),
    Column("on_time", Boolean()),
    Column("met_at", UtcDateTime()),
    Column("breached_at", UtcDateTime()),
    Column("cancelled_at", UtcDateTime()),
    Column("policy_version", String()),
    Column("warnings", Integer(), nullable=False),
    Column("last_event_time", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("complaint_id", "milestone", "cycle", name="pk_archive_sla"),
)

notifications = Table(
    "archive_notifications", metadata,
    Column("notification_id", String(), primary_key=True),
    Column("complaint_id", String(), nullable=False),
    Column("kind", String(), nullable=False),
    Column("role", String(), nullable=False),
    Column("transport", String(), nullable=False),
    Column("recipient", String(), nullable=False, comment="masked on the topic already"),
    Column("language", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("attempts", Integer(), nullable=False),
    Column("queued_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    Column("updated_at", UtcDateTime(), nullable=False, comment="time of its latest step"),
    Index("ix_archive_notifications_complaint_id", "complaint_id"),
)

TABLES = (events, cases, sla, notifications)
"""Every table of the archive; each has a complaint_id column."""
