"""Settings, the policy file and the `icc` command line."""

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import ConfigError, Settings, get_settings, load_policy
from tests import support

ICC = str(Path(sys.executable).parent / "icc")


def test_the_default_policy_follows_the_users_runbooks(tmp_path):
    policy = load_policy(tmp_path / "absent.toml")
    sev1, sev4 = policy.severity("SEV1"), policy.severity("SEV4")
    assert (sev1.ack_sla, sev1.mitigation_sla, sev1.update_cadence) == (
        timedelta(minutes=5),
        timedelta(hours=1),
        timedelta(minutes=15),
    )
    assert (sev4.ack_business_days, sev4.mitigation_sla, sev4.update_cadence) == (1, None, None)


def test_icc_toml_overrides_a_severity_without_code(tmp_path):
    path = tmp_path / "icc.toml"
    path.write_text(
        '[severities.SEV2]\nack_sla = "15m"\nupdate_cadence = "none"\n'
        'checklist = ["Bridge open", "Customers told"]\n'
    )
    sev2 = load_policy(path).severity("SEV2")
    assert sev2.ack_sla == timedelta(minutes=15)
    assert sev2.mitigation_sla == timedelta(hours=2)
    assert sev2.update_cadence is None
    assert sev2.checklist == (("bridge-open", "Bridge open"), ("customers-told", "Customers told"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[severities.SEV1\n", "icc.toml"),
        ('[severities.SEV1]\nack_sla = "soon"\n', "invalid duration 'soon'"),
        ("[severities.SEV1]\nack_sla = 5\n", "give a duration"),
        ('[severities.SEV1]\nchecklist = "all of it"\n', "give a list"),
    ],
)
def test_a_broken_policy_file_is_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "icc.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)


def test_database_urls_are_normalised_to_psycopg_3():
    assert Settings(database_url="postgres://u@h/db").database_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url="postgresql://u@h/db").database_url == "postgresql+psycopg://u@h/db"


def test_production_refuses_the_default_secret(monkeypatch):
    monkeypatch.setenv("ICC_ENVIRONMENT", "production")
    monkeypatch.delenv("ICC_SECRET_KEY", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="ICC_SECRET_KEY must be set"):
            get_settings()
    finally:
        monkeypatch.setenv("ICC_ENVIRONMENT", "test")
        get_settings.cache_clear()


def test_an_invalid_setting_stops_the_cli_with_one_line_and_no_traceback():
    env = {**os.environ, "ICC_DATABASE_URL": "mysql://root@localhost/x"}
    result = subprocess.run([ICC, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "icc: ICC_DATABASE_URL: must be a postgresql:// URL"
    assert "Traceback" not in result.stderr


@pytest.fixture
def cli_env(database_url, monkeypatch):
    monkeypatch.setenv("ICC_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield CliRunner()
    monkeypatch.delenv("ICC_DATABASE_URL")
    get_settings.cache_clear()


def test_icc_user_create_and_token_create_give_a_working_api_token(cli_env, app):
    created = cli_env.invoke(
        cli,
        [
            "user",
            "create",
            "--email",
            "ops@example.com",
            "--name",
            "Ops",
            "--role",
            "responder",
            "--password",
            "long-enough-pw",
        ],
    )
    assert created.exit_code == 0, created.output
    assert "Created responder ops@example.com." in created.output
    duplicate = cli_env.invoke(cli, ["user", "create", "--email", "OPS@example.com", "--name", "Ops"])
    assert duplicate.exit_code == 2
    issued = cli_env.invoke(cli, ["token", "create", "--email", "ops@example.com"])
    assert issued.exit_code == 0
    token = issued.output.strip()
    assert token.startswith("icc_")

    async def call():
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
        ) as api:
            return await api.get("/api/v1/severities")

    assert asyncio.run(call()).status_code == 200


def test_icc_user_create_refuses_an_unknown_role(cli_env):
    result = cli_env.invoke(
        cli, ["user", "create", "--email", "a@example.com", "--name", "A", "--role", "boss"]
    )
    assert result.exit_code == 2
    assert "Role must be one of admin, responder, viewer." in result.output


def _wait_until_up(base_url: str, process: subprocess.Popen) -> None:
    """Until `icc serve` answers /healthz; its output (a pipe) is shown if it exits first."""
    support.wait_until_healthy(
        base_url,
        process,
        name="icc serve",
        log=lambda: process.stdout.read() if process.poll() is not None else "",
        timeout=90,
    )


def _serve(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "ICC_DATABASE_URL"}
    env |= {"ICC_DATA_DIR": str(data_dir), "ICC_ENVIRONMENT": "development"}
    return subprocess.Popen(
        [ICC, "serve", "--port", str(port), "--demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_icc_serve_starts_an_embedded_database_with_demo_data_and_stops_it_on_ctrl_c(tmp_path):
    port = support.free_port()
    first = _serve(tmp_path, port)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", first)
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200
    finally:
        first.send_signal(signal.SIGINT)
        output = first.communicate(timeout=60)[0]
    assert first.returncode == 0, output
    assert "Demo data loaded." in output
    assert "sign in as sam@example.com / demo-password (responder)" in output
    assert f"http://127.0.0.1:{port}" in output
    assert not (tmp_path / "pgdata" / "postmaster.pid").exists()  # the database stopped too

    second = _serve(tmp_path, port)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", second)
    finally:
        second.send_signal(signal.SIGINT)
        output = second.communicate(timeout=60)[0]
    assert "Demo data already present." in output
