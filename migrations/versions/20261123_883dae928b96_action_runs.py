"""Action runs: confirm-before-execute webhook runs; a timeline kind for their results.

Revision ID: 883dae928b96
Revises: b5a7e0c0d6a1
Create Date: 2026-11-23 07:39:10.847917
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "883dae928b96"
down_revision: str | None = "b5a7e0c0d6a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The timeline kinds as of the previous revision.
KINDS = (
    "'note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist',"
    " 'runbook', 'update', 'impact'"
)


def upgrade() -> None:
    op.create_table(
        "action_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column(
            "state", sa.String(length=24), server_default=sa.text("'awaiting_confirmation'"), nullable=False
        ),
        sa.Column("prepared_by_id", sa.Integer(), nullable=False),
        sa.Column("prepared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirm_token_hash", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("request_headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("request_body", sa.Text(), nullable=False),
        sa.Column("timeout_ms", sa.Integer(), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "state IN ('awaiting_confirmation', 'running', 'succeeded', 'failed', 'timed_out')",
            name=op.f("ck_action_runs_state"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_action_runs_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prepared_by_id"], ["users.id"], name=op.f("fk_action_runs_prepared_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_runs")),
    )
    op.create_index(
        "ix_action_runs_incident_action", "action_runs", ["incident_id", "action", "started_at"], unique=False
    )
    op.create_index("ix_action_runs_prepared_at", "action_runs", ["prepared_at"], unique=False)
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"),
        "timeline_entries",
        f"kind IN ({KINDS}, 'action_run')",
    )


def downgrade() -> None:
    op.execute("DELETE FROM timeline_entries WHERE kind = 'action_run'")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", f"kind IN ({KINDS})")
    op.drop_index("ix_action_runs_prepared_at", table_name="action_runs")
    op.drop_index("ix_action_runs_incident_action", table_name="action_runs")
    op.drop_table("action_runs")
