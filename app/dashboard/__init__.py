"""The responders' severity dashboard: what is burning now, and how we have been doing."""
