"""create_app(): the FastAPI application with its routers, handlers and database."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app import openapi
from app.actions import api as actions_api
from app.actions import routes as actions_routes
from app.actions.catalog import get_catalog
from app.alerts import api as alerts_api
from app.alerts import routes as alerts_routes
from app.alerts.config import get_alert_config
from app.auth import routes as auth_routes
from app.config import ConfigError, Settings, get_policy, get_settings
from app.dashboard import routes as dashboard_routes
from app.db import libpq_url, make_engine, make_sessionmaker
from app.escalation import scheduler
from app.escalation.config import get_escalation_policy
from app.incidents import api as incidents_api
from app.incidents import routes as incidents_routes
from app.live import routes as live_routes
from app.live.broker import Broker
from app.live.cache import ChangeCache
from app.live.listener import Listener
from app.live.notify import CHANNEL
from app.observability import RequestMetrics, observe_request
from app.observability import router as observability_router
from app.runbooks import routes as runbooks_routes
from app.security import security_headers, with_security_headers
from app.status import api as status_api
from app.status import routes as status_routes
from app.status.cache import MAX_AGE_SECONDS, send_public_copy
from app.status.config import get_status_config
from app.web import (
    EXCEPTION_HANDLERS,
    RefuseUndecodableForms,
    error_response,
    refuse_repeated_query,
    render,
    replaying,
)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_BODY_BYTES = 1024 * 1024
API_DESCRIPTION = (
    "Run incidents: declare, change severity and status, assign roles, log the timeline, run "
    "remediation actions, post stakeholder updates, take alerts in. Authenticate with "
    "`Authorization: Bearer <token>` (`icc token create`). Every refusal is "
    '`{"detail": "...", "code": "..."}` with the status each operation declares (on PagerDuty\'s '
    "paths, PagerDuty's own error body); any operation may also answer 503 while the database "
    "is unreachable, and an undeclared method 405 with `Allow`."
)


class BodySizeLimit:
    """Refuse a request body over 1 MiB: by its Content-Length before anything reads it, or,
    for a chunked body, while reading it (the body is then buffered and handed on)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > MAX_BODY_BYTES:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(Request(scope), 413, "The request is larger than 1 MiB.", "too_large")
        await response(scope, receive, send)


class CommandCenter(FastAPI):
    """The application. Its first step adds the security headers to whatever is sent
    (app/security.py); the next, before any middleware or routing, answers the public status
    paths from their rendered copy (app/status/cache.py): during an outage that crowd is most of
    the traffic, and the framework's per-request work would be most of its cost."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            send = with_security_headers(send, self.state.security_headers, path=scope["path"])
            started = time.perf_counter()
            status = await send_public_copy(self.state.status_cache, scope, receive, send)
            if status is not None:  # timed to the end of the answer: headers and body are one copy
                observe_request(scope["method"], scope["path"], status, started)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        return openapi.document(self)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Two loops per process, neither holding state of record: the LISTEN connection only
    invalidates caches and wakes SSE streams (if it dies they fall back, see app/live/), and the
    scheduler derives its work from the database, made exactly-once by constraints, so any number
    of processes may run it (app/escalation/)."""
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(app.state.listener.run())]
    if app.state.settings.run_scheduler:
        tasks.append(loop.create_task(scheduler.run(app.state.sessionmaker)))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await app.state.engine.dispose()


def _share(app: FastAPI, settings: Settings, url: str) -> None:
    """What every request of the application shares (app.state): the database, the policies read
    at start-up, and the LISTEN connection with what relies on it."""
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    listener = Listener(libpq_url(url), (CHANNEL,))
    app.state.settings = settings
    app.state.security_headers = security_headers(secure_cookies=settings.secure_cookies)
    app.state.engine = engine
    app.state.sessionmaker = sessionmaker
    app.state.catalog = get_catalog()  # a broken [actions] table stops start-up here
    app.state.alert_config = get_alert_config()  # and so does a broken [alerts] table
    app.state.listener = listener
    # Subscribed in this order, so a change outdates the caches before the streams hear of it.
    app.state.status_cache = ChangeCache(listener, max_age=MAX_AGE_SECONDS)
    app.state.trends_cache = ChangeCache(listener, max_age=MAX_AGE_SECONDS)  # windows move with the clock
    app.state.broker = Broker(listener)
    app.state.streams = live_routes.Streams(sessionmaker)


def _add_middleware(app: FastAPI) -> None:
    for exc_type, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exc_type, handler)
    app.add_middleware(RefuseUndecodableForms)  # inside the size limit: it reads the whole form
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestMetrics)  # outermost: it times refusals too


def _add_routes(app: FastAPI, settings: Settings) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(incidents_api.router)
    app.include_router(auth_routes.router)
    app.include_router(incidents_routes.router)
    app.include_router(runbooks_routes.router)
    app.include_router(actions_api.router)
    app.include_router(actions_routes.router)
    if settings.demo:
        app.include_router(actions_routes.demo_router)
    app.include_router(status_api.router)
    app.include_router(status_api.statuspage)  # /api/v2: Statuspage's paths
    app.include_router(live_routes.router)
    app.include_router(status_routes.router)
    app.include_router(dashboard_routes.router)
    app.include_router(alerts_api.router)
    app.include_router(alerts_routes.router)
    app.include_router(observability_router)  # /readyz and /metrics

    @app.get("/api/docs", include_in_schema=False)
    async def api_docs(request: Request) -> Response:
        return render(request, "api_docs.html", {"openapi_url": app.openapi_url})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        # Every page names its icon; this is for what a browser shows without a page (JSON).
        return RedirectResponse("/static/img/favicon.svg", status_code=301)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


def create_app(database_url: str | None = None) -> FastAPI:
    settings = get_settings()
    get_policy()  # a broken icc.toml stops start-up here, with its message
    url = database_url or settings.database_url
    if not url:
        raise ConfigError("ICC_DATABASE_URL is not set (`icc serve` starts an embedded database)")
    get_status_config()
    get_escalation_policy()
    app = CommandCenter(
        title="Incident command center",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by _add_routes from the pinned Swagger UI in /static, under the site's CSP
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
        dependencies=[Depends(refuse_repeated_query)],
    )
    _share(app, settings, url)
    _add_middleware(app)
    _add_routes(app, settings)
    return app
