"""Status JSON (ours, and Statuspage's public API at its own paths) and the comms API."""

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.deps import CurrentUser, OptionalPrincipal
from app.db import SessionDep
from app.incidents.schemas import Flag, PersonOut, Status
from app.openapi import CHANGE, CHANGE_WITH_BODY, READ_ONE, errors
from app.schemas import RequiredText, Strict, Text, one_of
from app.status import public_view, updates
from app.status.cache import SUMMARY, V2_PATHS, Cached, cached_response, rendered
from app.status.config import get_status_config
from app.status.models import IMPACTS
from app.status.routes import check_access, current_snapshot
from app.status.schemas import (
    StatuspageComponents,
    StatuspageStatusDocument,
    StatuspageSummary,
    StatuspageUnresolved,
    StatusSummary,
)

router = APIRouter(prefix="/api/v1", tags=["status"])
statuspage = APIRouter(prefix="/api/v2", tags=["statuspage"])


class UpdateIn(Strict):
    body: RequiredText = Field(max_length=updates.MAX_UPDATE)
    public: Flag = True
    status: Status | None = None


class ImpactIn(Strict):
    impact: Annotated[Text, one_of(IMPACTS)]


Component = Annotated[Text, one_of(lambda: [c.key for c in get_status_config().components])]
PUBLIC_COPY = {
    "description": "The document, or 304 when the client's copy is current",
    "headers": {
        "ETag": {"description": "The copy's entity tag", "schema": {"type": "string"}},
        "Last-Modified": {"description": "The copy's last change", "schema": {"type": "string"}},
    },
}


def public_copy(model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """The answers of a public status document: 200 (that shape) or 304, 401 when the page
    requires a sign-in."""
    return {200: {**PUBLIC_COPY, "model": model}, 304: PUBLIC_COPY, **errors(401)}


class PublicationOut(BaseModel):
    published_at: datetime | None
    published_by: PersonOut | None
    on_status_page: bool
    next_update_by: datetime | None

    @classmethod
    def of(cls, publication: updates.Publication) -> "PublicationOut":
        return cls(
            published_at=publication.published_at,
            published_by=PersonOut.of(publication.published_by),
            on_status_page=publication.on_status_page,
            next_update_by=publication.next_update_by,
        )


class UpdateOut(BaseModel):
    id: int
    body: str
    public: bool
    status: str
    author: str
    posted_at: datetime


# Statuspage's overall phrases, by indicator: what its consumers match on.
STATUSPAGE_DESCRIPTIONS = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
}


