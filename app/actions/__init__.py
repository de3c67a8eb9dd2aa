"""Remediation webhooks: the catalog, confirm-before-execute runs and the executor."""
