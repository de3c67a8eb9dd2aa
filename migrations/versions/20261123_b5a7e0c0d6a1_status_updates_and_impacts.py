"""Stakeholder updates, per-component impact and a public title; timeline kinds for them.

Revision ID: b5a7e0c0d6a1
Revises: 5d27111e108e
Create Date: 2026-11-23 07:35:13.359145
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b5a7e0c0d6a1"
down_revision: str | None = "5d27111e108e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "comms_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name=op.f("fk_comms_updates_author_id_users")),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_comms_updates_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comms_updates")),
    )
    op.create_index(
        "ix_comms_updates_incident_posted", "comms_updates", ["incident_id", "posted_at"], unique=False
    )
    op.create_table(
        "incident_impacts",
        sa.Column("incident_id", sa.Integer(), nullable=False),
        sa.Column("component", sa.String(length=64), nullable=False),
        sa.Column("impact", sa.String(length=32), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("set_by_id", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "impact IN ('none', 'degraded_performance', 'partial_outage', 'major_outage')",
            name=op.f("ck_incident_impacts_impact"),
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_incident_impacts_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["set_by_id"], ["users.id"], name=op.f("fk_incident_impacts_set_by_id_users")
        ),
        sa.PrimaryKeyConstraint("incident_id", "component", name=op.f("pk_incident_impacts")),
    )
    op.add_column("incidents", sa.Column("public_title", sa.String(length=200), nullable=True))
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"),
        "timeline_entries",
        "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist', 'runbook', 'update', 'impact')",
    )


def downgrade() -> None:
    op.execute("DELETE FROM timeline_entries WHERE kind IN ('update', 'impact')")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"),
        "timeline_entries",
        "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist', 'runbook')",
    )
    op.drop_column("incidents", "public_title")
    op.drop_table("incident_impacts")
    op.drop_index("ix_comms_updates_incident_posted", table_name="comms_updates")
    op.drop_table("comms_updates")
