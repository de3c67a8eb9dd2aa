"""Live updates through PostgreSQL: NOTIFY inside the writing transaction, LISTEN per process."""
