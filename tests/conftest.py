"""Real PostgreSQL for every test: one database for the run, built by `alembic upgrade head`,
emptied after each test, dropped at the end. Point ICC_TEST_DATABASE_URL at a server (default:
the local one on 127.0.0.1:5432)."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy.ext.asyncio import AsyncSession

os.environ["ICC_ENVIRONMENT"] = "test"
os.environ["ICC_RUN_SCHEDULER"] = "false"  # tests run the scheduler's tick themselves
os.environ["ICC_CONFIG"] = str(Path(__file__).parent / "no-such-icc.toml")
os.environ.pop("ICC_DATABASE_URL", None)

from app import clock
from app.auth import service as accounts
from app.auth.models import User
from app.config import get_policy, get_settings
from app.escalation.config import get_escalation_policy
from app.main import create_app
from app.migrate import upgrade_to_head
from app.status.config import get_status_config

# argon2 at its recommended cost takes about a tenth of a second per hash on this machine, and
# most tests create a few users and sign some in: in this process, hash at argon2's lowest cost.
# The servers the tests start as processes keep the recommended cost, and argon2 verifies a hash
# with the parameters written in it, so either side reads the other's hashes.
accounts._hasher = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=1024, parallelism=1),))

SERVER_URL = os.environ.get("ICC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "correct-horse-battery"
OUTPUT_DIR = Path(__file__).resolve().parent.parent / "test-output"
TABLES = (
    "timeline_revisions, timeline_entries, checklist_items, role_assignments, incidents, "
    "incident_ref_counters, auth_sessions, api_tokens, users, runbooks, sign_in_failures"
)


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + name
    return base + ("?" + query if query else "")


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database for this run, migrated to head; dropped afterwards."""
    name = f"icc_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(SERVER_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    upgrade_to_head(url)
    get_settings.cache_clear()
    get_policy.cache_clear()
    yield url
    with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _empty_tables_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database_url" in request.fixturenames:
        url = request.getfixturevalue("database_url")
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
def app(database_url: str):
    return create_app(database_url)


@pytest.fixture
async def session(app) -> AsyncIterator[AsyncSession]:
    async with app.state.sessionmaker() as s:
        yield s


class MovableClock:
    """The app's clock, frozen at a known instant and moved by the test."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def frozen_clock() -> Iterator[MovableClock]:
    moving = MovableClock(datetime(2026, 11, 23, 14, 0, tzinfo=UTC))  # a Monday
    clock.set_source(lambda: moving.now)
    yield moving
    clock.set_source(None)


UserFactory = Callable[..., "object"]


@pytest.fixture
def make_user(session: AsyncSession):
    async def make(role: str = "responder", name: str | None = None, email: str | None = None) -> User:
        suffix = uuid.uuid4().hex[:6]
        return await accounts.create_user(
            session,
            email=email or f"{role}-{suffix}@example.com",
            name=name or f"{role.title()} {suffix}",
            role=role,
            password=PASSWORD,
        )

    return make


@pytest.fixture
async def responder(make_user) -> User:
    return await make_user("responder", name="Rita Responder")


@pytest.fixture
async def viewer(make_user) -> User:
    return await make_user("viewer", name="Vic Viewer")


@pytest.fixture
async def admin(make_user) -> User:
    return await make_user("admin", name="Ada Admin")


@pytest.fixture
def client(app) -> Iterator[httpx.AsyncClient]:
    """An HTTP client on the app, not signed in."""
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
def api_as(app, session: AsyncSession):
    """`await api_as(user)`: a client that sends that user's API token."""

    async def make(user: User) -> httpx.AsyncClient:
        token = await accounts.create_api_token(session, email=user.email, name="tests")
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
        )

    return make


async def sign_in(client: httpx.AsyncClient, user: User) -> str:
    """Sign in through the login form; returns the page's CSRF token."""
    page = await client.get("/login")
    login_csrf = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    response = await client.post(
        "/login",
        data={"email": user.email, "password": PASSWORD, "login_csrf": login_csrf, "next": "/incidents"},
    )
    assert response.status_code == 303, response.text
    listing = await client.get("/incidents")
    return listing.text.split('name="csrf_token" value="')[1].split('"')[0]


@pytest.fixture
def browser_output_dir() -> Path:
    OUTPUT_DIR.mkdir(exist_ok=True)
    return OUTPUT_DIR


async def wait_connected(app) -> None:
    """Until the app's LISTEN connection is up (inside its lifespan): caches and streams rely on it."""
    for _ in range(100):
        if app.state.listener.connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the LISTEN connection did not come up")


POLICY_CACHES = (get_settings, get_policy, get_status_config, get_escalation_policy)


@pytest.fixture
def icc_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """`icc_toml(text)`: the app reads this policy file (ICC_CONFIG) until the test ends."""

    def use(text: str) -> None:
        path = tmp_path / "icc.toml"
        path.write_text(text)
        monkeypatch.setenv("ICC_CONFIG", str(path))
        for cached in POLICY_CACHES:
            cached.cache_clear()

    yield use
    monkeypatch.undo()
    for cached in POLICY_CACHES:
        cached.cache_clear()
