"""The status page speaks its consumers' protocols exactly: Statuspage's public API at the paths
tools build from a page's address, HTTP conditional requests as RFC 9110 has them (what pollers
and proxies send), and an Atom feed that a real feed reader (feedparser) reads."""

from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import httpx
import pytest
from sqlalchemy import event

from app.config import get_settings
from app.incidents import service as incidents
from app.status import public_view
from app.status import updates as status
from tests import support
from tests.conftest import wait_connected

live_server = support.live_server  # module-scoped: a real uvicorn for the feed reader's own requests

V2 = (
    "/api/v2/summary.json",
    "/api/v2/status.json",
    "/api/v2/components.json",
    "/api/v2/incidents/unresolved.json",
)
COPIES = ("/status", "/status/feed.atom", "/api/v1/status", *V2)
STATUSPAGE_COMPONENT_KEYS = {
    "id",
    "name",
    "status",
    "created_at",
    "updated_at",
    "position",
    "description",
    "showcase",
    "start_date",
    "group_id",
    "page_id",
    "group",
    "only_show_if_degraded",
}
GROUPS = {
    "Web": ["Website", "Sign-in"],
    "Shop": ["Checkout", "Orders", "Search"],
    "Integrations": ["Webhooks", "Public API"],
}


async def declare(session, actor, **kw):
    fields = {"title": "Payments DB primary failover", "severity": "SEV1", "services": ["checkout"]} | kw
    return await incidents.declare_incident(session, actor=actor, **fields)


@pytest.fixture
async def on_the_page(session, responder):
    incident = await declare(session, responder)
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    await status.post_update(
        session, actor=responder, ref=incident.ref, body="Card payments fail", public=True
    )
    return incident


# ---------------------------------------------------------------- Statuspage's documents


async def test_the_v2_paths_serve_statuspages_documents(client, on_the_page):
    summary = (await client.get("/api/v2/summary.json")).json()
    assert list(summary) == ["page", "components", "incidents", "scheduled_maintenances", "status"]
    assert summary["status"] == {"indicator": "critical", "description": "Major Service Outage"}
    assert set(summary["page"]) == {"id", "name", "url", "time_zone", "updated_at"}
    assert (await client.get("/api/v2/status.json")).json() == {
        "page": summary["page"],
        "status": summary["status"],
    }
    assert (await client.get("/api/v2/components.json")).json() == {
        "page": summary["page"],
        "components": summary["components"],
    }
    unresolved = (await client.get("/api/v2/incidents/unresolved.json")).json()
    assert unresolved == {"page": summary["page"], "incidents": summary["incidents"]}
    [incident] = unresolved["incidents"]
    assert (incident["name"], incident["status"], incident["impact"]) == (
        "Checkout disruption",
        "investigating",
        "critical",
    )
    assert [u["body"] for u in incident["incident_updates"]] == ["Card payments fail"]
    assert "next_update_by" not in incident, "Statuspage's shape, nothing of ours"


async def test_component_groups_are_group_components_listing_their_members(client, on_the_page):
    components = (await client.get("/api/v2/components.json")).json()["components"]
    by_id = {c["id"]: c for c in components}
    groups = [c for c in components if c["group"]]
    assert {g["name"]: [by_id[i]["name"] for i in g["components"]] for g in groups} == GROUPS
    for component in components:
        assert set(component) - {"components"} == STATUSPAGE_COMPONENT_KEYS
        assert component["created_at"] is not None
        assert component["created_at"].endswith("+00:00") and component["updated_at"].endswith("+00:00")
    for group in groups:
        assert group["group_id"] is None
        assert all(by_id[member]["group_id"] == group["id"] for member in group["components"])
    shop = next(g for g in groups if g["name"] == "Shop")
    assert shop["status"] == "major_outage"  # its worst member: Checkout
    members = {c["name"]: c["status"] for c in components if not c["group"]}
    assert members["Checkout"] == "major_outage" and members["Search"] == "operational"


@pytest.mark.parametrize(
    ("severity", "indicator", "description"),
    [
        (None, "none", "All Systems Operational"),
        ("SEV3", "minor", "Minor Service Outage"),
        ("SEV2", "major", "Partial System Outage"),
        ("SEV1", "critical", "Major Service Outage"),
    ],
)
async def test_the_overall_status_uses_statuspages_phrases_while_the_page_keeps_its_sentence(
    client, session, responder, severity, indicator, description
):
    if severity:
        await declare(session, responder, severity=severity)
    assert (await client.get("/api/v2/status.json")).json()["status"] == {
        "indicator": indicator,
        "description": description,
    }
    ours = (await client.get("/api/v1/status")).json()["status"]
    sentence = (await public_view.status_snapshot(session)).sentence
    assert ours == {"indicator": indicator, "description": sentence}
    assert f"<h1>{sentence}</h1>" in (await client.get("/status")).text


async def test_every_v2_path_answers_head_with_or_without_a_copy(app, client, on_the_page):
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        for path in V2:
            first, again = await client.head(path), await client.head(path)
            assert (first.status_code, again.status_code) == (200, 200), path
            assert first.content == again.content == b"" and first.headers["etag"] == again.headers["etag"]


async def test_a_private_status_page_keeps_the_v2_paths_private(client, on_the_page, icc_toml):
    icc_toml("[status]\nrequire_login = true\n")
    for path in V2:
        assert (await client.get(path)).status_code == 401, path


