"""Announce timeline writes from the database: a trigger NOTIFYs icc_changes with the incident id.

Every insert or update of a timeline entry, whatever wrote it (the ORM, a bulk statement, an
operator's SQL), announces its incident inside the writing transaction, so PostgreSQL delivers it
on commit and never for a rollback. Identical notifications in one transaction are delivered once.

Revision ID: 4b7e2f9c1a3d
Revises: d1e5ca1a7e05
Create Date: 2026-12-02 10:50:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4b7e2f9c1a3d"
down_revision: str | None = "d1e5ca1a7e05"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION icc_announce_timeline_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('icc_changes', NEW.incident_id::text);
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER timeline_entries_announce AFTER INSERT OR UPDATE ON timeline_entries
        FOR EACH ROW EXECUTE FUNCTION icc_announce_timeline_change()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER timeline_entries_announce ON timeline_entries")
    op.execute("DROP FUNCTION icc_announce_timeline_change()")
