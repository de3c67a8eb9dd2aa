"""The public status page and its Atom feed; the comms forms on the incident page."""

from typing import Annotated, Literal
from xml.etree import ElementTree as ET

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from app import schemas
from app.auth.deps import CurrentUser, OptionalPrincipal
from app.db import SessionDep
from app.errors import NotAuthenticated
from app.incidents.routes import after_incident_change
from app.status import public_view, updates
from app.status.cache import FEED, PAGE_FRAGMENT, SNAPSHOT, Cached, cached_response, page_key, rendered
from app.status.config import get_status_config
from app.web import templates

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form(max_length=100_000)]


def check_access(principal: object) -> bool:
    """True when the page is private (viewer login required)."""
    private = get_status_config().require_login
    if private and principal is None:
        raise NotAuthenticated("Sign in to see the status page.")
    return private


async def current_snapshot(request: Request, session: AsyncSession) -> public_view.StatusSnapshot:
    """The snapshot the page, the feed and the JSON are rendered from: computed once per change
    per process for all three (with a long history it is the expensive part)."""
    return await request.app.state.status_cache.get_or_build(
        SNAPSHOT, lambda: public_view.status_snapshot(session)
    )


@router.api_route("/status", methods=["GET", "HEAD"])  # uptime checkers often send HEAD
async def status_page(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """What stakeholders see. Served from a rendered copy until the database says it changed."""
    private = check_access(principal)
    key = page_key(request)

    async def build() -> Cached:
        snapshot = await current_snapshot(request, session)
        template = templates.get_template("status/page.html")
        context = {"s": snapshot, "labels": public_view.IMPACT_WORDS}
        if key == PAGE_FRAGMENT:
            body = "".join(template.blocks["live"](template.new_context(context)))
        else:
            body = template.render(context)
        return rendered(body.encode(), "text/html; charset=utf-8", snapshot.modified_at)

    item = await request.app.state.status_cache.get_or_build(key, build)
    return cached_response(request, item, private=private)


ATOM = "http://www.w3.org/2005/Atom"


def _atom(snapshot: public_view.StatusSnapshot) -> bytes:
    base_url = public_view.public_base()
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    ET.SubElement(feed, f"{{{ATOM}}}title").text = snapshot.name
    # An Atom id is an absolute IRI: without a public address, a name of our own.
    ET.SubElement(feed, f"{{{ATOM}}}id").text = f"{base_url}status" if base_url != "/" else "urn:icc:status"
    ET.SubElement(feed, f"{{{ATOM}}}updated").text = snapshot.updated_at.isoformat()
    ET.SubElement(feed, f"{{{ATOM}}}link", href=f"{base_url}status")
    ET.SubElement(feed, f"{{{ATOM}}}link", rel="self", href=f"{base_url}status/feed.atom")
    for incident in snapshot.active + snapshot.history:
        for update in incident.updates:
            entry = ET.SubElement(feed, f"{{{ATOM}}}entry")
            ET.SubElement(entry, f"{{{ATOM}}}title").text = f"{incident.title}: {update.status.title()}"
            ET.SubElement(entry, f"{{{ATOM}}}id").text = f"urn:icc:status:{incident.id}:{update.id}"
            ET.SubElement(entry, f"{{{ATOM}}}updated").text = update.posted_at.isoformat()
            ET.SubElement(entry, f"{{{ATOM}}}link", href=f"{base_url}status#incident-{incident.id}")
            ET.SubElement(entry, f"{{{ATOM}}}content", type="text").text = update.body
            author = ET.SubElement(entry, f"{{{ATOM}}}author")
            ET.SubElement(author, f"{{{ATOM}}}name").text = snapshot.name
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


@router.api_route("/status/feed.atom", methods=["GET", "HEAD"])
async def status_feed(request: Request, session: SessionDep, principal: OptionalPrincipal) -> Response:
    """Public updates as an Atom feed."""
    private = check_access(principal)

    async def build() -> Cached:
        snapshot = await current_snapshot(request, session)
        return rendered(_atom(snapshot), "application/atom+xml", snapshot.modified_at)

    item = await request.app.state.status_cache.get_or_build(FEED, build)
    return cached_response(request, item, private=private)


@router.post("/incidents/{ref}/updates")
async def post_update(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    body: Text = "",
    audience: Annotated[Literal["public", "internal"], Form()] = "public",
    status: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    await updates.post_update(
        session, actor=user, ref=ref, body=body, public=audience == "public", status=status or None
    )
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/publish")
async def publish(request: Request, session: SessionDep, user: CurrentUser, ref: str) -> Response:
    await updates.publish_incident(session, actor=user, ref=ref)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/unpublish")
async def unpublish(request: Request, session: SessionDep, user: CurrentUser, ref: str) -> Response:
    await updates.unpublish_incident(session, actor=user, ref=ref)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/impacts")
async def set_impact(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    ref: schemas.Text,
    component: Annotated[str, Form(max_length=64)] = "",
    impact: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    await updates.set_impact(session, actor=user, ref=ref, component=component, impact=impact)
    return await after_incident_change(request, session, ref)


@router.post("/incidents/{ref}/public-title")
async def set_public_title(
    request: Request, session: SessionDep, user: CurrentUser, ref: schemas.Text, public_title: Text = ""
) -> Response:
    await updates.set_public_title(session, actor=user, ref=ref, public_title=public_title)
    return await after_incident_change(request, session, ref)
