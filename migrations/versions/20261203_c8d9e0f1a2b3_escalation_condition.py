"""Keep the condition of each fired escalation step, so the page can tell answered from unanswered.

A step fires while its condition holds (no acknowledgement, no mitigation, no stakeholder update);
the row now says which, so the banner reads it from the step itself and not from today's policy.
Rows fired before this migration get theirs from the reason they were fired with.

Revision ID: c8d9e0f1a2b3
Revises: 8d4fa2b3c5e6
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c8d9e0f1a2b3"
down_revision: str | None = "8d4fa2b3c5e6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("escalations", sa.Column("condition", sa.String(length=20), nullable=True))
    op.execute(
        "UPDATE escalations SET condition = CASE"
        " WHEN reason LIKE '%without mitigation' THEN 'unmitigated'"
        " WHEN reason LIKE '%since the last stakeholder update' THEN 'no_update'"
        " ELSE 'unacknowledged' END"
    )
    op.alter_column("escalations", "condition", nullable=False)
    op.create_check_constraint(
        op.f("ck_escalations_condition"),
        "escalations",
        "condition IN ('unacknowledged', 'unmitigated', 'no_update')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_escalations_condition"), "escalations", type_="check")
    op.drop_column("escalations", "condition")
