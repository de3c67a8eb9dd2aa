"""Incidents: severities, status, roles, the triage checklist, the timeline and SLA timers."""
