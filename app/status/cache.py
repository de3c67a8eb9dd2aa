"""Rendered copies of the status page, its JSON and its feed, kept per process.

An outage is when everyone refreshes the status page, so a request must not cost a query. A
copy is valid until the database announces a change (LISTEN on `icc_changes`), and for at most
a minute (the page also depends on the date). While the listener is disconnected nothing is
cached: a stale status page is worse than a slow one.
"""

import asyncio
import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from fastapi import Request
from fastapi.responses import Response

from app.live.listener import Listener
from app.live.notify import PRESENCE_PREFIX

MAX_AGE_SECONDS = 60


@dataclass(frozen=True)
class Cached:
    body: bytes
    media_type: str
    etag: str
    last_modified: str
    stored_at: float


class RenderedCache:
    def __init__(self) -> None:
        self._items: dict[str, Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.listener: Listener | None = None

    def rebuilding(self, key: str) -> asyncio.Lock:
        """Held while one request renders a copy, so a crowd that arrives after a change waits
        for that copy instead of each building its own."""
        return self._locks.setdefault(key, asyncio.Lock())

    def attach(self, listener: Listener) -> None:
        self.listener = listener
        listener.subscribe(
            lambda _channel, payload: None if payload.startswith(PRESENCE_PREFIX) else self.clear()
        )
        listener.on_reconnect(self.clear)

    def clear(self) -> None:
        self._items.clear()

    def get(self, key: str) -> Cached | None:
        if self.listener is None or not self.listener.connected:
            return None
        item = self._items.get(key)
        if item is None or time.monotonic() - item.stored_at > MAX_AGE_SECONDS:
            return None
        return item

    def put(self, key: str, body: bytes, media_type: str, updated_at: datetime) -> Cached:
        item = Cached(
            body=body,
            media_type=media_type,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            last_modified=format_datetime(updated_at.astimezone(UTC), usegmt=True),
            stored_at=time.monotonic(),
        )
        if self.listener is not None and self.listener.connected:
            self._items[key] = item
        return item


def cached_response(request: Request, item: Cached, *, private: bool) -> Response:
    """The copy, or 304 when the client already has it."""
    headers = {
        "ETag": item.etag,
        "Last-Modified": item.last_modified,
        "Cache-Control": ("private" if private else "public") + ", max-age=10",
        "Vary": "HX-Request",
    }
    if request.headers.get("If-None-Match") == item.etag:
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)
