"""Rendered copies of the status page, its JSON and its feed, kept per process.

An outage is when everyone refreshes the status page, so a request must not cost a query. A
copy is valid until the database announces a change, and for at most a minute (the page also
depends on the date); see app/live/cache.py.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from app.live.cache import ChangeCache
from app.status.config import get_status_config
from app.web import wants_fragment

MAX_AGE_SECONDS = 60  # the page also depends on the date
# The cache keys of the three public copies, and of the snapshot they are rendered from.
PAGE, PAGE_FRAGMENT, FEED, SUMMARY, SNAPSHOT = "html", "html:fragment", "atom", "json", "snapshot"


@dataclass(frozen=True)
class Cached:
    body: bytes
    media_type: str
    etag: str
    last_modified: str


# The copies (Cached) and, under SNAPSHOT, the StatusSnapshot they are rendered from.
RenderedCache = ChangeCache[Any]


def rendered(body: bytes, media_type: str, updated_at: datetime) -> Cached:
    """A copy with the validators that let clients and proxies reuse it."""
    return Cached(
        body=body,
        media_type=media_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=format_datetime(updated_at.astimezone(UTC), usegmt=True),
    )


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
