"""Values computed from the database and kept per process until the database announces a change.

A value is valid until a NOTIFY on `icc_changes` (presence changes aside), and for at most
`max_age` seconds. While the listener is disconnected nothing is kept: a stale answer is worse
than a slow one when we cannot know it is stale. After a change, the one request that rebuilds a
value holds its lock; the public status paths send the value of a moment ago (`previous`)
meanwhile instead of queueing behind a rebuild that can take seconds with a long history.

A value computed while a change was announced is out of date before it is stored: `put` keeps a
value only if no change came in since the `generation` it was computed at. `get_or_build` does
all of that for a caller.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from app.live.listener import Listener
from app.live.notify import PRESENCE_PREFIX

T = TypeVar("T")


class ChangeCache(Generic[T]):
    def __init__(self, listener: Listener, *, max_age: float) -> None:
        self.listener = listener
        self.max_age = max_age
        self._items: dict[str, tuple[float, T]] = {}
        # Values an announced change made out of date, kept to be sent while their rebuild runs.
        self._previous: dict[str, tuple[float, T]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.generation = 0  # bumped by every announced change and every reconnect
        listener.subscribe(
            lambda _channel, payload: None if payload.startswith(PRESENCE_PREFIX) else self.outdate()
        )
        listener.on_reconnect(self.clear)

    def rebuilding(self, key: str) -> asyncio.Lock:
        """Held while one request computes a value, so a crowd that arrives after a change does
        not each compute its own."""
        return self._locks.setdefault(key, asyncio.Lock())

    def outdate(self) -> None:
        """A change was announced: every value must be rebuilt before it is trusted again."""
        self.generation += 1
        self._previous.update(self._items)
        self._items.clear()

    def clear(self) -> None:
        """Notifications may have been missed: nothing here is worth sending any more."""
        self.generation += 1
        self._items.clear()
        self._previous.clear()

    def _fresh(self, found: tuple[float, T] | None) -> T | None:
        if found is None or not self.listener.connected or time.monotonic() - found[0] > self.max_age:
            return None
        return found[1]

    def get(self, key: str) -> T | None:
        return self._fresh(self._items.get(key))

    def previous(self, key: str) -> T | None:
        """The value before the last change, only while one request is rebuilding it."""
        if not self.rebuilding(key).locked():
            return None
        return self._fresh(self._previous.get(key))

    def put(self, key: str, value: T, *, since: int) -> T:
        """Keep `value`, computed from what the database held at generation `since`, if that is
        still the current generation and the listener is up; hand it back either way."""
        if self.listener.connected and since == self.generation:
            self._items[key] = (time.monotonic(), value)
            self._previous.pop(key, None)
        return value

    async def get_or_build(self, key: str, build: Callable[[], Awaitable[T]]) -> T:
        """The kept value, or `build()`'s, computed by one request at a time and kept if no change
        came in meanwhile."""
        async with self.rebuilding(key):
            if (kept := self.get(key)) is not None:
                return kept
            since = self.generation
            return self.put(key, await build(), since=since)
