"""One LISTEN connection per process, on its own autocommit connection, as procrastinate's
listener is. It calls its subscribers for every notification; after `idle_timeout` seconds
without one it pings, so a connection that died without a word (a network that drops packets, a
host that vanished) is noticed within `idle_timeout + ping_timeout`; and it reconnects with
backoff when the connection fails. While it is down `connected` is False, so caches that rely on
it stop trusting themselves, and every connect calls the `on_reconnect` callbacks: notifications
may have been missed.

The ping is the LISTEN statements again rather than procrastinate's `SELECT 1`: for the server
listening again is a no-op, for us it is the same round trip, and `pg_stat_activity` keeps
showing the connection as the listener (its last statement), which is how an operator, or a
test, finds it to terminate."""

import asyncio
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger("icc.live")

IDLE_SECONDS = 10.0  # a quiet connection is pinged this often
PING_TIMEOUT_SECONDS = 5.0  # a ping unanswered for this long: the connection is dead
CONNECT_SECONDS = 10  # libpq's connect_timeout (whole seconds)
FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 10.0


class Listener:
    def __init__(
        self,
        dsn: str,
        channels: tuple[str, ...],
        *,
        idle_timeout: float = IDLE_SECONDS,
        ping_timeout: float = PING_TIMEOUT_SECONDS,
    ) -> None:
        self.dsn = dsn
        self.channels = channels
        self.idle_timeout = idle_timeout
        self.ping_timeout = ping_timeout
        self.connected = False
        self._subscribers: list[Callable[[str, str], None]] = []
        self._on_reconnect: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[str, str], None]) -> None:
        """`callback(channel, payload)` for every notification."""
        self._subscribers.append(callback)

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Called after the connection came back: notifications may have been missed."""
        self._on_reconnect.append(callback)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after 0.5 s, then twice as long each time up to
        10 s, and from 0.5 s again once a connection listened."""
        delay = FIRST_DELAY_SECONDS
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=CONNECT_SECONDS
                ) as conn:
                    await self._listen(conn)
                    self.connected = True
                    delay = FIRST_DELAY_SECONDS
                    for callback in self._on_reconnect:
                        callback()
                    await self._relay(conn)
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)

    async def _relay(self, conn: psycopg.AsyncConnection) -> None:
        """Hand each notification to the subscribers until the connection fails. psycopg keeps
        what arrives between two `notifies()` calls for the next one, so nothing is lost."""
        while True:
            quiet = True
            async for notice in conn.notifies(timeout=self.idle_timeout):
                quiet = False
                for callback in self._subscribers:
                    callback(notice.channel, notice.payload)
            if quiet:
                await self._listen(conn)

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        """LISTEN on every channel; without an answer within `ping_timeout`, close the
        connection's socket, which fails the statement at once. Cancelling the statement
        instead would make psycopg ask the server to cancel it and wait for that, over the same
        dead network, for up to ten seconds more."""

        def give_up() -> None:
            log.warning("LISTEN connection: no answer within %.1f s", self.ping_timeout)
            conn.pgconn.finish()

        deadline = asyncio.get_running_loop().call_later(self.ping_timeout, give_up)
        try:
            for channel in self.channels:
                await conn.execute(f'LISTEN "{channel}"')
        finally:
            deadline.cancel()
