"""Runbooks: the index of runbook files with full-text search; a timeline kind for attaching one.

Revision ID: 5d27111e108e
Revises: 6333fcfe9774
Create Date: 2026-11-23 07:25:53.516545
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "5d27111e108e"
down_revision: str | None = "6333fcfe9774"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runbooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=False),
        sa.Column("path", sa.String(length=500), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("owner", sa.String(length=120), server_default="", nullable=False),
        sa.Column("updated", sa.Date(), nullable=True),
        sa.Column("services", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=True),
        sa.Column("actions", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("toc", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("has_mermaid", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed(
                "setweight(to_tsvector('english', coalesce(title, '')), 'A') || setweight(to_tsvector('english', coalesce(body, '')), 'B')",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbooks")),
        sa.UniqueConstraint("key", name=op.f("uq_runbooks_key")),
        sa.UniqueConstraint("path", name=op.f("uq_runbooks_path")),
    )
    op.create_index("ix_runbooks_search", "runbooks", ["search"], unique=False, postgresql_using="gin")
    op.create_index("ix_runbooks_services", "runbooks", ["services"], unique=False, postgresql_using="gin")
    op.create_index("ix_runbooks_tags", "runbooks", ["tags"], unique=False, postgresql_using="gin")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"),
        "timeline_entries",
        "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist', 'runbook')",
    )


def downgrade() -> None:
    op.execute("DELETE FROM timeline_entries WHERE kind = 'runbook'")
    op.drop_constraint(op.f("ck_timeline_entries_kind"), "timeline_entries", type_="check")
    op.create_check_constraint(
        op.f("ck_timeline_entries_kind"),
        "timeline_entries",
        "kind IN ('note', 'decision', 'action', 'declared', 'acknowledged', 'severity', 'status', 'role', 'checklist')",
    )
    op.drop_index("ix_runbooks_tags", table_name="runbooks", postgresql_using="gin")
    op.drop_index("ix_runbooks_services", table_name="runbooks", postgresql_using="gin")
    op.drop_index("ix_runbooks_search", table_name="runbooks", postgresql_using="gin")
    op.drop_table("runbooks")
