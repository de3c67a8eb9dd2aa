"""Stakeholder updates, the public status view (HTML, JSON, feed) and the severity dashboard."""

import asyncio
import json
from datetime import timedelta
from xml.etree import ElementTree as ET

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import event

from app import clock
from app.config import ConfigError, get_settings
from app.errors import InvalidInput, NotPermitted
from app.incidents import service as incidents
from app.status import public_view
from app.status import updates as status
from app.status.cache import rendered
from tests.conftest import sign_in, wait_connected


async def declare(session, actor, **kw):
    fields = {"title": "Payments DB primary failover", "severity": "SEV2", "services": ["checkout"]} | kw
    return await incidents.declare_incident(session, actor=actor, **fields)


async def as_commander(session, actor, incident):
    await incidents.assign_role(
        session, actor=actor, ref=incident.ref, role="incident_commander", email=actor.email
    )


def component_statuses(snapshot):
    return {c.component.key: c.status for c in snapshot.components if c.status != "none"}


# ---------------------------------------------------------------- derivation


async def test_components_take_the_worst_impact_of_the_active_incidents_that_affect_them(session, responder):
    await declare(session, responder, severity="SEV3", services=["checkout"])
    sev1 = await declare(session, responder, severity="SEV1", services=["payments-api", "search"])
    await declare(session, responder, severity="SEV2", services=["not-on-the-status-page"])
    snapshot = await public_view.status_snapshot(session)
    assert component_statuses(snapshot) == {"checkout": "major_outage", "search": "major_outage"}
    await status.set_impact(session, actor=responder, ref=sev1.ref, component="search", impact="none")
    await status.set_impact(
        session, actor=responder, ref=sev1.ref, component="checkout", impact="partial_outage"
    )
    snapshot = await public_view.status_snapshot(session)
    assert component_statuses(snapshot) == {"checkout": "partial_outage"}
    assert snapshot.sentence == "Checkout is partially down"
    assert snapshot.indicator == "major"


async def test_a_resolved_incident_no_longer_affects_the_components_but_stays_in_history(session, responder):
    incident = await declare(session, responder, severity="SEV1")
    await as_commander(session, responder, incident)
    await status.change_status(
        session, actor=responder, ref=incident.ref, status="resolved", public_update="Checkout works again."
    )
    snapshot = await public_view.status_snapshot(session)
    assert snapshot.sentence == "All systems operational"
    assert snapshot.indicator == "none"
    assert [i.title for i in snapshot.history] == ["Checkout disruption"]
    checkout = next(c for c in snapshot.components if c.component.key == "checkout")
    assert checkout.uptime[-1][1] == "major_outage"
    assert len(checkout.uptime) == 90


async def test_the_sentence_names_what_is_affected(session, responder):
    await declare(session, responder, severity="SEV1", services=["checkout"])
    await declare(session, responder, severity="SEV3", services=["webhooks"])
    assert (
        await public_view.status_snapshot(session)
    ).sentence == "Checkout is down and Webhooks is slower than usual"
    await declare(session, responder, severity="SEV3", services=["search"])
    assert (
        await public_view.status_snapshot(session)
    ).sentence == "Checkout is down, and 2 other services are affected"


async def test_an_unknown_component_or_impact_is_refused(session, responder):
    incident = await declare(session, responder)
    with pytest.raises(InvalidInput, match="No status component"):
        await status.set_impact(
            session, actor=responder, ref=incident.ref, component="mainframe", impact="none"
        )
    with pytest.raises(InvalidInput, match="Impact must be one of"):
        await status.set_impact(
            session, actor=responder, ref=incident.ref, component="checkout", impact="meh"
        )


# ---------------------------------------------------------------- updates


