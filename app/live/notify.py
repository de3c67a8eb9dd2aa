"""Every write that touches an incident's timeline announces the incident on `icc_changes`.

The NOTIFY runs in the writing transaction, so PostgreSQL delivers it on commit and never for
a rollback. The payload is the incident id only; listeners read what changed from the database.
"""

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, UOWTransaction

from app.incidents.models import TimelineEntry

CHANNEL = "icc_changes"
PRESENCE_PREFIX = "p:"  # payload "p:<incident id>": who is viewing changed, nothing else


@event.listens_for(Session, "after_flush")
def _announce_changed_incidents(session: Session, _flush: UOWTransaction) -> None:
    incident_ids = {
        obj.incident_id
        for obj in (*session.new, *session.dirty)
        if isinstance(obj, TimelineEntry) and obj.incident_id is not None
    }
    for incident_id in sorted(incident_ids):
        session.connection().execute(select(func.pg_notify(CHANNEL, str(incident_id))))
