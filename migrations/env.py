"""Alembic environment: the URL comes from the caller (app.migrate) or ICC_DATABASE_URL.

The configuration is pyproject.toml's [tool.alembic] alone, so the plain `alembic` command works
from the repository's root; there is no alembic.ini to hold a URL or a logging setup.
"""

import logging

from alembic import context
from sqlalchemy import create_engine, pool

from app.actions import models as _action_models  # noqa: F401 - registers the tables
from app.alerts import models as _alert_models  # noqa: F401 - registers the tables
from app.auth import models as _auth_models  # noqa: F401 - registers the tables
from app.config import get_settings
from app.db import Base
from app.escalation import models as _escalation_models  # noqa: F401 - registers the tables
from app.incidents import models as _incident_models  # noqa: F401 - registers the tables
from app.live import models as _live_models  # noqa: F401 - registers the tables
from app.runbooks import models as _runbook_models  # noqa: F401 - registers the tables
from app.status import models as _status_models  # noqa: F401 - registers the tables

target_metadata = Base.metadata

if context.config.cmd_opts is not None:
    # Run as the `alembic` command: say which migrations ran and what autogenerate detected.
    logging.basicConfig(format="%(levelname)-5.5s [%(name)s] %(message)s")
    for name in ("alembic.runtime.migration", "alembic.autogenerate"):
        logging.getLogger(name).setLevel(logging.INFO)


def _url() -> str:
    url = context.config.attributes.get("database_url") or get_settings().database_url
    if not url:
        raise SystemExit("ICC_DATABASE_URL is not set")
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, compare_type=True, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