async def test_only_the_comms_lead_or_the_ic_posts_updates(session, responder, make_user):
    comms = await make_user("responder", name="Cora Comms")
    incident = await declare(session, responder)
    with pytest.raises(NotPermitted, match="Comms Lead or the Incident Commander"):
        await status.post_update(session, actor=responder, ref=incident.ref, body="x", public=True)
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="comms_lead", email=comms.email
    )
    update = await status.post_update(
        session, actor=comms, ref=incident.ref, body="Looking into it", public=True
    )
    assert (update.status, update.public) == ("investigating", True)


async def test_an_update_resets_the_update_timer_and_is_logged(session, responder, frozen_clock):
    incident = await declare(session, responder, severity="SEV1")
    await as_commander(session, responder, incident)
    frozen_clock.advance(minutes=20)
    assert (await incidents.get_incident_detail(session, ref=incident.ref)).timers[
        "next_update"
    ].state == "breached"
    await status.post_update(session, actor=responder, ref=incident.ref, body="Still on it", public=False)
    detail = await incidents.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["next_update"].state == "running"
    assert detail.timers["next_update"].due_at == frozen_clock.now + timedelta(minutes=15)
    entries, _ = await incidents.list_timeline(session, ref=incident.ref)
    assert (entries[-1].kind, entries[-1].body) == ("update", "Internal update: Still on it")


async def test_an_update_can_move_the_status_under_the_same_rules(session, responder, make_user):
    comms = await make_user("responder")
    incident = await declare(session, responder)
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="comms_lead", email=comms.email
    )
    await status.post_update(
        session, actor=comms, ref=incident.ref, body="Fix deployed", public=True, status="monitoring"
    )
    assert (await incidents.get_incident_detail(session, ref=incident.ref)).incident.status == "monitoring"
    with pytest.raises(NotPermitted, match="Only the Incident Commander"):
        await status.post_update(
            session, actor=comms, ref=incident.ref, body="Done", public=True, status="resolved"
        )
    updates = await status.list_updates(session, ref=incident.ref)
    assert [u.body for u in updates] == ["Fix deployed"]


# ---------------------------------------------------------------- the public view


@pytest.fixture
async def public_and_private(session, responder, make_user):
    """One incident with internal-only details that must never reach the status view."""
    secret_person = await make_user("responder", name="Quentin Secretperson")
    incident = await declare(
        session,
        responder,
        severity="SEV1",
        title="INTERNAL-TITLE db-7 fsync storm",
        summary="INTERNAL-SUMMARY",
    )
    await as_commander(session, responder, incident)
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="scribe", email=secret_person.email
    )
    await incidents.add_timeline_entry(
        session, actor=responder, ref=incident.ref, kind="note", body="INTERNAL-NOTE"
    )
    await status.post_update(session, actor=responder, ref=incident.ref, body="INTERNAL-UPDATE", public=False)
    await status.post_update(
        session, actor=responder, ref=incident.ref, body="Checkout is failing for some", public=True
    )
    return incident


FORBIDDEN = ("INTERNAL-", "Quentin", "Secretperson", "Rita Responder", "INC-", "@example.com", "SEV1", "db-7")


async def test_nothing_internal_leaks_into_the_status_page_its_json_or_its_feed(client, public_and_private):
    for path in ("/status", "/api/v1/status", "/status/feed.atom"):
        response = await client.get(path)
        assert response.status_code == 200, path
        for word in FORBIDDEN:
            assert word not in response.text, (path, word)
        assert "Checkout is failing for some" in response.text, path


async def test_the_status_json_has_the_shape_of_a_statuspage_summary(client, public_and_private):
    summary = (await client.get("/api/v1/status")).json()
    assert set(summary) >= {"page", "status", "components", "incidents", "scheduled_maintenances"}
    assert set(summary["page"]) >= {"id", "name", "url", "updated_at"}
    assert summary["status"] == {"indicator": "critical", "description": "Checkout is down"}
    component_keys = {
        "id",
        "name",
        "status",
        "position",
        "description",
        "group_id",
        "page_id",
        "group",
        "only_show_if_degraded",
        "created_at",
        "updated_at",
        "showcase",
        "start_date",
    }
    for component in summary["components"]:
        assert set(component) >= component_keys
        assert component["status"] in (
            "operational",
            "degraded_performance",
            "partial_outage",
            "major_outage",
        )
    [incident] = summary["incidents"]
    assert incident["status"] == "investigating" and incident["impact"] == "critical"
    assert incident["name"] == "Checkout disruption"
    [update] = incident["incident_updates"]
    assert set(update) >= {"id", "status", "body", "incident_id", "created_at", "updated_at", "display_at"}
    assert update["body"] == "Checkout is failing for some"


