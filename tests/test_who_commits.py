"""Who commits: a helper that refuses after its caller wrote undoes only its own write. Here the
declaration that loses a race on its client_key, as two deliveries of one alert group do."""

import asyncio

import psycopg
from sqlalchemy import func, select

from app.auth import service as accounts
from app.auth.models import User
from app.incidents import service as incidents
from app.incidents.models import Incident
from tests.conftest import _libpq

KEY = "alert:one-group:0"


async def waiting_on(conn: psycopg.AsyncConnection, locktype: str) -> None:
    """Until a backend waits for a lock of this type (a table, another transaction)."""
    for _ in range(250):
        cursor = await conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = %s", [locktype]
        )
        if (await cursor.fetchone())[0]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing waited on a {locktype} lock")


async def test_a_declaration_that_loses_its_race_keeps_the_callers_work(app, database_url, responder):
    declare = {"title": "Checkout returns 502", "severity": "SEV2", "client_key": KEY}
    async with (
        await psycopg.AsyncConnection.connect(_libpq(database_url), autocommit=True) as watcher,
        await psycopg.AsyncConnection.connect(_libpq(database_url)) as blocker,
        app.state.sessionmaker() as first,
        app.state.sessionmaker() as second,
    ):
        # The first declaration inserts its incident, then waits to write its timeline entry.
        await blocker.execute("LOCK TABLE timeline_entries IN ACCESS EXCLUSIVE MODE")
        winner = asyncio.create_task(incidents.declare_incident(first, actor=responder, **declare))
        await waiting_on(watcher, "relation")
        # The second one's caller has written something, then declares for the same key: it does
        # not see the uncommitted incident, and waits for the reference counter the first holds.
        caller_wrote = await accounts.service_account(second, email="caller@icc.invalid", name="Caller")
        loser = asyncio.create_task(incidents.declare_incident(second, actor=responder, **declare))
        await waiting_on(watcher, "transactionid")
        await blocker.commit()
        declared, found = await asyncio.gather(winner, loser)
        await second.commit()

        assert found.id == declared.id
        kept = await second.scalar(select(User).where(User.email == "caller@icc.invalid"))
        assert kept is not None and kept.id == caller_wrote.id
        assert await second.scalar(select(func.count()).select_from(Incident)) == 1
        after = await incidents.declare_incident(
            second, actor=responder, title="Search is slow", severity="SEV3"
        )
        assert int(after.ref.rsplit("-", 1)[1]) == int(declared.ref.rsplit("-", 1)[1]) + 1
