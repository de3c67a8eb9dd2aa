"""Fan-out inside one process: the Listener's notifications go to the SSE streams that watch
the incident (or every incident, for the list and the dashboard).

Events are invalidations, not data: a browser that hears one fetches the current state of
the page. So a missed event is repaired by the next one, and a reconnect (network blip, a
replica gone, the LISTEN connection re-established) starts with a `resync`; nothing is shown
twice because a refetch replaces rather than appends.

A notification is encoded into its SSE bytes once, and each watching stream gets that same
`bytes` object appended to its backlog: with a thousand streams open, the work per stream is
an append and a wake-up, nothing that grows with the event.
"""

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from app.live.listener import Listener
from app.live.notify import PRESENCE_PREFIX

EVERYTHING = 0  # subscribe to every incident
BACKLOG = 100  # unread events a stream may hold before they collapse into one resync
PRESENCE_COALESCE_SECONDS = 1.0
# Without an id, so the browser keeps the Last-Event-ID it had; a resync needs none.
COLLAPSED_RESYNC = b"event: resync\r\ndata: \r\n\r\n"


def encode(kind: str, event_id: int, data: str = "") -> bytes:
    """One SSE event, as sse-starlette would write it (`\\r\\n` line ends)."""
    return f"id: {event_id}\r\nevent: {kind}\r\ndata: {data}\r\n\r\n".encode()


class Subscription:
    """One stream's unread events. The broker appends; the stream takes them all at once."""

    __slots__ = ("_backlog", "_waiter")

    def __init__(self) -> None:
        self._backlog: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None

    def push(self, frame: bytes) -> None:
        if len(self._backlog) >= BACKLOG:
            # A slow client: what it has not read yet collapses into one resync.
            self._backlog = [COLLAPSED_RESYNC]
        else:
            self._backlog.append(frame)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_frames(self) -> bytes:
        """Everything unread, as one chunk (one write however many events piled up)."""
        while not self._backlog:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frames, self._backlog = self._backlog, []
        return frames[0] if len(frames) == 1 else b"".join(frames)


class Broker:
    def __init__(self, listener: Listener) -> None:
        self._subscriptions: dict[int, set[Subscription]] = defaultdict(set)
        self._ids = itertools.count(1)
        self._presence_due: set[int] = set()
        listener.subscribe(self._dispatch)
        listener.on_reconnect(self._resync_all)

    @property
    def clients(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())

    def frame(self, kind: str, data: str = "") -> bytes:
        """An event with this process's next id (ids only feed Last-Event-ID, which we never
        replay from: every stream starts with a resync)."""
        return encode(kind, next(self._ids), data)

    @staticmethod
    def _publish(subscriptions: Iterable[Subscription], frame: bytes) -> None:
        for subscription in subscriptions:
            subscription.push(frame)

    def _dispatch(self, _channel: str, payload: str) -> None:
        if payload.startswith(PRESENCE_PREFIX):
            self._presence_changed(int(payload.removeprefix(PRESENCE_PREFIX)))
            return
        frame = self.frame("change", payload)
        self._publish(self._subscriptions.get(EVERYTHING, ()), frame)
        incident_id = int(payload) if payload.isdigit() else EVERYTHING
        if incident_id != EVERYTHING:
            self._publish(self._subscriptions.get(incident_id, ()), frame)

    def _presence_changed(self, incident_id: int) -> None:
        """Viewers came or went: tell that incident's streams once per second at most."""
        if incident_id in self._presence_due:
            return
        self._presence_due.add(incident_id)

        def flush() -> None:
            self._presence_due.discard(incident_id)
            self._publish(self._subscriptions.get(incident_id, ()), self.frame("presence", str(incident_id)))

        asyncio.get_running_loop().call_later(PRESENCE_COALESCE_SECONDS, flush)

    def _resync_all(self) -> None:
        frame = self.frame("resync")
        for subscriptions in self._subscriptions.values():
            self._publish(subscriptions, frame)

    @contextmanager
    def subscribe(self, incident_id: int = EVERYTHING) -> Iterator[Subscription]:
        subscription = Subscription()
        self._subscriptions[incident_id].add(subscription)
        try:
            yield subscription
        finally:
            watching = self._subscriptions[incident_id]
            watching.discard(subscription)
            if not watching:
                del self._subscriptions[incident_id]
