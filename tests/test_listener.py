"""The one LISTEN connection per process: when it is cut or goes silent it is noticed, it comes
back, and what relied on it (the status page's copies, the SSE streams) repairs whatever it
missed meanwhile."""

import asyncio
import time
from contextlib import suppress

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from app.db import libpq_url
from app.incidents import service as incidents
from app.live.broker import EVERYTHING, Broker, Subscription
from app.live.cache import ChangeCache
from app.live.listener import Listener
from app.live.notify import CHANNEL
from tests.conftest import wait_connected


async def frames_until(subscription: Subscription, wanted: bytes, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while wanted not in await subscription.next_frames():
            pass


async def until(condition, within: float, step: float = 0.01) -> float:
    """Seconds until `condition()` held (fails after `within`)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"not within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - started


def listen_backends(url: str) -> set[int]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        ).fetchall()
    return {pid for (pid,) in rows}


async def test_a_terminated_listen_connection_reconnects_and_what_it_missed_shows_on_the_status_page(
    app, client, session, responder, database_url
):
    incident = await incidents.declare_incident(
        session, actor=responder, title="Payments DB failover", severity="SEV2", services=["checkout"]
    )
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        before = (await client.get("/status")).text
        assert "Checkout disruption" in before
        # Written without a NOTIFY, as a change committed while the listener is down would be
        # missed: the copy does not know of it.
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            conn.execute(
                "UPDATE incidents SET public_title = 'Card payments fail' WHERE id = %s", (incident.id,)
            )
        assert (await client.get("/status")).text == before

        with app.state.broker.subscribe(incident.id) as stream:
            listening = listen_backends(database_url)
            assert len(listening) == 1
            with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (listening.pop(),))
            await frames_until(stream, b"event: resync\r\n")
            assert app.state.listener.connected
            assert len(listen_backends(database_url)) == 1

            assert "Card payments fail" in (await client.get("/status")).text
            await incidents.add_timeline_entry(
                session, actor=responder, ref=incident.ref, kind="note", body="hi"
            )
            await frames_until(stream, f"event: change\r\ndata: {incident.id}\r\n".encode())


class SilentNetwork:
    """A TCP relay to PostgreSQL on loopback whose connections can be made to stop carrying
    bytes without closing, as a dropped route or a vanished host does. New connections
    relay normally."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self._open: list[tuple[asyncio.Event, list[asyncio.StreamWriter]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "SilentNetwork":
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for _, writers in self._open:
            for writer in writers:
                writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def go_silent(self) -> None:
        """The connections open now carry nothing more, in either direction."""
        for carrying, _ in self._open:
            carrying.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        carrying = asyncio.Event()
        carrying.set()
        self._open.append((carrying, [writer, up_writer]))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with suppress(ConnectionError):
                while data := await source.read(65536):
                    await carrying.wait()
                    sink.write(data)
                    await sink.drain()

        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(pump(source, sink))
            self._tasks.add(task)


@pytest.fixture
async def silent_network(database_url):
    dsn = libpq_url(database_url)
    server = conninfo_to_dict(dsn)
    async with SilentNetwork(str(server.get("host", "127.0.0.1")), int(server.get("port", 5432))) as network:
        network.dsn = make_conninfo(dsn, host="127.0.0.1", port=network.port)
        yield network


async def test_a_listen_connection_gone_silent_is_noticed_by_its_ping_and_replaced(
    silent_network, database_url
):
    listener = Listener(silent_network.dsn, (CHANNEL,), idle_timeout=0.3, ping_timeout=0.5)
    cache: ChangeCache[str] = ChangeCache(listener, max_age=60)
    broker = Broker(listener)
    running = asyncio.create_task(listener.run())
    try:
        await until(lambda: listener.connected, within=5)
        cache.put("page", "rendered before", since=cache.generation)
        with broker.subscribe(EVERYTHING) as stream:
            silent_network.go_silent()
            noticed = await until(lambda: not listener.connected, within=5)
            # The quiet spell, then a ping unanswered for its timeout; a little slack for a
            # loaded machine.
            assert noticed < 0.3 + 0.5 + 0.7, noticed
            assert cache.get("page") is None

            await until(lambda: listener.connected, within=5)
            await frames_until(stream, b"event: resync\r\n")
            assert cache.get("page") is None
            with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
                conn.execute(f"NOTIFY {CHANNEL}, '42'")
            await frames_until(stream, b"event: change\r\ndata: 42\r\n")
    finally:
        running.cancel()
        with suppress(asyncio.CancelledError):
            await running


async def test_a_quiet_listen_connection_is_pinged_and_kept(database_url):
    listener = Listener(libpq_url(database_url), (CHANNEL,), idle_timeout=0.1, ping_timeout=0.5)
    connects = []
    listener.on_reconnect(lambda: connects.append(time.monotonic()))
    running = asyncio.create_task(listener.run())
    try:
        await until(lambda: listener.connected, within=5)
        listening = listen_backends(database_url)
        await asyncio.sleep(1.0)  # ten quiet spells, each ended by a ping
        assert listener.connected and len(connects) == 1
        # The same backend, and pg_stat_activity still shows it as the listener.
        assert listen_backends(database_url) == listening
    finally:
        running.cancel()
        with suppress(asyncio.CancelledError):
            await running
