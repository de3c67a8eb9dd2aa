"""Server-Sent Events for the incident page, the list and the dashboard.

A stream holds no database session: opening one costs a single short session (who is asking,
and for an incident page its viewer row), presence is kept by the process for all its streams
at once, and everything else comes from the process's broker as ready-made bytes.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette.sse import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

from app.auth.deps import current_user
from app.live import presence
from app.live.broker import EVERYTHING, Broker
from app.live.presence import HEARTBEAT_SECONDS

router = APIRouter(include_in_schema=False)
# A crowd opening streams at once (a SEV1 link pasted in a busy channel) queues for these
# instead of growing the pool to its overflow: the pages the crowd loads next keep connections,
# and no new PostgreSQL connection is asked of a server that may be full (a refused connection
# is a 503, which an EventSource does not retry).
OPENING_CONNECTIONS = 5


async def _frames(broker: Broker, incident_id: int) -> AsyncIterator[bytes]:
    with broker.subscribe(incident_id) as subscription:
        # Always start with a resync, sent once subscribed: whatever was committed before
        # (a reconnect, Last-Event-ID or not, may have missed events) is in what it refetches.
        yield broker.frame("resync")
        while True:
            yield await subscription.next_frames()


class LiveResponse(EventSourceResponse):
    """An event stream that runs `on_close` however it ends (the client left, the server is
    shutting down, a write failed), also when it ended before its first event."""

    def __init__(
        self, frames: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        super().__init__(frames, ping=HEARTBEAT_SECONDS, headers={"X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.on_close is not None:
                await self.on_close()

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette wraps every send in a cancel scope for its optional send timeout, which we
        # do not set; with a thousand streams that scope was an eighth of the fan-out's CPU
        # (py-spy, bench/sse_fanout.py). A stalled client cannot block the others anyway: its
        # events pile up in its own backlog and collapse into a resync.
        await send(message)


class Streams:
    """What an application's streams share besides the broker (app.state.streams)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.viewers = presence.Viewers(sessionmaker)
        self.opening = asyncio.Semaphore(OPENING_CONNECTIONS)


@router.get("/incidents/{ref}/events")
async def incident_events(request: Request, ref: str) -> LiveResponse:
    """Changes to one incident, as they are committed on any replica."""
    streams = request.app.state.streams
    async with streams.opening, request.app.state.sessionmaker() as session:
        user = await current_user(request, session)
        incident_id, connection = await streams.viewers.arrive(session, ref=ref, user_id=user.id)
    return LiveResponse(
        _frames(request.app.state.broker, incident_id), on_close=lambda: streams.viewers.leave(connection)
    )


@router.get("/events")
async def all_events(request: Request) -> LiveResponse:
    """Changes to any incident (the list and the dashboard)."""
    async with request.app.state.streams.opening, request.app.state.sessionmaker() as session:
        await current_user(request, session)
    return LiveResponse(_frames(request.app.state.broker, EVERYTHING))
