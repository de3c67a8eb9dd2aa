"""One LISTEN connection per process. It calls its subscribers for every notification and
reconnects (with backoff) when the connection drops; while it is down, `connected` is False so
caches that rely on it stop trusting themselves."""

import asyncio
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger("icc.live")


class Listener:
    def __init__(self, dsn: str, channels: tuple[str, ...]) -> None:
        self.dsn = dsn
        self.channels = channels
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
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                    for channel in self.channels:
                        await conn.execute(f'LISTEN "{channel}"')
                    self.connected = True
                    delay = 0.5
                    for callback in self._on_reconnect:
                        callback()
                    async for notice in conn.notifies():
                        for callback in self._subscribers:
                            callback(notice.channel, notice.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting in %.1f s", exc, delay)
            finally:
                self.connected = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