async def test_the_feed_and_json_link_to_the_public_address_never_to_a_requests_host(
    app, public_and_private, monkeypatch
):
    async def fetch() -> tuple[str, dict]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as hostile:
            return (await hostile.get("/status/feed.atom")).text, (await hostile.get("/api/v1/status")).json()

    feed, summary = await fetch()
    assert "evil.example" not in feed + json.dumps(summary)
    assert summary["page"]["url"] == "/status" and "<id>urn:icc:status</id>" in feed
    monkeypatch.setenv("ICC_PUBLIC_URL", "https://status.example.com")
    get_settings.cache_clear()
    try:
        feed, summary = await fetch()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert summary["page"]["url"] == "https://status.example.com/status"
    assert "<id>https://status.example.com/status</id>" in feed and "evil.example" not in feed


def test_a_public_url_that_is_not_an_http_address_stops_start_up(monkeypatch):
    monkeypatch.setenv("ICC_PUBLIC_URL", "status.example.com")
    get_settings.cache_clear()
    try:
        with pytest.raises(ConfigError, match="ICC_PUBLIC_URL: must be an http:// or https:// address"):
            get_settings()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


async def test_the_feed_is_valid_atom_with_one_entry_per_public_update(client, public_and_private):
    feed = ET.fromstring((await client.get("/status/feed.atom")).content)  # noqa: S314 - our own output
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    entries = feed.findall("a:entry", ns)
    assert [e.find("a:content", ns).text for e in entries] == ["Checkout is failing for some"]
    assert all(e.find("a:id", ns).text and e.find("a:updated", ns).text for e in entries)


async def test_the_status_page_answers_a_matching_etag_with_304(client, public_and_private):
    first = await client.get("/status")
    assert first.headers["cache-control"] == "public, max-age=10"
    again = await client.get("/status", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_an_uptime_check_with_head_gets_200_with_or_without_a_copy(app, client, public_and_private):
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        for path in ("/status", "/status/feed.atom", "/api/v1/status"):
            first = await client.head(path)  # no copy yet: the route renders it
            again = await client.head(path)  # from the copy
            assert (first.status_code, again.status_code) == (200, 200), path
            assert first.content == again.content == b"", path


async def test_the_status_page_is_a_whole_page_or_for_htmx_its_live_part(client, public_and_private):
    page = (await client.get("/status")).text
    assert "<html" in page and "Sign out" not in page
    fragment = (await client.get("/status", headers={"HX-Request": "true"})).text
    assert fragment.lstrip().startswith('<div id="icc-status-live">')
    assert "Checkout is down" in fragment


async def test_a_crowd_is_served_from_the_rendered_copy_until_the_database_announces_a_change(
    app, client, session, responder, public_and_private
):
    queries = []

    def count(*_args):
        queries.append(1)

    async with app.router.lifespan_context(app):
        for _ in range(50):
            await asyncio.sleep(0.05)
            if app.state.listener.connected:
                break
        assert app.state.listener.connected
        await client.get("/status")
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for _ in range(20):
                assert (await client.get("/status")).status_code == 200
            assert queries == []
            await status.post_update(
                session, actor=responder, ref=public_and_private.ref, body="Fix is rolling out", public=True
            )
            for _ in range(50):
                page = await client.get("/status")
                if "Fix is rolling out" in page.text:
                    break
                await asyncio.sleep(0.05)
            assert "Fix is rolling out" in page.text
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)


