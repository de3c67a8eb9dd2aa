"""Hostile input at every door but the alert intakes (tests/test_alerts.py has those): text
PostgreSQL cannot store (a lone surrogate, NUL), a 5,000-digit integer, impossible timestamps,
JSON nested 1,000 levels deep, a body that is not a JSON object, form bytes that are not UTF-8.
Each vector at each door is its own test: the answer is a 400 or 422 whose message names the
field, and the database holds exactly what it held before."""

import json
from dataclasses import dataclass
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text

from app.actions import service as actions
from app.auth import service as accounts
from app.auth.deps import SESSION_COOKIE
from app.incidents import service as incidents

API = "/api/v1"
SURROGATE = "\ud800"
NUL = "\x00"
HUGE = "9" * 5000
DEEP = 1000
FORM = {"content-type": "application/x-www-form-urlencoded"}

# Every row the doors below could write, as JSON text: compared before and after each request.
STORED = text(
    """
    SELECT 'incidents', to_jsonb(t)::text FROM incidents t
    UNION ALL SELECT 'timeline_entries', to_jsonb(t)::text FROM timeline_entries t
    UNION ALL SELECT 'timeline_revisions', to_jsonb(t)::text FROM timeline_revisions t
    UNION ALL SELECT 'role_assignments', to_jsonb(t)::text FROM role_assignments t
    UNION ALL SELECT 'checklist_items', to_jsonb(t)::text FROM checklist_items t
    UNION ALL SELECT 'comms_updates', to_jsonb(t)::text FROM comms_updates t
    UNION ALL SELECT 'incident_impacts', to_jsonb(t)::text FROM incident_impacts t
    UNION ALL SELECT 'action_runs', to_jsonb(t)::text FROM action_runs t
    UNION ALL SELECT 'users', to_jsonb(t)::text FROM users t
    """
)


@dataclass(frozen=True)
class World:
    ref: str
    entry: int
    run: int
    token: str
    user: object

    def fill(self, template: str, hostile: str = "") -> str:
        """`{ref}`, `{entry}`, `{run}`, `{token}` filled in, and `{x}` replaced by the hostile value."""
        filled = template.replace("{x}", "{{x}}").format(
            ref=self.ref, entry=self.entry, run=self.run, token=self.token
        )
        return filled.replace("{x}", hostile)

    def fill_json(self, template: object, hostile: str) -> object:
        if isinstance(template, str):
            return self.fill(template, hostile)
        if isinstance(template, list):
            return [self.fill_json(v, hostile) for v in template]
        if isinstance(template, dict):
            return {self.fill(k, hostile): self.fill_json(v, hostile) for k, v in template.items()}
        return template


@pytest.fixture
async def world(app, session, frozen_clock) -> World:
    """A responder who is the IC of an incident with a note and a prepared dangerous action."""
    user = await accounts.create_user(session, email="rita@example.com", name="Rita", role="responder")
    ref = (await incidents.declare_incident(session, actor=user, title="Checkout down", severity="SEV1")).ref
    await incidents.assign_role(session, actor=user, ref=ref, role="incident_commander", email=user.email)
    entry = await incidents.add_timeline_entry(session, actor=user, ref=ref, kind="note", body="a note")
    view, token = await actions.prepare_action_run(
        session, catalog=app.state.catalog, actor=user, ref=ref, name="service-restart"
    )
    return World(ref, entry.id, view.run.id, token, user)


async def stored(session) -> list[tuple[str, str]]:
    rows = sorted(tuple(row) for row in await session.execute(STORED))
    await session.commit()
    return rows


@pytest.fixture
async def api(app, session, world) -> httpx.AsyncClient:
    """The responder's API client; a server error comes back as the 500 a client would see."""
    token = await accounts.create_api_token(session, email=world.user.email, name="tests")
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )


@pytest.fixture
async def browser(app, session, world) -> tuple[httpx.AsyncClient, str]:
    """The responder's browser, signed in (the session row the login form makes; the form itself
    is tested in test_pages.py), and the session's CSRF token."""
    cookie, signed_in = await accounts.start_session(session, user=world.user, days=1)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
        cookies={SESSION_COOKIE: cookie},
    )
    return client, signed_in.csrf_token


def names(text: str, field: str) -> bool:
    """The text names the field by one of its names ("a|b"), case aside."""
    return any(name.lower() in text.lower() for name in field.split("|"))


async def assert_refused_and_nothing_written(session, request, field: str) -> None:
    """A 400 or 422 as `{"detail", "code"}` whose short detail names the field (and echoes no
    5,000 digits), with every stored row as it was."""
    before = await stored(session)
    response = await request
    assert response.status_code in (400, 422), (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["code"], str) and body["code"], body
    assert names(body["detail"], field), body
    assert len(body["detail"]) < 300, body["detail"]
    assert await stored(session) == before


