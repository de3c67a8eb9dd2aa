"""Runbooks: markdown files with front matter, indexed in PostgreSQL, rendered safely."""
