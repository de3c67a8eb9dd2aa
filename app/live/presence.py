"""Who is looking at an incident right now, across replicas: a row per open stream, touched
every heartbeat. A row not touched for PRESENCE_TTL belongs to a stream that died without
saying goodbye (a killed replica) and no longer counts.

A crowd opening one incident (a SEV1 link pasted in a busy channel) must not take a database
session per viewer per event: a stream's row is written in the session that signed it in, the
rows of a process are touched together (one UPDATE per heartbeat, however many streams), and
the rows of streams that close at once are deleted together.
"""

import asyncio
import logging
import uuid
from datetime import timedelta

from sqlalchemy import String, cast, delete, func, insert, literal, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from app import clock
from app.auth.models import User
from app.errors import NotFound
from app.incidents.models import Incident
from app.live.models import Viewer
from app.live.notify import CHANNEL, PRESENCE_PREFIX

PRESENCE_TTL = timedelta(seconds=45)
HEARTBEAT_SECONDS = 15

log = logging.getLogger("icc.live")


def _announcement(incident_id: ColumnElement[int] | int) -> ColumnElement[str]:
    # "p:" marks a presence change: brokers coalesce these (a crowd joining is one event a
    # second, not one per viewer per viewer) and caches of the status page ignore them.
    return func.pg_notify(CHANNEL, literal(PRESENCE_PREFIX) + cast(incident_id, String))


class Viewers:
    """This process's open incident streams and their rows in `viewers`."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._here: set[uuid.UUID] = set()
        self._leaving: set[uuid.UUID] = set()
        self._departing: asyncio.Task[None] | None = None
        self._touching: asyncio.Task[None] | None = None

    async def arrive(self, session: AsyncSession, *, ref: str, user_id: int) -> tuple[int, uuid.UUID]:
        """Record a stream opening on incident `ref` and tell its other viewers, in one
        statement of the caller's session, and commit. Returns the incident's id and the
        stream's connection id; raises NotFound for an unknown reference."""
        connection = uuid.uuid4()
        arrived = (
            insert(Viewer)
            .from_select(
                ["connection", "incident_id", "user_id", "seen_at"],
                select(literal(connection), Incident.id, literal(user_id), literal(clock.now())).where(
                    Incident.ref == ref
                ),
            )
            .returning(Viewer.incident_id)
            .cte("arrived")
        )
        incident_id = await session.scalar(
            select(arrived.c.incident_id).add_columns(_announcement(arrived.c.incident_id))
        )
        if incident_id is None:
            raise NotFound(f"No incident {ref}.")
        await session.commit()
        self._here.add(connection)
        if self._touching is None:
            self._touching = asyncio.get_running_loop().create_task(self._keep_fresh())
        return incident_id, connection

    async def leave(self, connection: uuid.UUID) -> None:
        """The stream closed: its row goes, with those of the streams closing at the same time."""
        self._here.discard(connection)
        self._leaving.add(connection)
        if self._departing is None:
            self._departing = asyncio.get_running_loop().create_task(self._delete_departed())
        # Shielded: a stream cancelled while it waits must not cancel the others' goodbye.
        await asyncio.shield(self._departing)

    async def _delete_departed(self) -> None:
        try:
            while self._leaving:
                batch, self._leaving = self._leaving, set()
                try:
                    async with self._sessionmaker() as session:
                        incident_ids = set(
                            await session.scalars(
                                delete(Viewer)
                                .where(Viewer.connection.in_(batch))
                                .returning(Viewer.incident_id)
                            )
                        )
                        for incident_id in sorted(incident_ids):
                            await session.execute(select(_announcement(incident_id)))
                        await session.commit()
                except (SQLAlchemyError, OSError) as exc:
                    # Their rows expire after PRESENCE_TTL: presence heals by itself.
                    log.warning("could not record %d viewers leaving: %s", len(batch), exc)
        finally:
            self._departing = None

    async def _keep_fresh(self) -> None:
        """While this process has viewers: touch all their rows every heartbeat."""
        try:
            while self._here:
                await asyncio.sleep(HEARTBEAT_SECONDS)
                here = list(self._here)
                if not here:
                    break
                try:
                    async with self._sessionmaker() as session:
                        await session.execute(
                            update(Viewer).where(Viewer.connection.in_(here)).values(seen_at=clock.now())
                        )
                        await session.commit()
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("could not touch %d viewers: %s", len(here), exc)
        finally:
            self._touching = None


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
