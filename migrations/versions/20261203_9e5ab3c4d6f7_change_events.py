"""Alerts keep their history; PagerDuty change events.

An alert's (source, dedup_key) is unique among *firing* rows only, so a key that fires again after
its resolve opens a new row and the resolved one stays (PagerDuty's rule). change_events holds
what PagerDuty's /v2/change/enqueue receives.

Revision ID: 9e5ab3c4d6f7
Revises: 7c3e91a2b4d5
Create Date: 2026-12-03 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "9e5ab3c4d6f7"
down_revision: str | None = "7c3e91a2b4d5"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("uq_alerts_source_dedup_key"), "alerts", type_="unique")
    op.create_index(
        "uq_alerts_source_dedup_key_firing",
        "alerts",
        ["source", "dedup_key"],
        unique=True,
        postgresql_where=sa.text("status = 'firing'"),
    )
    op.create_index("ix_alerts_source_dedup_key", "alerts", ["source", "dedup_key", "id"], unique=False)
    op.create_table(
        "change_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("origin", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("custom_details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("links", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_events")),
    )
    op.create_index("ix_change_events_occurred_at", "change_events", ["occurred_at", "id"], unique=False)
    op.create_index(
        "ix_change_events_service_occurred_at", "change_events", ["service", "occurred_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_change_events_service_occurred_at", table_name="change_events")
    op.drop_index("ix_change_events_occurred_at", table_name="change_events")
    op.drop_table("change_events")
    op.drop_index("ix_alerts_source_dedup_key", table_name="alerts")
    op.drop_index(
        "uq_alerts_source_dedup_key_firing",
        table_name="alerts",
        postgresql_where=sa.text("status = 'firing'"),
    )
    # Fails while a key has more than one row (an alert that fired again): merging them would
    # destroy history, so that is left to whoever downgrades.
    op.create_unique_constraint(op.f("uq_alerts_source_dedup_key"), "alerts", ["source", "dedup_key"])
