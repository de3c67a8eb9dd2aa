"""Incident command center: run production incidents on PostgreSQL."""
