"""Publication on the incident: who put it on the status page and when, and the public promise.

`published_at` / `published_by_id` are set when a person publishes the incident (or declares it
under `[status] publish = "auto"`) and cleared when it is taken off the page again.
`public_update_due_at` is the "next update by" the status page promises, moved only by public
updates, apart from `update_due_at`, the internal cadence that every update moves.

Incidents that exist when this runs were all public before it: those a person declared, and those
an alert declared that already carry a public update (a person spoke about them), stay published.
The other alert-declared incidents go off the page until a responder publishes them.

Revision ID: 7c3e91a2b4d5
Revises: 4b7e2f9c1a3d
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c3e91a2b4d5"
down_revision: str | None = "4b7e2f9c1a3d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("incidents", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("incidents", sa.Column("published_by_id", sa.Integer(), nullable=True))
    op.add_column("incidents", sa.Column("public_update_due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_foreign_key(
        op.f("fk_incidents_published_by_id_users"), "incidents", "users", ["published_by_id"], ["id"]
    )
    op.execute(
        """
        UPDATE incidents SET published_at = incidents.declared_at, published_by_id = incidents.declared_by_id,
            public_update_due_at = incidents.update_due_at
        FROM users WHERE users.id = incidents.declared_by_id AND NOT users.is_service
        """
    )
    op.execute(
        """
        UPDATE incidents SET published_at = first.posted_at, published_by_id = first.author_id,
            public_update_due_at = incidents.update_due_at
        FROM (
            SELECT DISTINCT ON (incident_id) incident_id, posted_at, author_id FROM comms_updates
            WHERE public ORDER BY incident_id, posted_at, id
        ) AS first
        WHERE first.incident_id = incidents.id AND incidents.published_at IS NULL
        """
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_incidents_published_by_id_users"), "incidents", type_="foreignkey")
    op.drop_column("incidents", "public_update_due_at")
    op.drop_column("incidents", "published_by_id")
    op.drop_column("incidents", "published_at")
