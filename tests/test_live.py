"""PostgreSQL as the bus: a committed change is announced, a rolled-back one never is, and the
process's broker wakes the streams that watch the incident."""

import asyncio

import pytest
from sse_starlette.sse import EventSourceResponse

from app import clock
from app.incidents import service as incidents
from app.live.broker import Subscription
from app.live.routes import LiveResponse
from app.status.cache import rendered
from tests.conftest import wait_connected


async def expect(subscription: Subscription, payload: str) -> None:
    """Read events until this one arrives (earlier commits may still be on their way)."""
    async with asyncio.timeout(3):
        while f"event: change\r\ndata: {payload}\r\n".encode() not in await subscription.next_frames():
            pass


async def expect_nothing(subscription: Subscription, within: float) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            await subscription.next_frames()


async def test_a_committed_change_reaches_the_streams_watching_it_and_a_rollback_never_does(
    app, session, responder
):
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        one = await incidents.declare_incident(session, actor=responder, title="one", severity="SEV3")
        other = await incidents.declare_incident(session, actor=responder, title="other", severity="SEV3")
        with app.state.broker.subscribe(one.id) as mine, app.state.broker.subscribe() as everything:
            await incidents.add_timeline_entry(session, actor=responder, ref=one.ref, kind="note", body="hi")
            await expect(mine, str(one.id))
            await expect(everything, str(one.id))
            await incidents.add_timeline_entry(
                session, actor=responder, ref=other.ref, kind="note", body="hi"
            )
            await expect(everything, str(other.id))
            await expect_nothing(mine, 0.1)
            with pytest.raises(incidents.InvalidTransition):
                await incidents.change_status(session, actor=responder, ref=one.ref, status="triage")
            await session.rollback()
            await expect_nothing(mine, 0.3)


async def test_without_a_listen_connection_nothing_is_cached(app):
    assert not app.state.listener.connected
    cache = app.state.status_cache
    cache.put("html", rendered(b"<p>stale?</p>", "text/html", clock.now()), since=cache.generation)
    assert app.state.status_cache.get("html") is None


def test_the_stream_response_still_overrides_what_sse_starlette_calls_for_each_send():
    # LiveResponse skips sse-starlette's per-send cancel scope (an eighth of the fan-out's CPU)
    # by overriding this method: a version that renames it would lose that silently.
    assert callable(getattr(EventSourceResponse, "_send_with_timeout", None))
    assert LiveResponse._send_with_timeout is not EventSourceResponse._send_with_timeout