def cases(table: dict[str, tuple]) -> dict:
    """parametrize arguments from a table keyed by test id."""
    return {"argvalues": list(table.values()), "ids": list(table)}


# ---------------------------------------------------------------- text in JSON bodies

DECLARE = {"title": "Down", "severity": "SEV1"}
JSON_TEXT = {
    "declare-title": ("POST /incidents", {"title": "{x}", "severity": "SEV1"}, "title"),
    "declare-summary": ("POST /incidents", {**DECLARE, "summary": "{x}"}, "summary"),
    "declare-services": ("POST /incidents", {**DECLARE, "services": ["{x}"]}, "services"),
    "declare-severity": ("POST /incidents", {"title": "Down", "severity": "{x}"}, "severity"),
    # pydantic-core cannot read a key with a lone surrogate, and says so of the body
    "declare-unknown-field": ("POST /incidents", {**DECLARE, "{x}": 1}, "extra|body"),
    "severity-reason": ("POST /incidents/{ref}/severity", {"severity": "SEV2", "reason": "{x}"}, "reason"),
    "severity-severity": ("POST /incidents/{ref}/severity", {"severity": "{x}", "reason": "r"}, "severity"),
    "status-reason": ("POST /incidents/{ref}/status", {"status": "investigating", "reason": "{x}"}, "reason"),
    "status-status": ("POST /incidents/{ref}/status", {"status": "{x}"}, "status"),
    "role-email": ("PUT /incidents/{ref}/roles/scribe", {"email": "{x}"}, "email"),
    "sme-email": ("POST /incidents/{ref}/roles/sme", {"email": "a{x}@example.com"}, "email"),
    "timeline-body": ("POST /incidents/{ref}/timeline", {"body": "{x}"}, "body"),
    "timeline-kind": ("POST /incidents/{ref}/timeline", {"body": "ok", "kind": "{x}"}, "kind"),
    "timeline-client-key": (
        "POST /incidents/{ref}/timeline",
        {"body": "ok", "client_key": "{x}"},
        "client_key",
    ),
    "timeline-edit": ("PATCH /timeline/{entry}", {"body": "{x}"}, "body"),
    "timeline-redact": ("POST /timeline/{entry}/redact", {"reason": "{x}"}, "reason"),
    "update-body": ("POST /incidents/{ref}/updates", {"body": "{x}", "public": True}, "body"),
    "update-status": ("POST /incidents/{ref}/updates", {"body": "ok", "status": "{x}"}, "status"),
    "impact": ("PUT /incidents/{ref}/impacts/checkout", {"impact": "{x}"}, "impact"),
    "confirm-token": ("POST /action-runs/{run}/confirm", {"confirm_token": "{x}"}, "confirm_token"),
    "confirm-typed-name": (
        "POST /action-runs/{run}/confirm",
        {"confirm_token": "{token}", "typed_name": "{x}"},
        "typed_name",
    ),
}


@pytest.mark.parametrize("hostile", [SURROGATE, NUL], ids=["lone-surrogate", "nul"])
@pytest.mark.parametrize(("door", "body", "field"), **cases(JSON_TEXT))
async def test_text_postgresql_cannot_store_is_refused_naming_the_field(
    api, session, world, door, body, field, hostile
):
    method, path = door.split()
    # json.dumps escapes the surrogate as "\ud800", as a hostile client sends it.
    content = json.dumps(world.fill_json(body, hostile)).encode()
    request = api.request(method, API + world.fill(path), content=content)
    await assert_refused_and_nothing_written(session, request, field)


async def test_the_detail_says_which_field_and_what_is_wrong_with_it(api, world):
    answers = [
        await api.post(f"{API}/incidents", content=json.dumps({**DECLARE, "title": f"a{bad}"}).encode())
        for bad in (NUL, SURROGATE)
    ]

    assert [a.json() for a in answers] == [
        {"detail": "title: contains a NUL character", "code": "invalid_input"},
        {
            "detail": "title: contains a lone surrogate ('\\ud800'), which is not text",
            "code": "invalid_input",
        },
    ]


# ---------------------------------------------------------------- text in paths and queries

