"""The page side of the web layer: templates, page-or-fragment rendering, errors.

One Jinja environment (autoescape on). A page template's blocks are its fragments: an HTMX
request gets just the blocks it asks for, any other request gets the whole page.
"""

import logging
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import psycopg
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import iter_route_contexts
from jinja2_fragments.fastapi import Jinja2Blocks
from markupsafe import Markup
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import DomainError, InvalidInput, NotAuthenticated
from app.markdown import render_markdown

log = logging.getLogger("icc")

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
templates = Jinja2Blocks(directory=str(TEMPLATES_DIR))


def _utc_text(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _sanitised_runbook(html: str) -> Markup:
    # Runbook HTML is stored only by app.runbooks.service.sync_runbooks, from render_runbook,
    # whose last step is the nh3 sanitiser.
    return Markup(html)  # noqa: S704


templates.env.filters["markdown"] = render_markdown
templates.env.filters["safe_runbook"] = _sanitised_runbook
templates.env.filters["utc"] = _utc_text
templates.env.filters["iso"] = _iso


def is_api(request: Request) -> bool:
    """Our JSON API, and PagerDuty's Events API at its own paths (/v2/enqueue)."""
    return request.url.path.startswith(("/api/", "/v2/"))


def refuse_repeated_query(request: Request) -> None:
    """A query parameter an API route declares takes one value: given twice it is refused (422)
    rather than read as its last value, as the OpenAPI document declares each as one value.
    Routes that declare no 422 (PagerDuty's, which answer in PagerDuty's words) are left alone."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or 422 not in (getattr(route, "responses", None) or {}):
        return
    declared = {param.alias for param in dependant.query_params}
    names = [name for name, _ in request.query_params.multi_items() if name in declared]
    if repeated := next((name for name in names if names.count(name) > 1), None):
        raise InvalidInput(f"{repeated}: give this query parameter once.", field=repeated)


def wants_fragment(request: Request) -> bool:
    """An HTMX swap wants a fragment; a boosted request or a history restore wants the page."""
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and headers.get("HX-Boosted") != "true"
        and headers.get("HX-History-Restore-Request") != "true"
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    blocks: list[str] | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """The whole page, or for an HTMX request only `blocks` of it."""
    principal = getattr(request.state, "principal", None)
    full_context = {
        "request": request,
        "user": principal.user if principal else None,
        "csrf_token": principal.csrf_token if principal else "",
        **(context or {}),
    }
    if blocks and wants_fragment(request):
        response = templates.TemplateResponse(
            request, template, full_context, block_names=blocks, status_code=status_code
        )
    else:
        response = templates.TemplateResponse(request, template, full_context, status_code=status_code)
    response.headers["Vary"] = "HX-Request"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def see_other(url: str) -> RedirectResponse:
    """303 after an unsafe request, so a reload never posts twice."""
    return RedirectResponse(url, status_code=303)


def error_response(
    request: Request, status_code: int, message: str, code: str, headers: dict[str, str] | None = None
) -> Response:
    """An error as JSON for the API, as a message in place for HTMX, else as a page; `headers`
    (a domain error's, such as Retry-After) go with each."""
    if is_api(request):
        return JSONResponse({"detail": message, "code": code}, status_code=status_code, headers=headers)
    if wants_fragment(request):
        return render(
            request,
            "_flash.html",
            {"message": message, "level": "error"},
            status_code=status_code,
            headers={**(headers or {}), "HX-Retarget": "#icc-flash", "HX-Reswap": "innerHTML"},
        )
    context = {"message": message, "status": status_code}
    return render(request, "error.html", context, status_code=status_code, headers=headers)


def _undecodable_field(form: bytes) -> str | None:
    """The first field of a urlencoded form whose name or value is not UTF-8 once percent-decoded."""
    for pair in form.split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError:
                return unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8", "replace")
    return None


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` for a middleware that has read the whole request body already: it hands on
    `body` as one message, then whatever `receive` says next (the client leaving)."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RefuseUndecodableForms:
    """A urlencoded form with a field that is not UTF-8 is refused (400, naming the field) before
    anything reads it. Starlette, as the URL standard says, would decode those bytes to U+FFFD,
    so the text stored would not be what was sent; a lone surrogate (%ED%A0%80) is one of them.
    Our pages are UTF-8 and browsers send nothing else: only a broken or hostile client meets this."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        content_type = dict(scope.get("headers", ())).get(b"content-type", b"").lower()
        if scope["type"] != "http" or not content_type.startswith(b"application/x-www-form-urlencoded"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if (field := _undecodable_field(body)) is not None:
            message_text = f"The form field '{_shown(field)}' is not UTF-8 text; nothing was saved."
            await error_response(Request(scope), 400, message_text, "invalid_input")(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    if isinstance(exc, NotAuthenticated) and not is_api(request):
        if wants_fragment(request):
            return error_response(
                request,
                401,
                "Your session has ended. Sign in again in a new tab; your text is kept here.",
                exc.code,
            )
        if request.method == "GET":
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return error_response(request, exc.status_code, exc.message, exc.code, exc.headers)


def _shown(part: object) -> str:
    """A location part as text: escaped (a key may be any text, a lone surrogate included) and short."""
    text = repr(part)[1:-1] if isinstance(part, str) else str(part)
    return text if len(text) <= 40 else text[:40] + "…"


def _field_of(location: tuple) -> str:
    """The field an error is about ("title", "services.0", "cursor"), or "body" for the whole body."""
    kind, *path = location or ("request",)
    return ".".join(_shown(p) for p in path) or str(kind)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = [f"{_field_of(tuple(e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()[:3]]
    return "; ".join(parts) or "The request is not valid."


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "not JSON")
            at = error.get("loc", ("body", 0))[-1]
            return error_response(
                request, 400, f"The body is not valid JSON: {reason} (at character {at}).", "invalid_json"
            )
    return error_response(request, 422, _describe_validation(exc), "invalid_input")


def _undecodable_body(exc: HTTPException) -> str | None:
    """Why FastAPI could not decode the body, when it wrapped the reason in a plain 400: it turns
    every error of the JSON decoder but a syntax error into "There was an error parsing the body"."""
    cause = exc.__cause__
    if isinstance(cause, RecursionError):
        return "The body is not JSON we can read: it is nested too deeply."
    if isinstance(cause, UnicodeDecodeError):
        return "The body is not UTF-8 text."
    if isinstance(cause, ValueError) and "digits" in str(cause):  # Python's limit: 4,300 digits
        return "The body is not JSON we can read: a number in it has too many digits."
    return None


def _allowed_methods(request: Request) -> str:
    """Every method some route answers at this path: Starlette's 405 names only the first route's."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):  # included routers' routes too
        match, _ = route.matches({**request.scope, "method": ""})
        if match != Match.NONE:
            methods |= route.methods or set()
    return ", ".join(sorted(methods))


async def handle_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and (problem := _undecodable_body(exc)):
        return error_response(request, 400, problem, "invalid_json")
    messages = {404: "There is nothing at this address.", 405: "That method is not allowed here."}
    message = exc.detail if isinstance(exc.detail, str) and exc.status_code not in messages else None
    code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.status_code, "error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    text = message or messages.get(exc.status_code, "Error.")
    return error_response(request, exc.status_code, text, code, headers=headers or None)


async def handle_database_down(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", exc)
    return error_response(
        request, 503, "The database is not reachable right now. Try again in a moment.", "unavailable"
    )


async def handle_data_error(request: Request, exc: Exception) -> Response:
    """PostgreSQL refused a value (a NUL character, a number out of range): the input's fault."""
    log.info("refused value on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        request,
        422,
        "A value in the request cannot be stored (out of range or a NUL character).",
        "invalid_input",
    )


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback; the user gets a message and loses nothing on the page."""
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(
        request, 500, "Something went wrong on our side. Nothing you typed was lost; try again.", "internal"
    )


EXCEPTION_HANDLERS = {
    DomainError: handle_domain_error,
    RequestValidationError: handle_validation_error,
    HTTPException: handle_http_error,
    OperationalError: handle_database_down,
    DataError: handle_data_error,
    psycopg.OperationalError: handle_database_down,
    ConnectionRefusedError: handle_database_down,
    Exception: handle_unexpected,
}
