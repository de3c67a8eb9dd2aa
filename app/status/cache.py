"""Rendered copies of the status page, its JSON and its feed, kept per process.

An outage is when everyone refreshes the status page, so a request must not cost a query. A
copy is valid until the database announces a change, and for at most a minute (the page also
depends on the date); see app/live/cache.py.
"""

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive, Scope, Send

from app.live.cache import ChangeCache
from app.status.config import get_status_config
from app.web import wants_fragment

MAX_AGE_SECONDS = 60  # the page also depends on the date
# The cache keys of the public copies, and of the snapshot they are rendered from.
PAGE, PAGE_FRAGMENT, FEED, SUMMARY, SNAPSHOT = "html", "html:fragment", "atom", "json", "snapshot"
# Statuspage's public API, at the paths its consumers build from a page's address.
V2_PATHS = {
    "/api/v2/summary.json": "v2:summary",
    "/api/v2/status.json": "v2:status",
    "/api/v2/components.json": "v2:components",
    "/api/v2/incidents/unresolved.json": "v2:unresolved",
}
ENTITY_TAG = re.compile(r'\s*(?:W/)?("[^"]*")\s*(?:,|$)')


@dataclass(frozen=True)
class Cached:
    body: bytes
    media_type: str
    etag: str
    last_modified: str
    modified_at: datetime  # Last-Modified as a time: whole seconds, as HTTP dates have them


# The copies (Cached) and, under SNAPSHOT, the StatusSnapshot they are rendered from.
RenderedCache = ChangeCache[Any]


def rendered(body: bytes, media_type: str, modified_at: datetime) -> Cached:
    """A copy with the validators that let clients and proxies reuse it."""
    modified_at = modified_at.astimezone(UTC).replace(microsecond=0)
    return Cached(
        body=body,
        media_type=media_type,
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=format_datetime(modified_at, usegmt=True),
        modified_at=modified_at,
    )


def page_key(request: Request) -> str:
    return PAGE_FRAGMENT if wants_fragment(request) else PAGE


def _entity_tags(value: str) -> list[str] | None:
    """The opaque tags of an If-None-Match list (weak or strong), or None when it is malformed."""
    tags, position = [], 0
    while position < len(value):
        found = ENTITY_TAG.match(value, position)
        if found is None or found.end() == position:
            return None
        tags.append(found.group(1))
        position = found.end()
    return tags


def not_modified(request: Request, item: Cached) -> bool:
    """RFC 9110 section 13.2.2: If-None-Match first, compared weakly (a proxy that compresses the
    copy sends `W/"..."` back), a list or `*`; If-Modified-Since only when If-None-Match is absent,
    and ignored when it is not one valid HTTP date."""
    if_none_match = request.headers.getlist("if-none-match")
    if if_none_match:
        value = ",".join(if_none_match)
        if value.strip() == "*":
            return True
        tags = _entity_tags(value)
        return tags is not None and item.etag in tags
    if_modified_since = request.headers.getlist("if-modified-since")
    if len(if_modified_since) != 1:
        return False
    try:
        since = parsedate_to_datetime(if_modified_since[0])
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:  # an HTTP date is GMT; an obsolete form may not say so
        since = since.replace(tzinfo=UTC)
    return item.modified_at <= since


def cached_response(request: Request, item: Cached, *, private: bool) -> Response:
    """The copy, or 304 when the client already has it (its ETag, or nothing newer than its date)."""
    headers = {
        "ETag": item.etag,
        "Last-Modified": item.last_modified,
        "Cache-Control": ("private" if private else "public") + ", max-age=10",
        "Vary": "HX-Request",
    }
    if not_modified(request, item):
        return Response(status_code=304, headers=headers)
    return Response(item.body, media_type=item.media_type, headers=headers)


COPY_KEYS = {
    "/status": page_key,
    "/status/feed.atom": lambda _request: FEED,
    "/api/v1/status": lambda _request: SUMMARY,
    **{path: lambda _request, key=key: key for path, key in V2_PATHS.items()},
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
