"""Who is looking at an incident right now, across replicas: a row per open stream, touched
every heartbeat. A row not touched for PRESENCE_TTL belongs to a stream that died without
saying goodbye (a killed replica) and no longer counts."""

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import clock
from app.auth.models import User
from app.live.models import Viewer
from app.live.notify import CHANNEL, PRESENCE_PREFIX

PRESENCE_TTL = timedelta(seconds=45)


async def _announce(session: AsyncSession, incident_id: int) -> None:
    # "p:" marks a presence change: brokers coalesce these (a crowd joining is one event a
    # second, not one per viewer per viewer) and caches of the status page ignore them.
    await session.execute(select(func.pg_notify(CHANNEL, f"{PRESENCE_PREFIX}{incident_id}")))


async def arrive(
    sessionmaker: async_sessionmaker[AsyncSession], *, incident_id: int, user_id: int
) -> uuid.UUID:
    """Record an open stream; the other viewers hear about it."""
    connection = uuid.uuid4()
    async with sessionmaker() as session:
        session.add(
            Viewer(connection=connection, incident_id=incident_id, user_id=user_id, seen_at=clock.now())
        )
        await session.flush()
        await _announce(session, incident_id)
        await session.commit()
    return connection


async def still_here(sessionmaker: async_sessionmaker[AsyncSession], *, connection: uuid.UUID) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Viewer).where(Viewer.connection == connection).values(seen_at=clock.now())
        )
        await session.commit()


async def leave(sessionmaker: async_sessionmaker[AsyncSession], *, connection: uuid.UUID) -> None:
    async with sessionmaker() as session:
        incident_id = await session.scalar(
            delete(Viewer).where(Viewer.connection == connection).returning(Viewer.incident_id)
        )
        if incident_id is not None:
            await _announce(session, incident_id)
        await session.commit()


async def viewers_of(session: AsyncSession, *, incident_id: int) -> list[User]:
    """The people with the incident open now, by name."""
    rows = await session.scalars(
        select(User)
        .join(Viewer, Viewer.user_id == User.id)
        .where(Viewer.incident_id == incident_id, Viewer.seen_at > clock.now() - PRESENCE_TTL)
        .distinct()
        .order_by(User.name)
    )
    return list(rows)
