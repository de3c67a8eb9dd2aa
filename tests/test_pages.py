"""The HTML pages: sign-in, CSRF, page or fragment, and readable errors that keep input."""

import httpx
import pytest

from app.incidents import service
from app.main import create_app
from tests.conftest import sign_in


async def declared(session, actor, **kw):
    fields = {"title": "Checkout returns 502", "severity": "SEV2"} | kw
    return await service.declare_incident(session, actor=actor, **fields)


async def test_pages_send_an_anonymous_visitor_to_sign_in_and_back(client):
    response = await client.get("/incidents/INC-20261123-01")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/incidents/INC-20261123-01"


async def test_a_wrong_password_shows_a_message_and_keeps_the_email(client, responder):
    page = await client.get("/login")
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    response = await client.post(
        "/login", data={"email": responder.email, "password": "nope", "login_csrf": token}
    )
    assert response.status_code == 401
    assert "Email or password is not right." in response.text
    assert f'value="{responder.email}"' in response.text


async def test_the_login_form_refuses_a_post_without_its_csrf_cookie(client, responder):
    response = await client.post(
        "/login", data={"email": responder.email, "password": "x", "login_csrf": "x"}
    )
    assert response.status_code == 403
    assert "expired" in response.text


async def test_sign_in_never_redirects_to_another_site(client, responder):
    page = await client.get("/login?next=//evil.example/steal")
    assert 'name="next" value="/incidents"' in page.text


async def test_a_signed_in_session_cookie_is_httponly_and_samesite_lax(client, responder):
    page = await client.get("/login")
    token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
    response = await client.post(
        "/login",
        data={"email": responder.email, "password": "correct-horse-battery", "login_csrf": token},
    )
    cookie = response.headers["set-cookie"]
    assert "icc_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie


async def test_signing_out_revokes_the_session_on_the_server(client, app, responder):
    csrf = await sign_in(client, responder)
    stolen = client.cookies.get("icc_session")
    await client.post("/logout", data={"csrf_token": csrf})
    thief = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    thief.cookies.set("icc_session", stolen)
    response = await thief.get("/incidents")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


async def test_an_unsafe_request_without_the_csrf_token_is_refused_and_changes_nothing(
    client, session, responder
):
    await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(f"/incidents/{incident.ref}/acknowledge")
    assert response.status_code == 403
    assert "Reload the page" in response.text
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.incident.acknowledged_at is None


