"""Throttle sign-ins: failed attempts per account and per client address in fixed windows.

Counted in PostgreSQL (an upsert per attempt) so that every replica enforces the same limit.

Revision ID: 8d4fa2b3c5e6
Revises: 9e5ab3c4d6f7
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8d4fa2b3c5e6"
down_revision: str | None = "9e5ab3c4d6f7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("subject", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.CheckConstraint("scope IN ('account', 'address')", name=op.f("ck_sign_in_failures_scope")),
        sa.PrimaryKeyConstraint("scope", "subject", "window_start", name=op.f("pk_sign_in_failures")),
    )
    op.create_index("ix_sign_in_failures_window_start", "sign_in_failures", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sign_in_failures_window_start", table_name="sign_in_failures")
    op.drop_table("sign_in_failures")
