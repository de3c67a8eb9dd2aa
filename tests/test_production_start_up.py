"""Production refuses an insecure start: ICC_SECURE_COOKIES must be stated, as the secret key must
be set. Every command that loads the settings stops with one line saying why."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, get_settings
from app.main import create_app

ICC = str(Path(sys.executable).parent / "icc")
PRODUCTION = {
    "ICC_ENVIRONMENT": "production",
    "ICC_SECRET_KEY": "a-production-secret-of-more-than-32-characters",
    # Nothing listens there: a command that got past the settings would fail differently.
    "ICC_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
}
WHY = (
    "icc: ICC_SECURE_COOKIES must be set in production: true when the site is served over HTTPS, "
    "false only to accept sign-ins over plain HTTP"
)


def run_icc(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ICC_SECURE_COOKIES"} | PRODUCTION | env
    return subprocess.run([ICC, *args], env=environment, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["worker"]])
def test_production_without_a_secure_cookies_setting_stops_with_one_line(command):
    result = run_icc(*command)
    assert result.returncode == 2
    assert result.stderr.strip() == WHY
    assert "Traceback" not in result.stderr


def test_production_accepts_an_explicit_choice_either_way(monkeypatch):
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    for value, secure in (("true", True), ("false", False)):
        monkeypatch.setenv("ICC_SECURE_COOKIES", value)
        assert Settings().secure_cookies is secure


def test_outside_production_secure_cookies_may_stay_unset(monkeypatch):
    monkeypatch.delenv("ICC_SECURE_COOKIES", raising=False)
    for environment in ("development", "test"):
        monkeypatch.setenv("ICC_ENVIRONMENT", environment)
        assert Settings().secure_cookies is False


def test_the_application_factory_refuses_too(monkeypatch):
    """uvicorn's --factory path (app.main:create_app) reads the same settings."""
    for name, value in PRODUCTION.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("ICC_SECURE_COOKIES", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="ICC_SECURE_COOKIES must be set in production"):
            create_app()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