URL_TEXT = {
    "list-q": ("GET /incidents?q=a{x}", None, "q"),
    "list-service": ("GET /incidents?service=a{x}", None, "service"),
    "list-status": ("GET /incidents?status=a{x}", None, "status"),
    "list-severity": ("GET /incidents?severity=a{x}", None, "severity"),
    "incident-ref": ("GET /incidents/INC{x}", None, "ref"),
    "acknowledge-ref": ("POST /incidents/INC{x}/acknowledge", None, "ref"),
    "checklist-key": ("POST /incidents/{ref}/checklist/ic{x}", {"done": True}, "key"),
    "sme-email": ("DELETE /incidents/{ref}/roles/sme/a{x}@example.com", None, "email"),
    "role": ("DELETE /incidents/{ref}/roles/scribe{x}", None, "role"),
    "impact-component": ("PUT /incidents/{ref}/impacts/check{x}", {"impact": "down"}, "component"),
    "updates-ref": ("GET /incidents/INC{x}/updates", None, "ref"),
    "prepare-action": ("POST /incidents/{ref}/actions/log{x}/runs", None, "name"),
    "runs-incident": ("GET /action-runs?incident=INC{x}", None, "incident"),
    "runs-action": ("GET /action-runs?action=log{x}", None, "action"),
    "runs-state": ("GET /action-runs?state=run{x}", None, "state"),
}


@pytest.mark.parametrize(("door", "body", "field"), **cases(URL_TEXT))
async def test_a_nul_in_a_path_or_query_is_refused_naming_it(api, session, world, door, body, field):
    method, path = door.split()
    content = json.dumps(body).encode() if body else None
    request = api.request(method, API + world.fill(path, "%00"), content=content)
    await assert_refused_and_nothing_written(session, request, field)


@pytest.mark.parametrize("raw", ["%ED%A0%80", "%FF"], ids=["lone-surrogate-bytes", "not-utf8"])
@pytest.mark.parametrize(("door", "body", "field"), **cases(URL_TEXT))
async def test_bytes_that_are_not_utf8_in_a_path_or_query_find_nothing_and_write_nothing(
    api, session, world, door, body, field, raw
):
    # A URL is decoded as the URL standard says, each bad byte becoming U+FFFD: a search finds
    # nothing, a path names nothing that exists, and neither writes.
    method, path = door.split()
    before = await stored(session)
    content = json.dumps(body).encode() if body else None
    response = await api.request(method, API + world.fill(path, raw), content=content)

    assert response.status_code in (200, 404, 422), (response.status_code, response.text[:300])
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert set(response.json()) == {"detail", "code"}
    assert await stored(session) == before


PAGE_QUERIES = {
    "incidents-q": ("/incidents?q=a{x}", "q"),
    "incidents-service": ("/incidents?service=a{x}", "service"),
    "incident-ref": ("/incidents/INC{x}", "ref"),
    "runbooks-q": ("/runbooks?q=a{x}", "q"),
    "runbooks-tag": ("/runbooks?tag=a{x}", "tag"),
    "runbooks-service": ("/runbooks?service=a{x}", "service"),
    "runbook-key": ("/runbooks/RB{x}", "key"),
    "runbook-beside-incident": ("/runbooks/RB-001?incident=INC{x}", "incident"),
    "dashboard-service": ("/dashboard?service=a{x}", "service"),
    "action-runs-incident": ("/actions/runs?incident=INC{x}", "incident"),
}


@pytest.mark.parametrize(("path", "field"), **cases(PAGE_QUERIES))
async def test_a_nul_in_a_page_address_is_refused_naming_it(browser, world, path, field):
    client, _ = browser
    response = await client.get(world.fill(path, "%00"))

    assert response.status_code == 422, (response.status_code, response.text[:300])
    assert f"{field}: contains a NUL character" in response.text


# ---------------------------------------------------------------- numbers

RAW = HUGE.encode()
HUGE_NUMBERS = {
    "list-cursor": (f"GET /incidents?cursor={HUGE}", None, "cursor"),
    "list-limit": (f"GET /incidents?limit={HUGE}", None, "limit"),
    "list-active": (f"GET /incidents?active={HUGE}", None, "active"),
    "timeline-after": (f"GET /incidents/{{ref}}/timeline?after={HUGE}", None, "after"),
    "edit-entry-id": (f"PATCH /timeline/{HUGE}", b'{"body": "x"}', "entry_id"),
    "redact-entry-id": (f"POST /timeline/{HUGE}/redact", b'{"reason": "x"}', "entry_id"),
    "history-entry-id": (f"GET /timeline/{HUGE}/history", None, "entry_id"),
    "run-id": (f"GET /action-runs/{HUGE}", None, "run_id"),
    "confirm-run-id": (f"POST /action-runs/{HUGE}/confirm", b'{"confirm_token": "x"}', "run_id"),
    "json-title": ("POST /incidents", b'{"title": %s, "severity": "SEV1"}' % RAW, "body"),
    "json-done": ("POST /incidents/{ref}/checklist/ic-assigned", b'{"done": %s}' % RAW, "body"),
    "json-public": ("POST /incidents/{ref}/updates", b'{"body": "x", "public": %s}' % RAW, "body"),
    "json-occurred-at": ("POST /incidents/{ref}/timeline", b'{"body": "x", "occurred_at": %s}' % RAW, "body"),
    "json-negative": ("PATCH /timeline/{entry}", b'{"body": -%s}' % RAW, "body"),
}


