"""The archive's tables: events (the audit trail), cases, SLA clocks, notifications.

Revision ID: 0001
Revises:
Create Date: 2026-12-02

Spelled out here rather than read from ``services.archive.tables``: a migration stays what
it was when it shipped, whatever the tables module says later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, *, nullable: bool = True, comment: str | None = None) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, comment=comment)


def _str(name: str, *, nullable: bool = True, comment: str | None = None) -> sa.Column[Any]:
    return sa.Column(name, sa.String(), nullable=nullable, comment=comment)


def upgrade() -> None:
    op.create_table(
        "archive_events",
        _str("event_id", nullable=False),
        _str("complaint_id", nullable=False),
        _str("topic", nullable=False),
        _str("type", nullable=False),
        _at("time", nullable=False, comment="event time"),
        _str("actor", nullable=False, comment="a case event's actor, else the producing service"),
        _str("action", nullable=False,
             comment="decision kind, case action, SLA outcome or notification status"),
        _str("causation_id"),
        sa.Column("summary", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False,
                  comment="the event's facts, personal data removed"),
        _at("ingested_at", nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_archive_events"),
    )
    op.create_index("ix_archive_events_complaint_id", "archive_events", ["complaint_id"])

    op.create_table(
        "archive_cases",
        _str("complaint_id", nullable=False),
        _str("status", nullable=False, comment="open | awaiting_customer | resolved | reopened | closed"),
        _str("channel"), _str("nature"), _str("language"),
        _at("received_at"), _at("registered_at"),
        _str("customer_key", comment="keyed hash of the customer's identity"),
        _str("contact_masked"), _str("demand"),
        sa.Column("product", sa.Text(), nullable=True),
        _str("store_id"), _str("first_contact_owner"), _str("code"), _str("code_name_zh"),
        _str("code_name_en"), _str("department"), _str("severity"), _str("level"),
        _str("highest_level"), _str("handler"),
        sa.Column("review", sa.Boolean(), nullable=True),
        _str("repeat_of"),
        sa.Column("routed_revision", sa.Integer(), nullable=True),
        sa.Column("escalation_count", sa.Integer(), nullable=False),
        _at("acknowledged_at"), _at("plan_decided_at"), _at("resolved_at"), _at("closed_at"),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("satisfaction_score", sa.Integer(), nullable=True),
        _at("satisfaction_at"),
        _str("policy_version"),
        sa.Column("event_count", sa.Integer(), nullable=False),
        _at("last_event_time"),
        _at("updated_at", nullable=False, comment="when the archive last wrote the row"),
        sa.PrimaryKeyConstraint("complaint_id", name="pk_archive_cases"),
    )
    op.create_index("ix_archive_cases_status_closed_at", "archive_cases", ["status", "closed_at"])
    op.create_index("ix_archive_cases_received_at", "archive_cases", ["received_at"])

    op.create_table(
        "archive_sla",
        _str("complaint_id", nullable=False),
        _str("milestone", nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        _str("severity"), _str("clock"),
        _at("started_at"), _at("deadline"),
        _str("outcome", nullable=False, comment="met | breached | cancelled | open"),
        sa.Column("on_time", sa.Boolean(), nullable=True),
        _at("met_at"), _at("breached_at"), _at("cancelled_at"),
        _str("policy_version"),
        sa.Column("warnings", sa.Integer(), nullable=False),
        _at("last_event_time", nullable=False),
        sa.PrimaryKeyConstraint("complaint_id", "milestone", "cycle", name="pk_archive_sla"),
    )

    op.create_table(
        "archive_notifications",
        _str("notification_id", nullable=False),
        _str("complaint_id", nullable=False),
        _str("kind", nullable=False),
        _str("role", nullable=False),
        _str("transport", nullable=False),
        _str("recipient", nullable=False, comment="masked on the topic already"),
        _str("language", nullable=False),
        _str("status", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        _at("queued_at"), _at("sent_at"),
        _at("updated_at", nullable=False, comment="time of its latest step"),
        sa.PrimaryKeyConstraint("notification_id", name="pk_archive_notifications"),
    )
    op.create_index("ix_archive_notifications_complaint_id", "archive_notifications", ["complaint_id"])


def downgrade() -> None:
    op.drop_table("archive_notifications")
    op.drop_table("archive_sla")
    op.drop_table("archive_cases")
    op.drop_table("archive_events")