def sample_of_304() -> float:
    labels = {"method": "GET", "route": "/status", "status": "304"}
    return REGISTRY.get_sample_value("icc_http_requests_total", labels) or 0.0


async def test_the_copy_answers_every_public_status_path_before_routing_without_a_query(
    app, client, public_and_private
):
    queries = []

    def count(*_args):
        queries.append(1)

    async with app.router.lifespan_context(app):
        await wait_connected(app)
        first = {
            path: await client.get(path, headers=headers)
            for path, headers in (
                ("/status", {}),
                ("/status?fragment", {"HX-Request": "true"}),
                ("/status/feed.atom", {}),
                ("/api/v1/status", {}),
            )
        }
        counted_before = sample_of_304()
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            page = await client.get("/status")
            fragment = await client.get("/status", headers={"HX-Request": "true"})
            boosted = await client.get("/status", headers={"HX-Request": "true", "HX-Boosted": "true"})
            unchanged = await client.get(
                "/status", headers={"If-None-Match": first["/status"].headers["etag"]}
            )
            feed = await client.get("/status/feed.atom")
            summary = await client.get("/api/v1/status")
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
        assert queries == []
        assert page.content == first["/status"].content and "<html" in page.text
        assert page.headers["cache-control"] == "public, max-age=10"
        assert page.headers["vary"] == "HX-Request"
        assert fragment.content == first["/status?fragment"].content
        assert fragment.text.lstrip().startswith('<div id="icc-status-live">')
        assert boosted.content == page.content
        assert unchanged.status_code == 304 and unchanged.content == b""
        assert feed.headers["content-type"] == "application/atom+xml"
        assert feed.content == first["/status/feed.atom"].content
        assert summary.json()["status"]["description"] == "Checkout is down"
        # Counted under the route's template, as the routes' own responses are.
        assert sample_of_304() == counted_before + 1


async def test_while_a_change_is_rendered_the_crowd_gets_the_previous_copy_at_once(
    app, client, session, responder, public_and_private
):
    cache = app.state.status_cache
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        before = await client.get("/status")
        await status.post_update(
            session, actor=responder, ref=public_and_private.ref, body="Fix is rolling out", public=True
        )
        for _ in range(50):
            if cache.get("html") is None:
                break
            await asyncio.sleep(0.05)
        assert cache.get("html") is None, "the change was not announced"
        async with cache.rebuilding("html"):  # a slow rebuild is running
            during = await asyncio.wait_for(client.get("/status"), timeout=2)
        after = await client.get("/status")
    assert during.status_code == 200 and during.content == before.content
    assert "Fix is rolling out" in after.text


async def test_a_copy_built_while_a_change_was_announced_is_not_kept(
    app, client, session, responder, public_and_private
):
    cache = app.state.status_cache
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        since = cache.generation  # a rebuild starts reading the database here
        await status.post_update(
            session, actor=responder, ref=public_and_private.ref, body="Fix is rolling out", public=True
        )
        for _ in range(50):
            if cache.generation != since:
                break
            await asyncio.sleep(0.05)
        assert cache.generation != since, "the change was not announced"
        cache.put("html", rendered(b"<p>read before the change</p>", "text/html", clock.now()), since=since)
        assert cache.get("html") is None
        assert "Fix is rolling out" in (await client.get("/status")).text


@pytest.fixture
def status_requires_login(icc_toml):
    icc_toml("[status]\nrequire_login = true\n")


async def test_a_private_status_page_is_never_sent_to_someone_signed_out_even_when_rendered(
    app, client, responder, public_and_private, status_requires_login
):
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        await sign_in(client, responder)
        for path in ("/status", "/status/feed.atom", "/api/v1/status"):
            signed_in = await client.get(path)
            assert signed_in.status_code == 200, path
            assert signed_in.headers["cache-control"] == "private, max-age=10", path
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as anyone:
            for path in ("/status", "/status/feed.atom", "/api/v1/status"):
                response = await anyone.get(path)
                assert response.status_code in (303, 401), path
                assert "Checkout is failing for some" not in response.text, path


