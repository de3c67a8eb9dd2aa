"""The channel every change is announced on.

A write that touches an incident's timeline announces the incident: the trigger
`timeline_entries_announce` (migration 4b7e2f9c1a3d) NOTIFYs inside the writing transaction, so
PostgreSQL delivers it on commit and never for a rollback. The payload is the incident id only;
listeners read what changed from the database. Presence changes are announced as "p:<id>".
"""

CHANNEL = "icc_changes"
PRESENCE_PREFIX = "p:"  # payload "p:<incident id>": who is viewing changed, nothing else
