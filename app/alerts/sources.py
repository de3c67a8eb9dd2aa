"""The admin's overview of the configured alert sources: each one's endpoint, credential (its
type only), rate limit and routing rules, with what the database knows of its deliveries."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts.config import AlertConfig, Route, Source
from app.alerts.models import Alert, AlertDeadLetter
from app.auth.models import User
from app.errors import NotPermitted
from app.masking import MASK

METHODS = {"grafana": "POST or PUT", "pagerduty": "base URL (POST /v2/enqueue, /v2/change/enqueue)"}


@dataclass(frozen=True)
class SourceOverview:
    """One configured source as the admin page shows it: never a credential's value."""

    name: str
    kind: str
    path: str  # the endpoint (PagerDuty: its clients' base URL), under the product's own URL
    methods: str
    credential: str  # its type, the secret masked
    rate_limit: str
    routes: list[str]  # the rules that may apply to it, in order
    last_delivery_at: datetime | None
    alerts_total: int
    alerts_24h: int
    dead_letters_24h: int


def events_api_base(source_name: str) -> str:
    """The base URL (under the product's own) that a PagerDuty client is given for a source: the
    client adds /v2/enqueue or /v2/change/enqueue. The default source's is the product itself."""
    return "" if source_name == "pagerduty" else f"/api/v1/alerts/pagerduty/{source_name}"


def _credential(source: Source) -> str:
    parts = []
    if source.token:
        parts.append(f"Bearer token {MASK}")
    if source.basic_user:
        parts.append(f"HTTP basic auth, user {source.basic_user}, password {MASK}")
    if source.routing_keys:
        count = len(source.routing_keys)
        parts.append(f"routing_key in the body ({count} integration key{'' if count == 1 else 's'}) {MASK}")
    if source.secret:
        parts.append(f"HMAC-SHA256 signature (X-ICC-Signature), secret {MASK}")
    return " or ".join(parts) or "none"


def _route_summary(route: Route) -> str:
    matched = ", ".join(str(m) for m in route.matchers) or "any alert"
    extra = [f"service {route.service}" if route.service else f"service from label {route.service_label!r}"]
    if route.severity:
        extra.append(route.severity)
    return f"{matched} → {route.action} ({', '.join(extra)})"


async def describe_sources(
    session: AsyncSession, *, config: AlertConfig, actor: User
) -> list[SourceOverview]:
    """Every configured source with what the database knows of it (admins only)."""
    if actor.role != "admin" or not actor.is_active:
        raise NotPermitted("Only an admin can see the alert sources.")
    since = clock.now() - timedelta(hours=24)
    stored = {
        source: (last, total, recent)
        for source, last, total, recent in await session.execute(
            select(
                Alert.source,
                func.max(Alert.last_received_at),
                func.count(),
                func.count().filter(Alert.last_received_at >= since),
            ).group_by(Alert.source)
        )
    }
    refused: dict[str, int] = {
        source: count
        for source, count in await session.execute(
            select(AlertDeadLetter.source, func.count())
            .where(AlertDeadLetter.received_at >= since)
            .group_by(AlertDeadLetter.source)
        )
    }
    found = []
    for name, source in sorted(config.sources.items()):
        last, total, recent = stored.get(name, (None, 0, 0))
        path = f"/api/v1/alerts/{source.kind}" + ("" if name == source.kind else f"/{name}")
        if source.kind == "pagerduty":
            path = events_api_base(name)
        found.append(
            SourceOverview(
                name=name,
                kind=source.kind,
                path=path,
                methods=METHODS.get(source.kind, "POST"),
                credential=_credential(source),
                rate_limit=f"{source.rate_limit}/{'s' if source.rate_window == 1 else 'm'}",
                routes=[_route_summary(r) for r in config.routes if not r.sources or name in r.sources],
                last_delivery_at=last,
                alerts_total=total,
                alerts_24h=recent,
                dead_letters_24h=refused.get(name, 0),
            )
        )
    return found
