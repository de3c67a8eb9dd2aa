"""Alerts: ingested alerts, dead letters, rate-limit windows, seen signatures; a timeline kind.

Revision ID: cc42360c8c54
Revises: 883dae928b96
Create Date: 2026-11-23 07:53:43.728257
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "cc42360c8c54"
down_revision: str | None = "883dae928b96"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The timeline kinds as of the previous revision.
KINDS = (
    "'note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist',"
    " 'runbook', 'update', 'impact', 'action_run'"
)


def upgrade() -> None:
    op.create_table(
        "alert_rate_windows",
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("source", "window_start", name=op.f("pk_alert_rate_windows")),
    )
    op.create_table(
        "alert_signatures_seen",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_alert_signatures_seen")),
    )
    op.create_index("ix_alert_signatures_seen_seen_at", "alert_signatures_seen", ["seen_at"], unique=False)
    op.create_table(
        "alert_dead_letters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replayed_by_id", sa.Integer(), nullable=True),
        sa.Column("replay_error", sa.Text(), nullable=True),
        sa.Column("replay_alert_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["replayed_by_id"],
            ["users.id"],
            name=op.f("fk_alert_dead_letters_replayed_by_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_dead_letters")),
    )
    op.create_index("ix_alert_dead_letters_received_at", "alert_dead_letters", ["received_at"], unique=False)
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("dedup_key", sa.String(length=300), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=True),
        sa.Column("group_key", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("previous_status", sa.String(length=16), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=64), server_default="", nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("labels", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("annotations", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("links", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("raw", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_count", sa.Integer(), server_default="1", nullable=False),
        sa.Column("route_action", sa.String(length=16), nullable=False),
        sa.Column("incident_severity", sa.String(length=16), nullable=True),
        sa.Column("incident_id", sa.Integer(), nullable=True),
        sa.Column("unlinked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("opened_incident", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_id", sa.Integer(), nullable=True),
        sa.Column("acknowledged_by_sender", sa.Boolean(), server_default="false", nullable=False),
        sa.CheckConstraint(
            "route_action IN ('declare', 'attach', 'triage')", name=op.f("ck_alerts_route_action")
        ),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f("ck_alerts_status")),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"], ["users.id"], name=op.f("fk_alerts_acknowledged_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alerts_incident_id_incidents"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("source", "dedup_key", name=op.f("uq_alerts_source_dedup_key")),
    )
    op.create_index(
        "ix_alerts_incident_id",
        "alerts",
        ["incident_id"],
        unique=False,
        postgresql_where=sa.text("incident_id IS NOT NULL"),
    )
    op.create_index("ix_alerts_last_received_at", "alerts", ["last_received_at", "id"], unique=False)
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"), "timeline_entries", f"kind IN ({KINDS}, 'alert')"
    )


def downgrade() -> None:
    op.execute("DELETE FROM timeline_entries WHERE kind = 'alert'")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", f"kind IN ({KINDS})")
    op.drop_index("ix_alerts_last_received_at", table_name="alerts")
    op.drop_index(
        "ix_alerts_incident_id", table_name="alerts", postgresql_where=sa.text("incident_id IS NOT NULL")
    )
    op.drop_table("alerts")
    op.drop_index("ix_alert_dead_letters_received_at", table_name="alert_dead_letters")
    op.drop_table("alert_dead_letters")
    op.drop_index("ix_alert_signatures_seen_seen_at", table_name="alert_signatures_seen")
    op.drop_table("alert_signatures_seen")
    op.drop_table("alert_rate_windows")
