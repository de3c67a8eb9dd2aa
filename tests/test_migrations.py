"""Alembic owns the schema: it builds it from empty, matches the models, and downgrades."""

import uuid

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool

from app.auth import models as _auth  # noqa: F401
from app.db import Base
from app.incidents import models as _incidents  # noqa: F401
from app.migrate import downgrade_to_base, upgrade_to_head
from tests.conftest import SERVER_URL, _libpq, _with_database


def test_the_models_and_the_migrations_describe_the_same_schema(database_url):
    engine = create_engine(database_url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == []


def test_migrations_upgrade_from_empty_downgrade_to_base_and_upgrade_again():
    name = f"icc_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(SERVER_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        upgrade_to_head(url)
        downgrade_to_base(url)
        with psycopg.connect(_libpq(url)) as conn:
            tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables == [("alembic_version",)]
        upgrade_to_head(url)
        with psycopg.connect(_libpq(url)) as conn:
            count = conn.execute("SELECT count(*) FROM incidents").fetchone()
        assert count == (0,)
    finally:
        with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
