"""What goes public is a person's decision: publication, the public promise and the closing update.

An incident an alert opened stays off the status page, its JSON and its feed until a responder
publishes it; the "next update by" stakeholders see moves only with a public update; resolving an
incident that is on the page takes its closing public update in the same step.
"""

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app.config import ConfigError
from app.errors import InvalidInput
from app.incidents import service as incidents
from app.status import updates as status
from app.status.config import load_status_config
from tests.conftest import sign_in

API = "/api/v1"
README = Path(__file__).resolve().parent.parent / "README.md"
PUBLIC_PATHS = (
    "/status",
    "/api/v1/status",
    "/status/feed.atom",
    "/api/v2/summary.json",
    "/api/v2/incidents/unresolved.json",
)


def readme_alertmanager_delivery() -> tuple[str, str, str]:
    """The README's Alertmanager example ("The same delivery by hand"): token, path and body."""
    alerts = README.read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(
        r"curl -s -H 'Authorization: Bearer ([^']+)'.*? -d '(\{.*?\})' \\\s+http://127\.0\.0\.1:8000(\S+)",
        alerts,
        re.DOTALL,
    )
    assert found, "README.md's Alerts section no longer has the Alertmanager curl example"
    token, body, path = found.groups()
    return token, path, body


async def deliver_the_readme_alert(client) -> str:
    token, path, body = readme_alertmanager_delivery()
    response = await client.post(
        path, content=body, headers={"Authorization": f"Bearer {token}", "content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    [ref] = response.json()["incidents"]
    return ref


async def public_views(client) -> dict[str, str]:
    views = {}
    for path in PUBLIC_PATHS:
        response = await client.get(path)
        assert response.status_code == 200, path
        views[path] = response.text
    return views


def assert_no_day_bar_shows_a_problem(page: str) -> None:
    components = page.count('<li class="component ')
    assert components == 7 and page.count('<li class="component impact-none">') == components
    assert page.count("90 of 90 days without problems") == 2 * components  # label and legend


async def declare(session, actor, **kw):
    fields = {"title": "Payments DB primary failover", "severity": "SEV1", "services": ["checkout"]} | kw
    return await incidents.declare_incident(session, actor=actor, **fields)


async def take_ic(session, actor, ref):
    await incidents.assign_role(session, actor=actor, ref=ref, role="incident_commander", email=actor.email)


# ---------------------------------------------------------------- publication


async def test_the_readmes_alertmanager_example_stays_off_the_status_page_until_a_responder_publishes_it(
    client, api_as, responder, session
):
    ref = await deliver_the_readme_alert(client)
    detail = await incidents.get_incident_detail(session, ref=ref)
    assert (detail.incident.severity, detail.incident.services) == ("SEV1", ["checkout"])

    views = await public_views(client)
    assert "All systems operational" in views["/status"] and "What is happening" not in views["/status"]
    assert '"incidents":[]' in views["/api/v1/status"] and '"major_outage"' not in views["/api/v1/status"]
    assert "<entry>" not in views["/status/feed.atom"]
    assert '"incidents":[]' in views["/api/v2/incidents/unresolved.json"]
    assert '"description":"All Systems Operational"' in views["/api/v2/summary.json"]
    assert_no_day_bar_shows_a_problem(views["/status"])

    api = await api_as(responder)
    assert (await api.get(f"{API}/incidents/{ref}/publication")).json()["on_status_page"] is False
    published = await api.post(f"{API}/incidents/{ref}/publish")
    assert published.status_code == 200, published.text
    assert published.json()["on_status_page"] is True
    assert published.json()["published_by"]["name"] == "Rita Responder"

    views = await public_views(client)
    assert "Checkout is down" in views["/status"] and "Checkout disruption" in views["/status"]
    assert '"impact":"critical"' in views["/api/v2/incidents/unresolved.json"]
    entries, _ = await incidents.list_timeline(session, ref=ref)
    assert (entries[-1].kind, entries[-1].body, entries[-1].author.name) == (
        "impact",
        "Published to the status page.",
        "Rita Responder",
    )


async def test_a_person_who_declares_an_incident_publishes_it_under_auto(session, responder, client):
    incident = await declare(session, responder)
    assert incident.published_at == incident.declared_at and incident.published_by_id == responder.id
    assert "Checkout is down" in (await client.get("/status")).text


async def test_under_manual_publication_nothing_is_public_until_a_responder_publishes_it(
    icc_toml, session, responder, client
):
    icc_toml('[status]\npublish = "manual"\n')
    incident = await declare(session, responder)
    assert incident.published_at is None
    assert "All systems operational" in (await client.get("/status")).text
    await status.publish_incident(session, actor=responder, ref=incident.ref)
    assert "Checkout is down" in (await client.get("/status")).text


def test_a_publish_mode_other_than_auto_or_manual_stops_start_up(tmp_path):
    path = tmp_path / "icc.toml"
    path.write_text('[status]\npublish = "sometimes"\n')
    with pytest.raises(
        ConfigError, match=r'\[status\] publish must be "auto" or "manual", not \'sometimes\''
    ):
        load_status_config(path)


async def test_a_responder_takes_a_false_alarm_off_the_page_its_history_bars_and_feed_included(
    api_as, session, responder, viewer, client
):
    incident = await declare(session, responder, title="Checkout 502 (false alarm)")
    await take_ic(session, responder, incident.ref)
    await status.change_status(
        session,
        actor=responder,
        ref=incident.ref,
        status="resolved",
        public_update="A false alarm: all is well.",
    )
    views = await public_views(client)
    assert "A false alarm: all is well." in views["/status"] and "<entry>" in views["/status/feed.atom"]

    watcher = await api_as(viewer)
    for action in ("unpublish", "publish"):
        refused = await watcher.post(f"{API}/incidents/{incident.ref}/{action}")
        assert refused.status_code == 403, action
    api = await api_as(responder)
    taken_off = await api.post(f"{API}/incidents/{incident.ref}/unpublish")
    assert taken_off.status_code == 200, taken_off.text
    assert taken_off.json() == {
        "published_at": None,
        "published_by": None,
        "on_status_page": False,
        "next_update_by": None,
    }
    again = await api.post(f"{API}/incidents/{incident.ref}/unpublish")
    assert again.status_code == 409 and "not on the status page" in again.json()["detail"]

    views = await public_views(client)
    for path, text in views.items():
        assert "false alarm" not in text.lower(), path
    assert "No incidents in the past 14 days." in views["/status"]
    assert_no_day_bar_shows_a_problem(views["/status"])
    entries, _ = await incidents.list_timeline(session, ref=incident.ref)
    assert (entries[-1].kind, entries[-1].body) == ("impact", "Taken off the status page.")
    assert (await api.post(f"{API}/incidents/{incident.ref}/publish")).status_code == 200
    assert (await api.post(f"{API}/incidents/{incident.ref}/publish")).status_code == 409


async def test_the_incident_page_offers_publishing_to_responders_only(client, session, responder, viewer):
    ref = await deliver_the_readme_alert(client)
    csrf = await sign_in(client, responder)
    page = (await client.get(f"/incidents/{ref}")).text
    assert "Not on the status page." in page and "Publish to status page" in page
    published = await client.post(f"/incidents/{ref}/publish", data={"csrf_token": csrf})
    assert published.status_code == 303
    page = (await client.get(f"/incidents/{ref}")).text
    assert "On the status page</strong> since" in page and "Take off the status page" in page
    await client.post("/logout", data={"csrf_token": csrf})
    await sign_in(client, viewer)
    page = (await client.get(f"/incidents/{ref}")).text
    assert "On the status page</strong> since" in page and "Take off the status page" not in page


# ---------------------------------------------------------------- the public promise


def next_update_by(summary: dict) -> str:
    [incident] = summary["incidents"]
    return incident["next_update_by"]


async def test_an_internal_update_does_not_move_the_public_promise(session, responder, client, frozen_clock):
    incident = await declare(session, responder)  # SEV1: an update every 15 minutes
    await take_ic(session, responder, incident.ref)
    promised = frozen_clock.now + timedelta(minutes=15)
    frozen_clock.advance(minutes=10)
    await status.post_update(session, actor=responder, ref=incident.ref, body="Exec summary", public=False)

    detail = await incidents.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["next_update"].due_at == frozen_clock.now + timedelta(minutes=15)  # internal cadence
    assert next_update_by((await client.get("/api/v1/status")).json()) == promised.isoformat()
    assert (
        f'<p class="next-update">Next update by <time datetime="{promised.isoformat()}"'
        in (await client.get("/status")).text
    )

    frozen_clock.advance(minutes=2)
    await status.post_update(session, actor=responder, ref=incident.ref, body="Rolling back", public=True)
    moved = frozen_clock.now + timedelta(minutes=15)
    assert next_update_by((await client.get("/api/v1/status")).json()) == moved.isoformat()


async def test_a_severity_change_restarts_the_public_promise(session, responder, client, frozen_clock):
    incident = await declare(session, responder, severity="SEV3")  # an update every 2 hours
    frozen_clock.advance(minutes=20)
    await incidents.change_severity(
        session, actor=responder, ref=incident.ref, severity="SEV1", reason="All card payments fail"
    )
    promised = frozen_clock.now + timedelta(minutes=15)
    assert next_update_by((await client.get("/api/v1/status")).json()) == promised.isoformat()


async def test_publishing_later_promises_the_next_update_from_the_moment_of_publication(
    client, api_as, responder, frozen_clock
):
    ref = await deliver_the_readme_alert(client)
    frozen_clock.advance(minutes=40)
    published = await (await api_as(responder)).post(f"{API}/incidents/{ref}/publish")
    promised = frozen_clock.now + timedelta(minutes=15)
    assert datetime.fromisoformat(published.json()["next_update_by"]) == promised
    assert next_update_by((await client.get("/api/v1/status")).json()) == promised.isoformat()


# ---------------------------------------------------------------- resolving


async def test_resolving_an_incident_on_the_page_without_its_closing_update_is_refused_and_changes_nothing(
    api_as, session, responder
):
    incident = await declare(session, responder)
    await take_ic(session, responder, incident.ref)
    api = await api_as(responder)
    before, _ = await incidents.list_timeline(session, ref=incident.ref)
    refused = await api.post(f"{API}/incidents/{incident.ref}/status", json={"status": "resolved"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "invalid_input" and "public_update" in refused.json()["detail"]
    blank = await api.post(
        f"{API}/incidents/{incident.ref}/status", json={"status": "resolved", "public_update": "  "}
    )
    assert blank.status_code == 422 and "The public update is required" in blank.json()["detail"]
    assert (await api.get(f"{API}/incidents/{incident.ref}")).json()["status"] == "triage"
    after, _ = await incidents.list_timeline(session, ref=incident.ref)
    assert [e.id for e in after] == [e.id for e in before]
    assert await status.list_updates(session, ref=incident.ref) == []


async def test_resolving_with_the_closing_update_posts_it_and_the_page_promises_nothing_more(
    api_as, session, responder, client
):
    incident = await declare(session, responder)
    await take_ic(session, responder, incident.ref)
    await status.post_update(
        session,
        actor=responder,
        ref=incident.ref,
        public=True,
        body="We are investigating. Next update by 14:15.",
    )
    api = await api_as(responder)
    resolved = await api.post(
        f"{API}/incidents/{incident.ref}/status",
        json={"status": "resolved", "public_update": "Checkout works again. We will publish a review."},
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    [closing, _first] = await status.list_updates(session, ref=incident.ref)
    assert (closing.public, closing.status) == (True, "resolved")

    page = (await client.get("/status")).text
    history = page.split('id="icc-history-h"', 1)[1]
    assert history.index("Checkout works again.") < history.index("We are investigating.")
    assert 'class="next-update"' not in page
    assert (await client.get("/api/v1/status")).json()["incidents"] == []
    publication = (await api.get(f"{API}/incidents/{incident.ref}/publication")).json()
    assert publication["next_update_by"] is None


async def test_a_public_update_that_resolves_is_the_closing_update_and_an_internal_one_is_not(
    session, responder
):
    incident = await declare(session, responder)
    ref = incident.ref
    await take_ic(session, responder, ref)
    with pytest.raises(InvalidInput, match="public_update"):
        await status.post_update(
            session, actor=responder, ref=ref, body="Done", public=False, status="resolved"
        )
    await status.post_update(session, actor=responder, ref=ref, body="Done", public=True, status="resolved")
    assert (await incidents.get_incident_detail(session, ref=ref)).incident.status == "resolved"


async def test_an_incident_that_is_not_on_the_page_resolves_as_before(client, api_as, session, responder):
    ref = await deliver_the_readme_alert(client)  # never published
    internal = await declare(session, responder, services=["ledger"])  # published, no component
    api = await api_as(responder)
    for incident_ref in (ref, internal.ref):
        await take_ic(session, responder, incident_ref)
        resolved = await api.post(f"{API}/incidents/{incident_ref}/status", json={"status": "resolved"})
        assert resolved.status_code == 200, resolved.text


async def test_the_page_asks_for_the_closing_update_prefilled_and_resolves_with_it(
    client, session, responder
):
    incident = await declare(session, responder)
    await take_ic(session, responder, incident.ref)
    csrf = await sign_in(client, responder)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    resolved_template = status.update_templates(incident)["resolved"]
    assert f'<textarea name="public_update" rows="4" required>{resolved_template}</textarea>' in page
    refused = await client.post(
        f"/incidents/{incident.ref}/status",
        data={"csrf_token": csrf, "status": "resolved"},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422 and "closing public update" in refused.text
    done = await client.post(
        f"/incidents/{incident.ref}/status",
        data={"csrf_token": csrf, "status": "resolved", "public_update": "Checkout is back."},
    )
    assert done.status_code == 303
    assert "Checkout is back." in (await client.get("/status")).text
