"""Server-Sent Events for the incident page, the list and the dashboard.

A stream holds no database session: the viewer is checked when it opens, presence is touched
with a short session now and then, and everything else comes from the process's broker.
"""

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from sse_starlette.sse import EventSourceResponse

from app.auth.deps import StreamUser
from app.incidents import service as incidents
from app.live import presence
from app.live.broker import EVERYTHING

router = APIRouter(include_in_schema=False)
HEARTBEAT_SECONDS = 15


async def _stream(request: Request, incident_id: int, viewer_id: int | None) -> AsyncIterator[dict]:
    broker = request.app.state.broker
    sessionmaker = request.app.state.sessionmaker
    connection = None
    with broker.subscribe(incident_id) as queue:
        # Always start with a resync: a reconnect (Last-Event-ID or not) may have missed events.
        yield {"event": "resync", "id": broker.next_id(), "data": ""}
        if viewer_id is not None:
            connection = await presence.arrive(sessionmaker, incident_id=incident_id, user_id=viewer_id)
        try:
            loop = asyncio.get_running_loop()
            next_touch = loop.time() + HEARTBEAT_SECONDS
            while True:
                # Presence is touched on its own schedule: a busy incident (an event every few
                # seconds) must not starve it.
                if connection is not None and loop.time() >= next_touch:
                    await presence.still_here(sessionmaker, connection=connection)
                    next_touch = loop.time() + HEARTBEAT_SECONDS
                try:
                    kind, payload = await asyncio.wait_for(
                        queue.get(), timeout=max(0.0, next_touch - loop.time())
                    )
                except TimeoutError:
                    if connection is None:
                        next_touch = loop.time() + HEARTBEAT_SECONDS
                    continue
                yield {"event": kind, "id": broker.next_id(), "data": payload}
        finally:
            if connection is not None:
                await asyncio.shield(presence.leave(sessionmaker, connection=connection))


@router.get("/incidents/{ref}/events")
async def incident_events(request: Request, user: StreamUser, ref: str) -> EventSourceResponse:
    """Changes to one incident, as they are committed on any replica."""
    async with request.app.state.sessionmaker() as session:
        detail = await incidents.get_incident_detail(session, ref=ref)
    return EventSourceResponse(
        _stream(request, detail.incident.id, user.id),
        ping=HEARTBEAT_SECONDS,
        headers={"X-Accel-Buffering": "no"},
    )


@router.get("/events")
async def all_events(request: Request, user: StreamUser) -> EventSourceResponse:
    """Changes to any incident (the list and the dashboard)."""
    return EventSourceResponse(
        _stream(request, EVERYTHING, None), ping=HEARTBEAT_SECONDS, headers={"X-Accel-Buffering": "no"}
    )