async def test_the_status_api_for_updates(api_as, session, responder, viewer):
    incident = await declare(session, responder)
    api = await api_as(responder)
    refused = await api.post(f"/api/v1/incidents/{incident.ref}/updates", json={"body": "x"})
    assert refused.status_code == 403
    await as_commander(session, responder, incident)
    empty = await api.post(f"/api/v1/incidents/{incident.ref}/updates", json={"body": " "})
    assert empty.status_code == 422
    posted = await api.post(
        f"/api/v1/incidents/{incident.ref}/updates",
        json={"body": "Fixed", "public": True, "status": "monitoring"},
    )
    assert posted.status_code == 201
    assert posted.json()["status"] == "monitoring"
    listed = (await api.get(f"/api/v1/incidents/{incident.ref}/updates")).json()
    assert [u["body"] for u in listed] == ["Fixed"]
    impact = await api.put(
        f"/api/v1/incidents/{incident.ref}/impacts/search", json={"impact": "partial_outage"}
    )
    assert impact.status_code == 204
    viewer_api = await api_as(viewer)
    assert (
        await viewer_api.put(f"/api/v1/incidents/{incident.ref}/impacts/search", json={"impact": "none"})
    ).status_code == 403


async def test_the_incident_page_prompts_the_comms_lead_when_an_update_is_due(
    client, session, responder, frozen_clock
):
    incident = await declare(session, responder, severity="SEV1")
    await as_commander(session, responder, incident)
    csrf = await sign_in(client, responder)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "A stakeholder update is due" not in page
    frozen_clock.advance(minutes=14)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "A stakeholder update is due" in page
    posted = await client.post(
        f"/incidents/{incident.ref}/updates",
        data={"csrf_token": csrf, "body": "We rolled back", "audience": "public"},
    )
    assert posted.status_code == 303
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "A stakeholder update is due" not in page
    assert "We rolled back" in page


# ---------------------------------------------------------------- dashboard


async def test_the_dashboard_shows_counts_and_mtta_mttr_per_severity(
    client, session, responder, frozen_clock
):
    await sign_in(client, responder)
    for minutes_to_ack in (2, 4, 30):
        incident = await declare(session, responder, severity="SEV1")
        frozen_clock.advance(minutes=minutes_to_ack)
        await incidents.acknowledge_incident(session, actor=responder, ref=incident.ref)
    page = (await client.get("/dashboard")).text
    assert "3 in all" in page
    assert '<span class="n">3</span> <span>SEV1 active</span>' in page
    assert "<td>4 min</td>" in page  # the median of 2, 4 and 30 minutes
    assert "<td>25 min</td>" in page  # p90 by linear interpolation: 4 + 0.8 * 26
    fragment = await client.get("/dashboard?days=90", headers={"HX-Request": "true"})
    assert "last 90 days <small>(3 in all)" in fragment.text
    assert fragment.text.lstrip().startswith('<div id="icc-dashboard"')
    assert (await client.get("/dashboard?days=7")).status_code == 422


async def test_a_wall_of_dashboards_reads_the_history_once_per_change(app, client, session, responder):
    await sign_in(client, responder)
    await declare(session, responder, severity="SEV2")
    trend_queries = []

    def count(_conn, _cursor, statement, *_args):
        if "percentile_cont" in statement or "date_trunc" in statement:
            trend_queries.append(statement)

    async with app.router.lifespan_context(app):
        await wait_connected(app)
        assert "1 in all" in (await client.get("/dashboard")).text
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for _ in range(5):
                assert "1 in all" in (await client.get("/dashboard")).text
            assert trend_queries == []
            await declare(session, responder, severity="SEV3")
            for _ in range(50):
                page = (await client.get("/dashboard")).text
                if "2 in all" in page:
                    break
                await asyncio.sleep(0.05)
            assert "2 in all" in page
            assert trend_queries
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)