@pytest.mark.parametrize(("door", "content", "field"), **cases(HUGE_NUMBERS))
async def test_a_5000_digit_integer_is_refused_without_echoing_it(api, session, world, door, content, field):
    method, path = door.split()
    request = api.request(method, API + world.fill(path), content=content)
    await assert_refused_and_nothing_written(session, request, field)


async def test_a_5000_digit_integer_in_a_page_address_is_refused(browser, session, world):
    client, csrf = browser
    for path in (f"/timeline/{HUGE}", f"/action-runs/{HUGE}", f"/dashboard?days={HUGE}"):
        response = await client.get(path)
        assert response.status_code == 422, (path, response.text[:300])
        assert "9" * 80 not in response.text
    before = await stored(session)
    response = await client.post(f"/timeline/{HUGE}/edit", data={"csrf_token": csrf, "body": "x"})
    assert response.status_code == 422
    assert "entry_id" in response.text
    assert await stored(session) == before


# ---------------------------------------------------------------- times

BAD_TIMES = {
    "offset-99-hours": "2026-11-23T13:00:00+99:00",
    "hour-24": "2026-11-23T24:00:00Z",
    "year-0": "0000-11-23T13:00:00Z",
    "year-10000": "10000-11-23T13:00:00Z",
    "year-10000-in-utc": "9999-12-31T23:59:59-23:59",
    "year-0-in-utc": "0001-01-01T00:00:00+01:00",
    "no-offset": "2026-11-23T13:00:00",
}


@pytest.mark.parametrize("when", list(BAD_TIMES.values()), ids=list(BAD_TIMES))
async def test_an_impossible_occurred_at_is_refused_naming_it(api, session, world, when):
    body = json.dumps({"body": "back-dated", "occurred_at": when}).encode()
    request = api.post(f"{API}/incidents/{world.ref}/timeline", content=body)
    await assert_refused_and_nothing_written(session, request, "occurred_at")


# ---------------------------------------------------------------- bodies

JSON_DOORS = {
    "declare": "POST /incidents",
    "severity": "POST /incidents/{ref}/severity",
    "status": "POST /incidents/{ref}/status",
    "role": "PUT /incidents/{ref}/roles/scribe",
    "sme": "POST /incidents/{ref}/roles/sme",
    "checklist": "POST /incidents/{ref}/checklist/ic-assigned",
    "timeline": "POST /incidents/{ref}/timeline",
    "timeline-edit": "PATCH /timeline/{entry}",
    "timeline-redact": "POST /timeline/{entry}/redact",
    "update": "POST /incidents/{ref}/updates",
    "impact": "PUT /incidents/{ref}/impacts/checkout",
    "confirm": "POST /action-runs/{run}/confirm",
}
BAD_BODIES = {
    "arrays-1000-deep": b"[" * DEEP + b"]" * DEEP,
    "objects-1000-deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "arrays-500-deep": b"[" * 500 + b"]" * 500,
    "array": b"[]",
    "string": b'"text"',
    "number": b"7",
    "null": b"null",
    "not-utf8": b'{"title": "\xff"}',
    "truncated": b'{"title": "x"',
}


