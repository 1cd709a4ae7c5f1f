"""The case row's structured work: co-handlers, plan, outcome, approval, last contact.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-09

Spelled out here rather than read from ``services.archive.tables``: a migration stays what
it was when it shipped. Existing rows get NULLs: events archived before these facts
existed carry none of them, and a case's next event refolds its row from its whole trail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: tuple[tuple[str, Any, str | None], ...] = (
    ("co_handlers", sa.String(), "handler@department, in the order added"),
    ("plan_measures", sa.Integer(), "corrective measures of the latest plan"),
    ("solution", sa.String(), None),
    ("compensation_amount", sa.Numeric(14, 2), None),
    ("compensation_currency", sa.String(), None),
    ("party_at_fault", sa.String(), None),
    ("root_cause", sa.String(), "root-cause taxonomy code"),
    ("approved_by", sa.String(), "staff id of the resolution's approver"),
    ("last_contact_at", sa.DateTime(timezone=True), None),
    ("last_contact_kind", sa.String(), "phone_callback | visit | chat"),
    ("last_contact_purpose", sa.String(), "feedback | revisit | other"),
    ("last_contact_reached", sa.Boolean(), None),
)


def upgrade() -> None:
    with op.batch_alter_table("archive_cases") as batch:
        for name, type_, comment in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True, comment=comment))


def downgrade() -> None:
    with op.batch_alter_table("archive_cases") as batch:
        for name, _, _ in reversed(COLUMNS):
            batch.drop_column(name)
