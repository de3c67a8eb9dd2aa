"""Status JSON (the shape of Statuspage's public summary.json) and the comms API."""

import json
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel

from app.auth.deps import CurrentUser, OptionalPrincipal
from app.db import SessionDep
from app.incidents.schemas import Strict
from app.status import service
from app.status.cache import SUMMARY, Cached, cached_response, rendered
from app.status.routes import check_access, current_snapshot

router = APIRouter(prefix="/api/v1", tags=["status"])


class UpdateIn(Strict):
    body: str
    public: bool = True
    status: str | None = None


class ImpactIn(Strict):
    impact: str


class UpdateOut(BaseModel):
    id: int
    body: str
    public: bool
    status: str
    author: str
    posted_at: datetime


def _summary(snapshot: service.StatusSnapshot) -> dict:
    base_url = service.public_base()
    page_id = service.public_id("page")

    def component(c: service.ComponentStatus) -> dict:
        return {
            "id": service.public_id("component:" + c.component.key),
            "name": c.component.name,
            "status": "operational" if c.status == "none" else c.status,
            "created_at": None,
            "updated_at": snapshot.updated_at.isoformat(),
            "position": c.component.position,
            "description": c.component.description or None,
            "showcase": True,
            "start_date": None,
            "group_id": None,
            "page_id": page_id,
            "group": False,
            "only_show_if_degraded": False,
        }

    def incident(i: service.PublicIncident) -> dict:
        return {
            "id": i.id,
            "name": i.title,
            "status": i.status,
            "created_at": i.started_at.isoformat(),
            "updated_at": i.updated_at.isoformat(),
            "monitoring_at": i.monitoring_at.isoformat() if i.monitoring_at else None,
            "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
            "impact": i.impact,
            "shortlink": f"{base_url}status#incident-{i.id}",
            "started_at": i.started_at.isoformat(),
            "page_id": page_id,
            "incident_updates": [
                {
                    "id": u.id,
                    "status": u.status,
                    "body": u.body,
                    "incident_id": i.id,
                    "created_at": u.posted_at.isoformat(),
                    "updated_at": u.posted_at.isoformat(),
                    "display_at": u.posted_at.isoformat(),
                    "affected_components": [
                        {
                            "code": service.public_id("component:" + c.key),
                            "name": c.name,
                            "old_status": "operational",
                            "new_status": impact,
                        }
                        for c, impact in i.components
                    ],
                    "deliver_notifications": True,
                }
                for u in i.updates
            ],
            "components": [component(service.ComponentStatus(c, impact)) for c, impact in i.components],
        }

    return {
        "page": {
            "id": page_id,
            "name": snapshot.name,
            "url": f"{base_url}status",
            "time_zone": "Etc/UTC",
            "updated_at": snapshot.updated_at.isoformat(),
        },
        "status": {"indicator": snapshot.indicator, "description": snapshot.sentence},
        "components": [component(c) for c in snapshot.components],
        "incidents": [incident(i) for i in snapshot.active],
        "scheduled_maintenances": [],
    }


@router.head("/status", include_in_schema=False)  # uptime checkers often send HEAD
@router.get("/status")
async def status_summary(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """The public status in the shape of Statuspage's summary.json (no login unless configured)."""
    private = check_access(principal)

    async def build() -> Cached:
        snapshot = await current_snapshot(request, session)
        body = json.dumps(_summary(snapshot), separators=(",", ":")).encode()
        return rendered(body, "application/json", snapshot.updated_at)

    item = await request.app.state.status_cache.get_or_build(SUMMARY, build)
    return cached_response(request, item, private=private)


@router.post("/incidents/{ref}/updates", status_code=201, response_model=UpdateOut)
async def post_update(ref: str, body: UpdateIn, session: SessionDep, user: CurrentUser) -> UpdateOut:
    """Post a stakeholder update (Comms Lead or IC); resets the update timer."""
    update = await service.post_update(
        session, actor=user, ref=ref, body=body.body, public=body.public, status=body.status
    )
    return UpdateOut(
        id=update.id,
        body=update.body,
        public=update.public,
        status=update.status,
        author=user.name,
        posted_at=update.posted_at,
    )


@router.get("/incidents/{ref}/updates", response_model=list[UpdateOut])
async def list_updates(ref: str, session: SessionDep, user: CurrentUser) -> list[UpdateOut]:
    """Every update of an incident, public and internal, newest first."""
    return [
        UpdateOut(
            id=u.id,
            body=u.body,
            public=u.public,
            status=u.status,
            author=u.author.name,
            posted_at=u.posted_at,
        )
        for u in await service.list_updates(session, ref=ref)
    ]


@router.put("/incidents/{ref}/impacts/{component}", status_code=204)
async def set_impact(
    ref: str, component: str, body: ImpactIn, session: SessionDep, user: CurrentUser
) -> Response:
    """Set how the incident affects a status-page component (`none` clears it)."""
    await service.set_impact(session, actor=user, ref=ref, component=component, impact=body.impact)
    return Response(status_code=204)
