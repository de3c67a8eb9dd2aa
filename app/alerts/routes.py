"""Alert pages: the history with its triage queue, one alert, the dead letters, the sources.
Thin: parse the form, call the service, render the page or its block, 303 after a change."""

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from app import clock
from app.alerts import dead_letters as letters
from app.alerts import queries, sources, triage
from app.alerts.api import ConfigDep
from app.alerts.schemas import AlertId
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.errors import InvalidInput
from app.web import render, see_other

router = APIRouter(include_in_schema=False)

Ref = Annotated[str, Form(max_length=32)]
Back = Annotated[str, Form(max_length=500)]


def _back(back: str, alert_id: int) -> str:
    """Where to go after a change to an alert: `back` if it is one of our own alert and incident
    pages, else the alert's page."""
    if back.startswith(("/alerts", "/incidents/")) and "//" not in back and "\\" not in back:
        return back
    return f"/alerts/{alert_id}"


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"since: {text[:40]!r} is not a date or time (use 2026-11-23 or 2026-11-23T14:00Z)."
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=clock.now().tzinfo)


@router.get("/alerts")
async def alert_history(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[str | None, Query(max_length=16)] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    service_filter: Annotated[str | None, Query(alias="service", max_length=64)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    view: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    unrouted = view == "unrouted"
    alerts, _ = await queries.list_alerts(
        session,
        status=status or None,
        source=source or None,
        service=service_filter or None,
        since=_since(since),
        unrouted=unrouted,
        limit=200,
    )
    context = {
        "alerts": alerts,
        "unrouted_count": await queries.count_unrouted(session),
        "sources": await queries.list_sources(session),
        "statuses": queries.STATUS_LABELS,
        "filters": {
            "status": status or "",
            "source": source or "",
            "service": service_filter or "",
            "since": since or "",
            "view": "unrouted" if unrouted else "",
        },
        "here": str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""),
    }
    return render(request, "alerts/history.html", context, blocks=["results"])


@router.get("/alerts/dead-letters")
async def dead_letters(request: Request, session: SessionDep, user: CurrentUser) -> Response:
    found = await letters.list_dead_letters(session, actor=user)
    return render(request, "alerts/dead_letters.html", {"letters": found})


@router.get("/alerts/sources")
async def sources_page(
    request: Request, session: SessionDep, user: CurrentUser, config: ConfigDep
) -> Response:
    """The configured alert sources (admins): endpoints, masked credentials, rate limits, routing
    and what arrived. Read-only: sources live in icc.toml."""
    overview = await sources.describe_sources(session, config=config, actor=user)
    base = str(request.base_url).rstrip("/")
    return render(request, "alerts/sources.html", {"sources": overview, "base_url": base})


@router.post("/alerts/dead-letters/{letter_id}/replay")
async def replay(
    request: Request, session: SessionDep, user: CurrentUser, config: ConfigDep, letter_id: AlertId
) -> Response:
    await letters.replay_dead_letter(session, config=config, actor=user, letter_id=letter_id)
    return see_other("/alerts/dead-letters")


@router.get("/alerts/{alert_id}")
async def alert_page(request: Request, session: SessionDep, user: CurrentUser, alert_id: AlertId) -> Response:
    alert = await queries.get_alert(session, alert_id=alert_id)
    context = {
        "a": alert,
        "statuses": queries.STATUS_LABELS,
        "raw": json.dumps(alert.raw, indent=2, ensure_ascii=False),
    }
    return render(request, "alerts/detail.html", context)


@router.post("/alerts/{alert_id}/acknowledge")
async def acknowledge(session: SessionDep, user: CurrentUser, alert_id: AlertId, back: Back = "") -> Response:
    await triage.acknowledge_alert(session, actor=user, alert_id=alert_id)
    return see_other(_back(back, alert_id))


@router.post("/alerts/{alert_id}/link")
async def link(
    session: SessionDep, user: CurrentUser, alert_id: AlertId, incident: Ref, back: Back = ""
) -> Response:
    await triage.link_alert(session, actor=user, alert_id=alert_id, ref=incident)
    return see_other(_back(back, alert_id))


@router.post("/alerts/{alert_id}/unlink")
async def unlink(session: SessionDep, user: CurrentUser, alert_id: AlertId, back: Back = "") -> Response:
    await triage.unlink_alert(session, actor=user, alert_id=alert_id)
    return see_other(_back(back, alert_id))
