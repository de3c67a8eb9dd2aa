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
from starlette.types import Receive, Scope, Send

from app.live.listener import Listener
from app.live.notify import PRESENCE_PREFIX
from app.status.config import get_status_config
from app.web import wants_fragment

MAX_AGE_SECONDS = 60
# The cache keys of the three public copies.
PAGE, PAGE_FRAGMENT, FEED, SUMMARY = "html", "html:fragment", "atom", "json"


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
        # Copies an announced change made out of date, kept to be sent while their rebuild runs.
        self._previous: dict[str, Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.listener: Listener | None = None

    def rebuilding(self, key: str) -> asyncio.Lock:
        """Held while one request renders a copy, so a crowd that arrives after a change does not
        each build its own."""
        return self._locks.setdefault(key, asyncio.Lock())

    def attach(self, listener: Listener) -> None:
        self.listener = listener
        listener.subscribe(
            lambda _channel, payload: None if payload.startswith(PRESENCE_PREFIX) else self.outdate()
        )
        listener.on_reconnect(self.clear)

    def outdate(self) -> None:
        """A change was announced: every copy must be rebuilt before it is trusted again."""
        self._previous.update(self._items)
        self._items.clear()

    def clear(self) -> None:
        """Notifications may have been missed: nothing here is worth sending any more."""
        self._items.clear()
        self._previous.clear()

    def get(self, key: str) -> Cached | None:
        if self.listener is None or not self.listener.connected:
            return None
        item = self._items.get(key)
        if item is None or time.monotonic() - item.stored_at > MAX_AGE_SECONDS:
            return None
        return item

    def previous(self, key: str) -> Cached | None:
        """The copy before the last change, only while one request is rebuilding it: with a long
        history a rebuild takes seconds, and a crowd should see the page of a moment ago at once
        rather than queue behind it (a proxy's cache does the same: `proxy_cache_use_stale
        updating`)."""
        if self.listener is None or not self.listener.connected or not self.rebuilding(key).locked():
            return None
        item = self._previous.get(key)
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
            self._previous.pop(key, None)
        return item


def page_key(request: Request) -> str:
    return PAGE_FRAGMENT if wants_fragment(request) else PAGE


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


COPY_KEYS = {
    "/status": page_key,
    "/status/feed.atom": lambda _request: FEED,
    "/api/v1/status": lambda _request: SUMMARY,
}


async def send_public_copy(cache: RenderedCache, scope: Scope, receive: Receive, send: Send) -> int | None:
    """Send the rendered copy of a public status path, if there is one: the status code sent, or
    None when the request is not for this.

    The application calls this before its middleware, routing, dependencies or a database
    session, so a crowd refreshing the status page during an outage costs a dictionary lookup per
    request. A miss, a private status page or another path is for the routes, which render the
    copy and store it."""
    key_of = COPY_KEYS.get(scope["path"])
    if key_of is None or scope["method"] not in ("GET", "HEAD") or get_status_config().require_login:
        return None
    request = Request(scope, receive)
    key = key_of(request)
    item = cache.get(key) or cache.previous(key)
    if item is None:
        return None
    response = cached_response(request, item, private=False)
    await response(scope, receive, send)
    return response.status_code
