"""The scheduler loop: run in every server process (and by `icc worker`). Safe to run many
times at once (see service.py); survives a lost database connection by trying again."""

import asyncio
import logging

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.escalation import service

log = logging.getLogger("icc.scheduler")
INTERVAL_SECONDS = 5.0


async def tick(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        fired = await service.fire_due_steps(session)
    if fired:
        log.info("escalated %s", ", ".join(fired))
    async with sessionmaker() as session:
        await service.deliver_notifications(session)


async def run(sessionmaker: async_sessionmaker[AsyncSession], interval: float = INTERVAL_SECONDS) -> None:
    delay = interval
    while True:
        try:
            await tick(sessionmaker)
            delay = interval
        except (DBAPIError, OSError) as exc:
            delay = min(delay * 2, 60.0)
            log.warning("scheduler tick failed (%s); next try in %.0f s", exc, delay)
        await asyncio.sleep(delay)
