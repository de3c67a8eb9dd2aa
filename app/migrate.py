"""Apply the Alembic migrations from code (used by `icc migrate`, `icc serve` and the tests)."""

from pathlib import Path

from alembic import command
from alembic.config import Config

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    """pyproject.toml's [tool.alembic], the configuration the plain `alembic` command reads too,
    with the database handed to migrations/env.py (which otherwise reads ICC_DATABASE_URL)."""
    return Config(toml_file=str(ROOT / "pyproject.toml"), attributes={"database_url": database_url})


def upgrade_to_head(database_url: str) -> None:
    command.upgrade(alembic_config(database_url), "head")


def downgrade_to_base(database_url: str) -> None:
    command.downgrade(alembic_config(database_url), "base")