class Statuspage:
    """The documents of Statuspage's public API (api/v2), from one snapshot."""

    def __init__(self, snapshot: public_view.StatusSnapshot) -> None:
        self.snapshot = snapshot
        self.page_id = public_view.public_id("page")
        self.base_url = public_view.public_base()
        self.group_ids = {name: public_view.public_id("group:" + name) for name in snapshot.groups if name}

    def page(self) -> dict:
        s = self.snapshot
        return {
            "id": self.page_id,
            "name": s.name,
            "url": f"{self.base_url}status",
            "time_zone": "Etc/UTC",
            "updated_at": s.updated_at.isoformat(),
        }

    def status(self) -> dict:
        indicator = self.snapshot.indicator
        return {"indicator": indicator, "description": STATUSPAGE_DESCRIPTIONS[indicator]}

    def _component(self, c: public_view.ComponentStatus, position: int) -> dict:
        return {
            "id": public_view.public_id("component:" + c.component.key),
            "name": c.component.name,
            "status": "operational" if c.status == "none" else c.status,
            "created_at": self.snapshot.components_since.isoformat(),
            "updated_at": self.snapshot.updated_at.isoformat(),
            "position": position,
            "description": c.component.description or None,
            "showcase": True,
            "start_date": None,
            "group_id": self.group_ids.get(c.component.group),
            "page_id": self.page_id,
            "group": False,
            "only_show_if_degraded": False,
        }

    def _group(self, name: str, members: list[public_view.ComponentStatus], position: int) -> list[dict]:
        """A group: a component of its own (`group: true`, its worst member's status) listing its
        members, then the members, each of which names it in `group_id`."""
        worst = public_view.worst_of(c.status for c in members)
        listed = [self._component(c, n) for n, c in enumerate(members, start=1)]
        group = self._component(public_view.ComponentStatus(members[0].component, worst), position)
        group |= {
            "id": self.group_ids[name],
            "name": name,
            "description": None,
            "showcase": False,
            "group_id": None,
            "group": True,
            "components": [c["id"] for c in listed],
        }
        return [group, *listed]

    def components(self) -> list[dict]:
        """Every component, a group where the configuration names one."""
        found: list[dict] = []
        for position, (name, members) in enumerate(self.snapshot.groups.items(), start=1):
            if name:
                found += self._group(name, members, position)
            else:
                found += [self._component(c, position) for c in members]
        return found

    def _update(self, i: public_view.PublicIncident, u: public_view.PublicUpdate) -> dict:
        return {
            "id": u.id,
            "status": u.status,
            "body": u.body,
            "incident_id": i.id,
            "created_at": u.posted_at.isoformat(),
            "updated_at": u.posted_at.isoformat(),
            "display_at": u.posted_at.isoformat(),
            "affected_components": [
                {
                    "code": public_view.public_id("component:" + c.key),
                    "name": c.name,
                    "old_status": "operational",
                    "new_status": impact,
                }
                for c, impact in i.components
            ],
            "deliver_notifications": True,
        }

    def incident(self, i: public_view.PublicIncident) -> dict:
        positions = {c.key: n for n, c in enumerate((c for c, _ in i.components), start=1)}
        return {
            "id": i.id,
            "name": i.title,
            "status": i.status,
            "created_at": i.started_at.isoformat(),
            "updated_at": i.updated_at.isoformat(),
            "monitoring_at": i.monitoring_at.isoformat() if i.monitoring_at else None,
            "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
            "impact": i.impact,
            "shortlink": f"{self.base_url}status#incident-{i.id}",
            "started_at": i.started_at.isoformat(),
            "page_id": self.page_id,
            "incident_updates": [self._update(i, u) for u in i.updates],
            "components": [
                self._component(public_view.ComponentStatus(c, impact), positions[c.key])
                for c, impact in i.components
            ],
        }

    def summary(self) -> dict:
        return {
            "page": self.page(),
            "components": self.components(),
            "incidents": [self.incident(i) for i in self.snapshot.active],
            "scheduled_maintenances": [],
            "status": self.status(),
        }

    def status_json(self) -> dict:
        return {"page": self.page(), "status": self.status()}

    def components_json(self) -> dict:
        return {"page": self.page(), "components": self.components()}

    def unresolved_json(self) -> dict:
        return {"page": self.page(), "incidents": [self.incident(i) for i in self.snapshot.active]}


def _v1_summary(snapshot: public_view.StatusSnapshot) -> dict:
    """Our own status JSON: Statuspage's summary, with the page's sentence as the description
    and each incident's public promise (`next_update_by`)."""
    document = Statuspage(snapshot).summary()
    document["status"]["description"] = snapshot.sentence
    for found, incident in zip(document["incidents"], snapshot.active, strict=True):
        found["next_update_by"] = incident.next_update_by.isoformat() if incident.next_update_by else None
    return document


async def _json_copy(
    request: Request,
    session: AsyncSession,
    principal: object,
    key: str,
    document: Callable[[public_view.StatusSnapshot], dict],
) -> Response:
    """A status JSON document, served from its rendered copy."""
    private = check_access(principal)

    async def build() -> Cached:
        snapshot = await current_snapshot(request, session)
        body = json.dumps(document(snapshot), separators=(",", ":")).encode()
        return rendered(body, "application/json", snapshot.modified_at)

    item = await request.app.state.status_cache.get_or_build(key, build)
    return cached_response(request, item, private=private)


async def _statuspage_copy(
    request: Request,
    session: AsyncSession,
    principal: object,
    path: str,
    document: Callable[[Statuspage], dict],
) -> Response:
    """One of Statuspage's documents, at its own path, served from its rendered copy."""
    return await _json_copy(request, session, principal, V2_PATHS[path], lambda s: document(Statuspage(s)))


