"""The case row's assessment of a suggestion: decision, reason, when and by whom.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Spelled out here rather than read from ``services.archive.tables``: a migration stays what
it was when it shipped. Existing rows get NULLs: no suggestion was assessed before the
``suggestion_assessed`` case action existed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS: tuple[tuple[str, Any, str | None], ...] = (
    ("assessment_decision", sa.String(), "a suggestion's: adopted | declined"),
    ("assessment_reason", sa.Text(), "why, staff text scrubbed"),
    ("assessed_at", sa.DateTime(timezone=True), None),
    ("assessed_by", sa.String(), "staff id of the assessor"),
)


def upgrade() -> None:
    with op.batch_alter_table("archive_cases") as batch:
        for name, type_, comment in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True, comment=comment))


def downgrade() -> None:
    with op.batch_alter_table("archive_cases") as batch:
        for name, _, _ in reversed(COLUMNS):
            batch.drop_column(name)
