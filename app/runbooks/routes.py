"""Runbook pages: the library and the viewer (a page, or a sheet beside an incident)."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.incidents import service as incidents
from app.runbooks import service
from app.schemas import Text
from app.security import DIAGRAM_RENDERER_HEADERS, RUNBOOK_VIEWER_HEADERS
from app.web import render

router = APIRouter(include_in_schema=False)


def runbooks_dir(request: Request) -> Path:
    return request.app.state.settings.runbooks_dir


@router.get("/runbooks")
async def library(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    q: Text | None = None,
    tag: Text | None = None,
    service_filter: Annotated[Text | None, Query(alias="service")] = None,
) -> Response:
    await service.refresh_if_changed(session, directory=runbooks_dir(request))
    found = await service.find_runbooks(session, q=q, tag=tag or None, service=service_filter or None)
    tags, services = await service.all_tags_and_services(session)
    context = {
        "found": found,
        "tags": tags,
        "services": services,
        "filters": {"q": q or "", "tag": tag or "", "service": service_filter or ""},
    }
    return render(request, "runbooks/library.html", context, blocks=["results"])


@router.get("/runbooks/diagram-renderer")
async def diagram_renderer(request: Request) -> Response:
    """The sandboxed frame in which mermaid draws the diagrams of the page that embeds it, with
    the one policy that allows inline styles (see app/security.py)."""
    return render(request, "runbooks/diagram_renderer.html", headers=DIAGRAM_RENDERER_HEADERS)


@router.get("/runbooks/{key}")
async def view(
    request: Request, session: SessionDep, user: CurrentUser, key: Text, incident: Text | None = None
) -> Response:
    await service.refresh_if_changed(session, directory=runbooks_dir(request))
    runbook = await service.get_runbook(session, key=key)
    detail = await incidents.get_incident_detail(session, ref=incident) if incident else None
    return render(
        request,
        "runbooks/view.html",
        {"runbook": runbook, "d": detail},
        blocks=["sheet"],
        headers=RUNBOOK_VIEWER_HEADERS,
    )
