"""The plain `alembic` command works from the repository's root against ICC_DATABASE_URL, so a
developer writes the next migration the usual way (`alembic revision --autogenerate`)."""

import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from app.migrate import alembic_config

REPO = Path(__file__).resolve().parent.parent
ALEMBIC = Path(sys.executable).with_name("alembic")


def alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ALEMBIC), *args],
        cwd=REPO,
        env={**os.environ, "ICC_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alembic_current_names_the_head_the_test_database_is_at(database_url):
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    done = alembic(database_url, "current")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{head} (head)"


def test_alembic_check_finds_no_model_change_without_its_migration(database_url):
    done = alembic(database_url, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No new upgrade operations detected." in done.stdout
