"""Viewers of an incident, fired escalations and their deliveries, service accounts, a trends index.

Revision ID: d1e5ca1a7e05
Revises: cc42360c8c54
Create Date: 2026-11-23 07:54:41.741565
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1e5ca1a7e05"
down_revision: str | None = "cc42360c8c54"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The timeline kinds as of the previous revision.
KINDS = (
    "'note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist',"
    " 'runbook', 'update', 'impact', 'action_run', 'alert'"
)


def upgrade() -> None:
    op.create_table(
        "escalations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("step_key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_escalations_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalations")),
        sa.UniqueConstraint("incident_id", "step_key", name=op.f("uq_escalations_incident_id_step_key")),
    )
    op.create_table(
        "viewers",
        sa.Column("connection", sa.Uuid(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_viewers_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_viewers_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("connection", name=op.f("pk_viewers")),
    )
    op.create_index("ix_viewers_incident_seen", "viewers", ["incident_id", "seen_at"], unique=False)
    op.create_table(
        "escalation_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("escalation_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'failed')", name=op.f("ck_escalation_notifications_state")
        ),
        sa.ForeignKeyConstraint(
            ["escalation_id"],
            ["escalations.id"],
            name=op.f("fk_escalation_notifications_escalation_id_escalations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_escalation_notifications")),
    )
    op.create_index(
        "ix_escalation_notifications_due",
        "escalation_notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        op.f("ix_escalation_notifications_escalation_id"),
        "escalation_notifications",
        ["escalation_id"],
        unique=False,
    )
    op.add_column("users", sa.Column("is_service", sa.Boolean(), server_default="false", nullable=False))
    op.execute("UPDATE users SET is_service = true WHERE email = 'alerts@icc.invalid'")
    op.create_index(
        "ix_incidents_declared_at",
        "incidents",
        ["declared_at"],
        unique=False,
        postgresql_include=["severity", "acknowledged_at", "resolved_at"],
    )
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"), "timeline_entries", f"kind IN ({KINDS}, 'escalation')"
    )


def downgrade() -> None:
    op.drop_index("ix_incidents_declared_at", table_name="incidents")
    op.drop_column("users", "is_service")
    op.execute("DELETE FROM timeline_entries WHERE kind = 'escalation'")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", f"kind IN ({KINDS})")
    op.drop_index(op.f("ix_escalation_notifications_escalation_id"), table_name="escalation_notifications")
    op.drop_index(
        "ix_escalation_notifications_due",
        table_name="escalation_notifications",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("escalation_notifications")
    op.drop_index("ix_viewers_incident_seen", table_name="viewers")
    op.drop_table("viewers")
    op.drop_table("escalations")
