"""Readiness and Prometheus metrics: `/readyz`, `/metrics` and the request-latency middleware.

Numbers are per process. Each uvicorn process keeps its own counters and histograms (requests it
served, action runs it finished, alerts it stored, its SSE clients); Prometheus scrapes every
replica and sums. We deliberately do not use prometheus-client's multiprocess mode: a deployment
runs one server process per container (replicas are containers), so a scrape of a container is a
scrape of the process. The database gauges (open incidents, SLA breaches) are read from
PostgreSQL on each scrape, so every replica reports the same global values: aggregate them with
max(), not sum(). See docs/deploy.md.
"""

import asyncio
import logging
import time
from functools import lru_cache

from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import clock
from app.config import get_policy
from app.migrate import alembic_config

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

READY_TIMEOUT_SECONDS = 2.0
SCRAPE_QUERY_TIMEOUT_SECONDS = 2.0

# Each counter and histogram child would also export a `_created` series (when this process
# made it): an eighth of all series, which no query or rule of ours reads. Off for the process.
disable_created_metrics()

REQUEST_SECONDS = Histogram(
    "icc_http_request_duration_seconds",
    "Time until the response headers are sent (for an SSE stream: until it opens), by route template.",
    ("method", "route"),
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REQUESTS = Counter(
    "icc_http_requests", "Responses sent, by route template and status code.", ("method", "route", "status")
)
ACTION_RUNS = Counter(
    "icc_action_runs", "Webhook action runs finished by this process, by outcome.", ("action", "state")
)
ALERTS_STORED = Counter(
    "icc_alerts_stored", "Alerts stored (inserted or updated) by this process.", ("source",)
)
SSE_CLIENTS = Gauge("icc_sse_clients", "SSE streams open on this process.")
OPEN_INCIDENTS = Gauge(
    "icc_open_incidents", "Unresolved incidents by severity (global: from the database).", ("severity",)
)
SLA_BREACHES = Gauge(
    "icc_sla_breached_incidents",
    "Unresolved incidents whose timer is breached (global: from the database).",
    ("timer",),
)
DATABASE_UP = Gauge(
    "icc_metrics_database_up", "1 when the last scrape could read the database gauges, else 0."
)

UNMATCHED = "<unmatched>"

# A breached timer is one still running past its deadline or stopped after it (app/incidents/timers.py).
_BREACHES_SQL = text(
    """
    SELECT
      count(*) FILTER (WHERE (acknowledged_at IS NULL AND ack_due_at <= :now)
                          OR acknowledged_at > ack_due_at),
      count(*) FILTER (WHERE (mitigated_at IS NULL AND mitigation_due_at <= :now)
                          OR mitigated_at > mitigation_due_at),
      count(*) FILTER (WHERE update_due_at <= :now)
    FROM incidents WHERE resolved_at IS NULL
    """
)
_OPEN_SQL = text("SELECT severity, count(*) FROM incidents WHERE resolved_at IS NULL GROUP BY severity")


def route_template(scope: Scope) -> str:
    """The path template of the route that handles this request ("/incidents/{ref}"), never the
    raw path, so the label's values are bounded by the routes, not by the URLs clients invent."""
    route = scope.get("route")
    if route is not None:
        return getattr(route, "path", UNMATCHED) or UNMATCHED
    app = scope.get("app")
    router = getattr(app, "router", None)
    for candidate in getattr(router, "routes", ()):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return getattr(candidate, "path", UNMATCHED)
    return UNMATCHED


def observe_request(method: str, route: str, status: int, started: float) -> None:
    """Count one response and the time from `started` (perf_counter) to its headers."""
    REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
    REQUESTS.labels(method, route, str(status)).inc()


class RequestMetrics:
    """Pure ASGI middleware: time to the response headers, by method and route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        recorded = False

        def record(status: int) -> None:
            nonlocal recorded
            if recorded:
                return
            recorded = True
            observe_request(scope["method"], route_template(scope), status, started)

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except Exception:
            record(500)
            raise


@lru_cache
def script_heads() -> frozenset[str]:
    """The migration heads in migrations/ (read once per process: the code does not change)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("postgresql://unused")).get_heads())


def _not_ready(reason: str, detail: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason, "detail": detail}, status_code=503)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready for traffic: the database answers within 2 s and its schema is at the migration head."""
    engine = request.app.state.engine
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            versions = set(
                (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars()
            )
    except TimeoutError:
        return _not_ready(
            "database_timeout", f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"
        )
    except Exception as exc:  # any failure to reach the database means not ready
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "alembic_version" in message:
            return _not_ready("migrations_pending", "the database has no schema yet: run `icc migrate`")
        return _not_ready("database_unreachable", message[:300])
    heads = script_heads()
    if versions != heads:
        return _not_ready(
            "migrations_pending",
            f"database at {sorted(versions) or 'nothing'}, code at {sorted(heads)}: run `icc migrate`",
        )
    return JSONResponse({"status": "ready", "migration": sorted(heads)})


async def _read_database_gauges(request: Request) -> None:
    """Query the global gauges now; on failure or timeout, drop them rather than report stale ones."""
    OPEN_INCIDENTS.clear()
    SLA_BREACHES.clear()
    try:
        async with (
            asyncio.timeout(SCRAPE_QUERY_TIMEOUT_SECONDS),
            request.app.state.engine.connect() as connection,
        ):
            open_rows = (await connection.execute(_OPEN_SQL)).all()
            ack, mitigation, update = (await connection.execute(_BREACHES_SQL, {"now": clock.now()})).one()
    except Exception as exc:  # a scrape must still return the process's own numbers
        log.warning("metrics: could not read the database gauges: %s", exc)
        DATABASE_UP.set(0)
        return
    counts = dict.fromkeys(get_policy().severities, 0) | {severity: n for severity, n in open_rows}
    for severity, count in counts.items():
        OPEN_INCIDENTS.labels(severity).set(count)
    for timer, count in (("ack", ack), ("mitigation", mitigation), ("next_update", update)):
        SLA_BREACHES.labels(timer).set(count)
    DATABASE_UP.set(1)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """This process's counters plus the global database gauges: OpenMetrics text when the
    scraper's Accept asks for `application/openmetrics-text`, else Prometheus's classic text."""
    SSE_CLIENTS.set(request.app.state.broker.clients)
    await _read_database_gauges(request)
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(REGISTRY), media_type=content_type, headers={"Vary": "Accept"})