async def test_htmx_requests_carry_the_csrf_token_in_a_header(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(
        f"/incidents/{incident.ref}/acknowledge", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert response.status_code == 200
    assert 'id="icc-state"' in response.text
    assert "<html" not in response.text  # a fragment, not the page
    assert 'hx-swap-oob="true"' in response.text  # the timeline comes along
    assert "Acknowledged by Rita Responder." in response.text


async def test_a_plain_form_post_redirects_back_to_the_incident(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(f"/incidents/{incident.ref}/acknowledge", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == f"/incidents/{incident.ref}"


async def test_one_url_serves_the_page_or_its_fragment(client, session, responder):
    await sign_in(client, responder)
    incident = await declared(session, responder)
    page = await client.get(f"/incidents/{incident.ref}")
    assert page.headers["vary"] == "HX-Request"
    assert "<html" in page.text and 'id="icc-entry-body"' in page.text
    fragment = await client.get(f"/incidents/{incident.ref}", headers={"HX-Request": "true"})
    assert "<html" not in fragment.text
    assert 'id="icc-state"' in fragment.text
    boosted = await client.get(
        f"/incidents/{incident.ref}", headers={"HX-Request": "true", "HX-Boosted": "true"}
    )
    assert "<html" in boosted.text
    listing = await client.get("/incidents", headers={"HX-Request": "true"})
    assert '<div id="icc-board"' in listing.text and "<html" not in listing.text


async def test_the_incident_page_shows_severity_status_roles_timers_checklist_and_timeline(
    client, session, responder
):
    await sign_in(client, responder)
    incident = await declared(session, responder, severity="SEV1", services=["checkout"])
    page = (await client.get(f"/incidents/{incident.ref}")).text
    for text in (
        "SEV1",
        incident.ref,
        "Checkout returns 502",
        'aria-current="step">Triage',
        "Incident Commander",
        "Acknowledge",
        "Mitigate",
        "Next update",
        "Triage checklist",
        "Bridge call open",
        "Declared SEV1: Checkout returns 502. Affected: checkout.",
    ):
        assert text in page, text


async def test_a_viewer_sees_the_incident_without_any_write_control(client, session, responder, viewer):
    incident = await declared(session, responder)
    await sign_in(client, viewer)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "Checkout returns 502" in page
    assert "hx-post" not in page
    assert 'id="icc-entry-body"' not in page
    assert "Declare incident" not in page
    new = await client.get("/incidents/new")
    assert new.status_code == 403
    csrf = page.split('name="csrf_token" value="')[1].split('"')[0]
    refused = await client.post("/incidents", data={"csrf_token": csrf, "title": "x", "severity": "SEV1"})
    assert refused.status_code == 403
    assert "Viewers can read incidents but cannot change them." in refused.text


async def test_declaring_with_a_mistake_returns_the_form_with_the_message_and_what_was_typed(
    client, responder
):
    csrf = await sign_in(client, responder)
    response = await client.post(
        "/incidents",
        data={"csrf_token": csrf, "title": "", "severity": "SEV2", "summary": "half the fleet is down"},
    )
    assert response.status_code == 422
    assert "Title is required." in response.text
    assert "half the fleet is down" in response.text


async def test_declaring_through_the_form_lands_on_the_new_incident_and_a_double_submit_does_not_repeat(
    client, responder
):
    csrf = await sign_in(client, responder)
    form = {
        "csrf_token": csrf,
        "title": "DNS fails",
        "severity": "SEV1",
        "services": "dns, edge",
        "client_key": "k1",
    }
    first = await client.post("/incidents", data=form)
    second = await client.post("/incidents", data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    page = await client.get(first.headers["location"])
    assert "DNS fails" in page.text and "dns, edge" in page.text


async def test_a_refused_timeline_entry_comes_back_in_the_box_with_the_reason(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(
        f"/incidents/{incident.ref}/timeline",
        data={"csrf_token": csrf, "body": "@25:61 restarted the primary", "kind": "note"},
    )
    assert response.status_code == 422
    assert "25:61 is not a time of day." in response.text
    assert "@25:61 restarted the primary</textarea>" in response.text


async def test_a_refused_htmx_entry_only_replaces_the_message_beside_the_box(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(
        f"/incidents/{incident.ref}/timeline",
        data={"body": "   ", "kind": "note"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#icc-entry-error"
    assert "The entry is required." in response.text


async def test_an_htmx_request_after_the_session_ended_keeps_the_page_and_says_so(client, session, responder):
    await sign_in(client, responder)
    incident = await declared(session, responder)
    client.cookies.set("icc_session", "expired-or-revoked")
    response = await client.post(
        f"/incidents/{incident.ref}/timeline",
        data={"body": "important note"},
        headers={"HX-Request": "true", "X-CSRF-Token": "whatever"},
    )
    assert response.status_code == 401
    assert response.headers["HX-Retarget"] == "#icc-flash"
    assert "your text is kept here" in response.text


async def test_an_entry_posted_with_htmx_returns_the_timeline_with_it(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(
        f"/incidents/{incident.ref}/timeline",
        data={"body": "/d Roll back **now**", "kind": "note", "client_key": "abc"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<ol id="icc-timeline"')
    assert "kind-decision" in response.text
    assert "Roll back <strong>now</strong>" in response.text


async def test_entry_text_with_html_is_shown_as_text(client, session, responder):
    await sign_in(client, responder)
    incident = await declared(session, responder, title="<img src=x onerror=alert(1)>")
    await service.add_timeline_entry(
        session, actor=responder, ref=incident.ref, kind="note", body="<script>alert(1)</script>"
    )
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "<script>alert(1)</script>" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_the_list_filters_by_severity_status_service_and_text(client, session, responder):
    await sign_in(client, responder)
    await declared(session, responder, title="Checkout down", severity="SEV1", services=["checkout"])
    await declared(session, responder, title="Search slow", severity="SEV3", services=["search"])
    page = (await client.get("/incidents?severity=SEV3")).text
    assert "Search slow" in page and "Checkout down" not in page
    page = (await client.get("/incidents?service=checkout")).text
    assert "Checkout down" in page and "Search slow" not in page
    page = (await client.get("/incidents?q=slow")).text
    assert "Search slow" in page and "Checkout down" not in page
    page = (await client.get("/incidents?status=resolved")).text
    assert "No active incidents match these filters." in page


async def test_an_unknown_incident_is_a_readable_404_page(client, responder):
    await sign_in(client, responder)
    response = await client.get("/incidents/INC-19990101-01")
    assert response.status_code == 404
    assert "No incident INC-19990101-01." in response.text
    assert "<html" in response.text


async def test_a_request_body_over_one_mebibyte_is_refused(client, session, responder):
    csrf = await sign_in(client, responder)
    incident = await declared(session, responder)
    response = await client.post(
        f"/incidents/{incident.ref}/timeline",
        data={"csrf_token": csrf, "body": "x" * (1024 * 1024 + 10)},
    )
    assert response.status_code == 413
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    assert len(entries) == 1


@pytest.mark.parametrize("api", [False, True])
async def test_a_database_that_is_down_gives_a_503_not_a_stack_trace(api):
    down = create_app("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://test") as c:
        if api:
            response = await c.get("/api/v1/incidents", headers={"Authorization": "Bearer icc_x"})
            assert response.json()["code"] == "unavailable"
        else:
            c.cookies.set("icc_session", "some-session")
            response = await c.get("/incidents")
            assert "The database is not reachable right now." in response.text
    assert response.status_code == 503


async def test_a_long_timeline_shows_its_latest_entries_and_says_how_many_there_are(
    client, session, responder
):
    await sign_in(client, responder)
    incident = await declared(session, responder)
    for n in range(305):
        await service.add_timeline_entry(
            session, actor=responder, ref=incident.ref, kind="note", body=f"step {n:03d}"
        )
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "Showing the latest 300 of 306 entries." in page
    assert "step 304" in page and "step 005" in page
    assert "step 004" not in page