@router.head("/status", include_in_schema=False)  # uptime checkers often send HEAD
@router.get("/status", response_class=Response, responses=public_copy(StatusSummary))
async def status_summary(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """The public status in the shape of Statuspage's summary.json (no login unless configured),
    with the page's own sentence as `status.description`."""
    return await _json_copy(request, session, principal, SUMMARY, _v1_summary)


@statuspage.head("/summary.json", include_in_schema=False)
@statuspage.get("/summary.json", response_class=Response, responses=public_copy(StatuspageSummary))
async def statuspage_summary(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """Statuspage's summary.json: page, components (groups included), unresolved incidents, status."""
    return await _statuspage_copy(request, session, principal, "/api/v2/summary.json", Statuspage.summary)


@statuspage.head("/status.json", include_in_schema=False)
@statuspage.get("/status.json", response_class=Response, responses=public_copy(StatuspageStatusDocument))
async def statuspage_status(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """Statuspage's status.json: the page and its overall indicator."""
    return await _statuspage_copy(request, session, principal, "/api/v2/status.json", Statuspage.status_json)


@statuspage.head("/components.json", include_in_schema=False)
@statuspage.get("/components.json", response_class=Response, responses=public_copy(StatuspageComponents))
async def statuspage_components(
    request: Request, session: SessionDep, principal: OptionalPrincipal
) -> Response:
    """Statuspage's components.json: every component and group."""
    path = "/api/v2/components.json"
    return await _statuspage_copy(request, session, principal, path, Statuspage.components_json)


@statuspage.head("/incidents/unresolved.json", include_in_schema=False)
@statuspage.get(
    "/incidents/unresolved.json", response_class=Response, responses=public_copy(StatuspageUnresolved)
)
async def statuspage_unresolved(
    request: Request, session: SessionDep, principal: OptionalPrincipal
) -> Response:
    """Statuspage's incidents/unresolved.json: the incidents not yet resolved, newest updates first."""
    path = "/api/v2/incidents/unresolved.json"
    return await _statuspage_copy(request, session, principal, path, Statuspage.unresolved_json)


@router.post(
    "/incidents/{ref}/updates", status_code=201, response_model=UpdateOut, responses=CHANGE_WITH_BODY
)
async def post_update(ref: Text, body: UpdateIn, session: SessionDep, user: CurrentUser) -> UpdateOut:
    """Post a stakeholder update (Comms Lead or IC); resets the update timer."""
    update = await updates.post_update(
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


@router.get("/incidents/{ref}/updates", response_model=list[UpdateOut], responses=READ_ONE)
async def list_updates(ref: Text, session: SessionDep, user: CurrentUser) -> list[UpdateOut]:
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
        for u in await updates.list_updates(session, ref=ref)
    ]


@router.put(
    "/incidents/{ref}/impacts/{component}",
    status_code=204,
    response_class=Response,
    responses=errors(400, 401, 403, 404, 413, 422),
)
async def set_impact(
    ref: Text, component: Component, body: ImpactIn, session: SessionDep, user: CurrentUser
) -> Response:
    """Set how the incident affects a status-page component (`none` clears it)."""
    await updates.set_impact(session, actor=user, ref=ref, component=component, impact=body.impact)
    return Response(status_code=204)


@router.get("/incidents/{ref}/publication", response_model=PublicationOut, responses=READ_ONE)
async def get_publication(ref: Text, session: SessionDep, user: CurrentUser) -> PublicationOut:
    """Whether the incident is on the status page, since when, by whom, and its public promise."""
    return PublicationOut.of(await updates.publication_of(session, ref=ref))


@router.post("/incidents/{ref}/publish", response_model=PublicationOut, responses=CHANGE)
async def publish(ref: Text, session: SessionDep, user: CurrentUser) -> PublicationOut:
    """Put the incident on the status page (any responder; 409 if it already is)."""
    await updates.publish_incident(session, actor=user, ref=ref)
    return PublicationOut.of(await updates.publication_of(session, ref=ref))


@router.post("/incidents/{ref}/unpublish", response_model=PublicationOut, responses=CHANGE)
async def unpublish(ref: Text, session: SessionDep, user: CurrentUser) -> PublicationOut:
    """Take the incident off the status page, history and feed included (409 if it is not on it)."""
    await updates.unpublish_incident(session, actor=user, ref=ref)
    return PublicationOut.of(await updates.publication_of(session, ref=ref))