# ---------------------------------------------------------------- conditional requests


def conditional_cases(etag: str, last_modified: str) -> list[tuple[dict[str, str], int]]:
    """Header sets a poller, a browser or a proxy sends, and the status RFC 9110 asks for."""
    modified = parsedate_to_datetime(last_modified)
    later = format_datetime(modified + timedelta(hours=1), usegmt=True)
    earlier = format_datetime(modified - timedelta(seconds=1), usegmt=True)
    return [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": f"W/{etag}"}, 304),  # nginx's gzip made it weak
        ({"If-None-Match": f'"0123", W/{etag}, "4567"'}, 304),
        ({"If-None-Match": '"0123", W/"4567"'}, 200),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": "not an entity tag"}, 200),
        ({"If-Modified-Since": last_modified}, 304),
        ({"If-Modified-Since": later}, 304),
        ({"If-Modified-Since": earlier}, 200),
        ({"If-Modified-Since": "yesterday"}, 200),
        ({"If-None-Match": '"0123"', "If-Modified-Since": later}, 200),  # the tag decides
        ({"If-None-Match": f"W/{etag}", "If-Modified-Since": earlier}, 304),
    ]


async def assert_conditional_requests(client: httpx.AsyncClient, path: str) -> None:
    first = await client.get(path)
    assert first.status_code == 200, path
    etag, last_modified = first.headers["etag"], first.headers["last-modified"]
    for headers, expected in conditional_cases(etag, last_modified):
        for method in (client.get, client.head):
            response = await method(path, headers=headers)
            assert response.status_code == expected, (path, headers, method.__name__)
            if expected == 304:
                assert response.content == b""
                assert response.headers["etag"] == etag
                assert response.headers["last-modified"] == last_modified
                assert response.headers["cache-control"] == "public, max-age=10"


async def test_every_copy_honours_if_none_match_weakly_and_if_modified_since(client, on_the_page):
    for path in COPIES:
        await assert_conditional_requests(client, path)


async def test_the_copies_sent_before_routing_honour_the_same_conditions_without_a_query(
    app, client, on_the_page
):
    queries = []

    def count(*_args):
        queries.append(1)

    async with app.router.lifespan_context(app):
        await wait_connected(app)
        for path in COPIES:
            await client.get(path)  # rendered once, then served from the copy
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for path in COPIES:
                await assert_conditional_requests(client, path)
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
    assert queries == []


async def test_last_modified_moves_when_an_incident_is_taken_off_the_page(
    client, session, responder, frozen_clock
):
    incident = await declare(session, responder)
    before = (await client.get("/status")).headers["last-modified"]
    frozen_clock.advance(minutes=5)
    await status.unpublish_incident(session, actor=responder, ref=incident.ref)
    # A poller that only remembers the date must not be told "not modified": the incident went.
    after = await client.get("/status", headers={"If-Modified-Since": before})
    assert after.status_code == 200 and "All systems operational" in after.text
    assert parsedate_to_datetime(after.headers["last-modified"]) == frozen_clock.now


async def test_last_modified_moves_when_a_status_move_changes_what_the_page_says(
    client, session, responder, frozen_clock
):
    incident = await declare(session, responder)
    before = (await client.get("/status")).headers["last-modified"]
    frozen_clock.advance(minutes=5)
    await incidents.change_status(session, actor=responder, ref=incident.ref, status="identified")
    after = await client.get("/status", headers={"If-Modified-Since": before})
    assert after.status_code == 200 and "<strong>Identified</strong>" in after.text


# ---------------------------------------------------------------- the feed, read by a feed reader


async def test_a_feed_reader_reads_the_public_updates_linking_to_the_public_address(
    client, session, responder, on_the_page, monkeypatch
):
    unpublished = await declare(session, responder, title="Alert storm", services=["search"])
    await status.unpublish_incident(session, actor=responder, ref=unpublished.ref)
    await incidents.assign_role(
        session, actor=responder, ref=unpublished.ref, role="incident_commander", email=responder.email
    )
    await status.post_update(
        session, actor=responder, ref=unpublished.ref, body="Search is slow", public=True
    )
    monkeypatch.setenv("ICC_PUBLIC_URL", "https://status.example.com/")
    get_settings.cache_clear()
    try:
        response = await client.get("/status/feed.atom")
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    feed = feedparser.parse(response.content, response_headers=dict(response.headers))
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "Service status"
    assert feed.feed.link == "https://status.example.com/status"
    [entry] = feed.entries
    assert entry.title == "Checkout disruption: Investigating"
    assert entry.summary == "Card payments fail"
    assert entry.link.startswith("https://status.example.com/status#incident-")
    assert "Search is slow" not in response.text


def test_a_feed_reader_polling_with_its_validators_is_told_nothing_changed(on_the_page, live_server):
    """feedparser's own conditional GET (its etag and modified arguments) against a real server."""
    url = f"{live_server}/status/feed.atom"
    first = feedparser.parse(url)
    assert first.status == 200 and not first.bozo, first.get("bozo_exception")
    [entry] = first.entries
    assert entry.summary == "Card payments fail"
    assert entry.link.startswith(f"{live_server}/status#incident-")
    assert feedparser.parse(url, etag=first.etag).status == 304
    assert feedparser.parse(url, modified=first.modified).status == 304
    assert feedparser.parse(url, etag=f"W/{first.etag}").status == 304
