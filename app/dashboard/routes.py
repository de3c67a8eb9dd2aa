"""The severity dashboard page."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CurrentUser
from app.dashboard import service
from app.db import SessionDep
from app.errors import InvalidInput
from app.incidents import service as incidents
from app.schemas import Text
from app.web import render

router = APIRouter(include_in_schema=False)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = seconds / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


async def _trends(
    request: Request, session: AsyncSession, *, days: int, service_name: str | None
) -> service.Trends:
    """The window's trends. The unfiltered windows are kept per process until the database
    announces a change (app/live/cache.py): a wall of dashboards refreshing every 30 s reads
    the history once per change, not once per refresh."""
    if service_name:
        return await service.trends(session, days=days, service=service_name)
    return await request.app.state.trends_cache.get_or_build(
        str(days), lambda: service.trends(session, days=days)
    )


@router.get("/dashboard")
async def dashboard(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    days: int = 30,
    service_filter: Annotated[Text | None, Query(alias="service", max_length=64)] = None,
) -> Response:
    if days not in service.WINDOWS:
        raise InvalidInput(f"days must be one of {', '.join(map(str, service.WINDOWS))}.", field="days")
    board = await incidents.incident_board(session, service=service_filter or None, resolved_limit=0)
    active = sorted(
        board.active,
        key=lambda r: (r.incident.severity, not (r.most_urgent and r.most_urgent.state == "breached")),
    )
    context = {
        "board": board,
        "active": active,
        "trends": await _trends(request, session, days=days, service_name=service_filter or None),
        "severities": incidents.severities(),
        "status_labels": incidents.STATUS_LABELS,
        "filters": {"days": days, "service": service_filter or ""},
        "windows": service.WINDOWS,
        "duration": _duration,
    }
    return render(request, "dashboard/page.html", context, blocks=["dashboard"])