@pytest.mark.parametrize("content", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
@pytest.mark.parametrize("door", list(JSON_DOORS.values()), ids=list(JSON_DOORS))
async def test_a_body_that_is_not_a_json_object_is_refused_naming_the_body(
    api, session, world, door, content
):
    method, path = door.split()
    request = api.request(method, API + world.fill(path), content=content)
    await assert_refused_and_nothing_written(session, request, "body")


# ---------------------------------------------------------------- page forms

PAGE_FORMS = {
    "declare-title": ("/incidents", {"title": "{x}", "severity": "SEV1"}, "title"),
    "declare-summary": ("/incidents", {**DECLARE, "summary": "{x}"}, "summary"),
    "declare-services": ("/incidents", {**DECLARE, "services": "{x}"}, "service"),
    "declare-severity": ("/incidents", {"title": "Down", "severity": "{x}"}, "severity"),
    "declare-client-key": ("/incidents", {**DECLARE, "client_key": "{x}"}, "client_key"),
    "severity-reason": ("/incidents/{ref}/severity", {"severity": "SEV2", "reason": "{x}"}, "reason"),
    "status-reason": ("/incidents/{ref}/status", {"status": "investigating", "reason": "{x}"}, "reason"),
    "role-email": ("/incidents/{ref}/roles/scribe", {"email": "{x}"}, "email"),
    "role-clear-email": ("/incidents/{ref}/roles/sme/clear", {"email": "a{x}@example.com"}, "email"),
    "checklist-done": ("/incidents/{ref}/checklist/ic-assigned", {"done": "{x}"}, "done"),
    # the page calls the field by its label, the refusal of its bytes by its name
    "timeline-body": ("/incidents/{ref}/timeline", {"body": "{x}"}, "entry|body"),
    "timeline-kind": ("/incidents/{ref}/timeline", {"body": "ok", "kind": "{x}"}, "kind"),
    "timeline-at": ("/incidents/{ref}/timeline", {"body": "ok", "at": "1{x}"}, "at"),
    "timeline-tz": ("/incidents/{ref}/timeline", {"body": "ok", "tz": "Europe/{x}"}, "tz"),
    "timeline-client-key": ("/incidents/{ref}/timeline", {"body": "ok", "client_key": "{x}"}, "client_key"),
    "timeline-edit": ("/timeline/{entry}/edit", {"body": "{x}"}, "entry|body"),
    "timeline-redact": ("/timeline/{entry}/redact", {"reason": "{x}"}, "reason"),
    "update-body": ("/incidents/{ref}/updates", {"body": "{x}", "audience": "public"}, "update|body"),
    "update-audience": ("/incidents/{ref}/updates", {"body": "ok", "audience": "{x}"}, "audience"),
    "update-status": ("/incidents/{ref}/updates", {"body": "ok", "status": "{x}"}, "status"),
    "public-title": ("/incidents/{ref}/public-title", {"public_title": "{x}"}, "public title|public_title"),
    "impact-component": ("/incidents/{ref}/impacts", {"component": "{x}", "impact": "down"}, "component"),
    "impact-impact": ("/incidents/{ref}/impacts", {"component": "checkout", "impact": "{x}"}, "impact"),
    "confirm-token": ("/action-runs/{run}/confirm", {"confirm_token": "{x}"}, "confirm_token"),
    "confirm-typed-name": (
        "/action-runs/{run}/confirm",
        {"confirm_token": "{token}", "typed_name": "{x}"},
        "typed_name",
    ),
}
FORM_BYTES = {"nul": "%00", "lone-surrogate-bytes": "%ED%A0%80", "not-utf8": "%FF"}


def form_body(world: World, csrf: str, fields: dict[str, str], raw: str) -> bytes:
    """A urlencoded form with `{x}` replaced by raw bytes, already percent-encoded."""
    pairs = [("csrf_token", csrf), *((k, world.fill(v, "{x}")) for k, v in fields.items())]
    return "&".join(f"{quote(k)}={quote(v, safe='{}')}".replace("{x}", raw) for k, v in pairs).encode()


@pytest.mark.parametrize("raw", list(FORM_BYTES.values()), ids=list(FORM_BYTES))
@pytest.mark.parametrize(("path", "fields", "field"), **cases(PAGE_FORMS))
async def test_a_page_form_refuses_a_field_it_cannot_store_and_says_which(
    browser, session, world, path, fields, field, raw
):
    client, csrf = browser
    before = await stored(session)
    response = await client.post(world.fill(path), content=form_body(world, csrf, fields, raw), headers=FORM)

    assert response.status_code in (400, 422), (response.status_code, response.text[:500])
    assert names(response.text, field), response.text[-1500:]
    assert await stored(session) == before


@pytest.mark.parametrize("raw", list(FORM_BYTES.values()), ids=list(FORM_BYTES))
async def test_the_scribe_box_refuses_bytes_it_cannot_store_and_keeps_what_was_typed(
    browser, session, world, raw
):
    client, csrf = browser
    before = await stored(session)
    response = await client.post(
        f"/incidents/{world.ref}/timeline",
        content=form_body(world, csrf, {"body": "{x}"}, raw),
        headers={**FORM, "HX-Request": "true"},
    )

    assert response.status_code in (400, 422), response.text[:500]
    # a message beside the box or in the flash area; the box itself is not swapped
    assert response.headers["HX-Retarget"] in ("#icc-entry-error", "#icc-flash")
    assert names(response.text, "entry|body")
    assert await stored(session) == before
