"""Incident core: users, sessions, API tokens, incidents, roles, checklist, timeline.

Revision ID: 6333fcfe9774
Revises:
Create Date: 2026-11-23 06:58:53.228616
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6333fcfe9774"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident_ref_counters",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_incident_ref_counters")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('admin', 'responder', 'viewer')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
    )
    op.create_index("uq_users_email_lower", "users", [sa.literal_column("lower(email)")], unique=True)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_tokens_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_auth_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_sessions_token_hash")),
    )
    op.create_index(op.f("ix_auth_sessions_user_id"), "auth_sessions", ["user_id"], unique=False)
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ref", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("summary", sa.Text(), server_default="", nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("services", sa.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("declared_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("declared_by_id", sa.Integer(), nullable=False),
        sa.Column("severity_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by_id", sa.Integer(), nullable=True),
        sa.Column("mitigated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_update_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ack_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mitigation_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("update_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_key", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "status IN ('triage', 'investigating', 'identified', 'monitoring', 'resolved')",
            name=op.f("ck_incidents_status"),
        ),
        sa.ForeignKeyConstraint(
            ["acknowledged_by_id"], ["users.id"], name=op.f("fk_incidents_acknowledged_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["declared_by_id"], ["users.id"], name=op.f("fk_incidents_declared_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
        sa.UniqueConstraint("client_key", name=op.f("uq_incidents_client_key")),
        sa.UniqueConstraint("ref", name=op.f("uq_incidents_ref")),
    )
    op.create_index(
        "ix_incidents_active",
        "incidents",
        ["severity", "declared_at"],
        unique=False,
        postgresql_where=sa.text("resolved_at IS NULL"),
    )
    op.create_index(
        "ix_incidents_resolved_at",
        "incidents",
        ["resolved_at"],
        unique=False,
        postgresql_where=sa.text("resolved_at IS NOT NULL"),
    )
    op.create_table(
        "checklist_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("done_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["done_by_id"], ["users.id"], name=op.f("fk_checklist_items_done_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_checklist_items_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checklist_items")),
        sa.UniqueConstraint("incident_id", "key", name=op.f("uq_checklist_items_incident_id_key")),
    )
    op.create_table(
        "role_assignments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("assigned_by_id", sa.Integer(), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "role IN ('incident_commander', 'comms_lead', 'tech_lead', 'scribe', 'sme')",
            name=op.f("ck_role_assignments_role"),
        ),
        sa.ForeignKeyConstraint(
            ["assigned_by_id"], ["users.id"], name=op.f("fk_role_assignments_assigned_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["ended_by_id"], ["users.id"], name=op.f("fk_role_assignments_ended_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_role_assignments_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_role_assignments_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_role_assignments")),
    )
    op.create_index(
        op.f("ix_role_assignments_incident_id"), "role_assignments", ["incident_id"], unique=False
    )
    op.create_index(
        "uq_role_assignments_one_holder",
        "role_assignments",
        ["incident_id", "role"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL AND role <> 'sme'"),
    )
    op.create_index(
        "uq_role_assignments_one_sme",
        "role_assignments",
        ["incident_id", "user_id"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL AND role = 'sme'"),
    )
    op.create_table(
        "timeline_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=True),
        sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redacted_by_id", sa.Integer(), nullable=True),
        sa.Column("redaction_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist')",
            name=op.f("ck_timeline_entries_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_timeline_entries_author_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_timeline_entries_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["redacted_by_id"], ["users.id"], name=op.f("fk_timeline_entries_redacted_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_entries")),
        sa.UniqueConstraint(
            "incident_id", "client_key", name=op.f("uq_timeline_entries_incident_id_client_key")
        ),
    )
    op.create_index(
        "ix_timeline_entries_incident_occurred",
        "timeline_entries",
        ["incident_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_table(
        "timeline_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("edited_by_id", sa.Integer(), nullable=False),
        sa.Column("edited_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["edited_by_id"], ["users.id"], name=op.f("fk_timeline_revisions_edited_by_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["timeline_entries.id"],
            name=op.f("fk_timeline_revisions_entry_id_timeline_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timeline_revisions")),
        sa.UniqueConstraint("entry_id", "revision", name=op.f("uq_timeline_revisions_entry_id_revision")),
    )


def downgrade() -> None:
    op.drop_table("timeline_revisions")
    op.drop_index("ix_timeline_entries_incident_occurred", table_name="timeline_entries")
    op.drop_table("timeline_entries")
    op.drop_index(
        "uq_role_assignments_one_sme",
        table_name="role_assignments",
        postgresql_where=sa.text("ended_at IS NULL AND role = 'sme'"),
    )
    op.drop_index(
        "uq_role_assignments_one_holder",
        table_name="role_assignments",
        postgresql_where=sa.text("ended_at IS NULL AND role <> 'sme'"),
    )
    op.drop_index(op.f("ix_role_assignments_incident_id"), table_name="role_assignments")
    op.drop_table("role_assignments")
    op.drop_table("checklist_items")
    op.drop_index(
        "ix_incidents_resolved_at",
        table_name="incidents",
        postgresql_where=sa.text("resolved_at IS NOT NULL"),
    )
    op.drop_index(
        "ix_incidents_active", table_name="incidents", postgresql_where=sa.text("resolved_at IS NULL")
    )
    op.drop_table("incidents")
    op.drop_index(op.f("ix_auth_sessions_user_id"), table_name="auth_sessions")
    op.drop_table("auth_sessions")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_index("uq_users_email_lower", table_name="users")
    op.drop_table("users")
    op.drop_table("incident_ref_counters")
