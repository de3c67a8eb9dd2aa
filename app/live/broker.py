"""Fan-out inside one process: the Listener's notifications go to the SSE streams that watch
the incident (or every incident, for the list and the dashboard).

Events are invalidations, not data: a browser that hears one fetches the current state of
the page. So a missed event is repaired by the next one, and a reconnect (network blip, a
replica gone, the LISTEN connection re-established) starts with a `resync`; nothing is shown
twice because a refetch replaces rather than appends.
"""

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from app.live.listener import Listener
from app.live.notify import PRESENCE_PREFIX

EVERYTHING = 0  # subscribe to every incident
QUEUE_SIZE = 100
PRESENCE_COALESCE_SECONDS = 1.0


class Broker:
    def __init__(self, listener: Listener) -> None:
        self._queues: dict[int, set[asyncio.Queue[tuple[str, str]]]] = defaultdict(set)
        self._ids = itertools.count(1)
        self._presence_due: set[int] = set()
        listener.subscribe(self._dispatch)
        listener.on_reconnect(self._resync_all)

    @property
    def clients(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def next_id(self) -> str:
        return str(next(self._ids))

    def _put(self, queue: asyncio.Queue[tuple[str, str]], event: tuple[str, str]) -> None:
        if queue.full():
            # A slow client: collapse what it has not read yet into one resync.
            while not queue.empty():
                queue.get_nowait()
            event = ("resync", event[1])
        queue.put_nowait(event)

    def _dispatch(self, _channel: str, payload: str) -> None:
        if payload.startswith(PRESENCE_PREFIX):
            self._presence_changed(int(payload.removeprefix(PRESENCE_PREFIX)))
            return
        incident_id = int(payload) if payload.isdigit() else None
        targets = set(self._queues[EVERYTHING])
        if incident_id is not None:
            targets |= self._queues.get(incident_id, set())
        for queue in targets:
            self._put(queue, ("change", payload))

    def _presence_changed(self, incident_id: int) -> None:
        """Viewers came or went: tell that incident's streams once per second at most."""
        if incident_id in self._presence_due:
            return
        self._presence_due.add(incident_id)

        def flush() -> None:
            self._presence_due.discard(incident_id)
            for queue in set(self._queues.get(incident_id, set())):
                self._put(queue, ("presence", str(incident_id)))

        asyncio.get_running_loop().call_later(PRESENCE_COALESCE_SECONDS, flush)

    def _resync_all(self) -> None:
        for queues in list(self._queues.values()):
            for queue in queues:
                self._put(queue, ("resync", ""))

    @contextmanager
    def subscribe(self, incident_id: int = EVERYTHING) -> Iterator[asyncio.Queue[tuple[str, str]]]:
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self._queues[incident_id].add(queue)
        try:
            yield queue
        finally:
            self._queues[incident_id].discard(queue)
