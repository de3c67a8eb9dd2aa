"""The JSON API under /api/v1, as a client sees it: status codes, `{detail, code}` errors,
and the state read back with GET."""

import uuid
from datetime import datetime

import httpx
import pytest

from app.auth import service as accounts
from tests.conftest import PASSWORD, sign_in

API = "/api/v1"
JSON = {"content-type": "application/json"}
MIB = 1024 * 1024
INT4_MAX = 2**31 - 1


# ---------------------------------------------------------------- helpers


@pytest.fixture
def make_user(session):
    """conftest's make_user without a password: API tokens work without one, and skipping the
    password hash keeps this file fast. (The sign-in test below makes its own user.)"""

    async def make(role: str = "responder", name: str | None = None, email: str | None = None):
        suffix = uuid.uuid4().hex[:6]
        return await accounts.create_user(
            session,
            email=email or f"{role}-{suffix}@example.com",
            name=name or f"{role.title()} {suffix}",
            role=role,
        )

    return make


@pytest.fixture
def call_as(app, api_as):
    """`await call_as(user)`: like api_as, but a server error comes back as the 500 response a
    client would see instead of being raised into the test."""

    async def make(user) -> httpx.AsyncClient:
        signed = await api_as(user)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://test",
            headers=signed.headers,
        )

    return make


@pytest.fixture
def anonymous(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test"
    )


@pytest.fixture
async def api(call_as, responder, frozen_clock) -> httpx.AsyncClient:
    """The responder's client, at a frozen Monday 14:00 UTC."""
    return await call_as(responder)


async def declare(api: httpx.AsyncClient, title: str = "Checkout returns 502", **fields) -> dict:
    response = await api.post(f"{API}/incidents", json={"title": title, "severity": "SEV1", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, code: str, *, mentions: str = "") -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail", "code"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["code"] == code, body
    assert mentions in body["detail"], body
    return body


def at(value: str) -> datetime:
    """An ISO 8601 time from a response; it must carry an offset."""
    parsed = datetime.fromisoformat(value)
    assert parsed.tzinfo is not None, f"{value!r} has no offset"
    return parsed


def every_time_in(document, key: str = "") -> list[str]:
    """Every string value under a key that names a time (…_at), anywhere in a JSON document."""
    found = []
    if isinstance(document, dict):
        for k, v in document.items():
            found += every_time_in(v, k)
    elif isinstance(document, list):
        for v in document:
            found += every_time_in(v, key)
    elif isinstance(document, str) and (key.endswith("_at") or key == "at"):
        found.append(document)
    return found


def person(user) -> dict:
    return {"email": user.email, "name": user.name}


async def timeline(api: httpx.AsyncClient, ref: str, **params) -> list[dict]:
    response = await api.get(f"{API}/incidents/{ref}/timeline", params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


# ---------------------------------------------------------------- severities


async def test_it_lists_the_four_severities_with_their_slas_in_seconds(api):
    response = await api.get(f"{API}/severities")

    assert response.status_code == 200
    by_key = {s["key"]: s for s in response.json()}
    assert list(by_key) == ["SEV1", "SEV2", "SEV3", "SEV4"]
    numbers = {
        key: (s["ack_sla_seconds"], s["mitigation_sla_seconds"], s["update_cadence_seconds"])
        for key, s in by_key.items()
        if key != "SEV4"
    }
    assert numbers == {
        "SEV1": (5 * 60, 60 * 60, 15 * 60),
        "SEV2": (10 * 60, 2 * 3600, 30 * 60),
        "SEV3": (30 * 60, 8 * 3600, 2 * 3600),
    }
    sev4 = by_key["SEV4"]
    assert sev4["ack_business_days"] == 1
    assert sev4["mitigation_sla_seconds"] is None
    assert sev4["update_cadence_seconds"] is None
    assert all(by_key[k]["ack_business_days"] is None for k in ("SEV1", "SEV2", "SEV3"))
    assert all(s["label"] and s["description"] for s in by_key.values())


async def test_the_severities_need_a_signed_in_client(anonymous):
    assert_error(await anonymous.get(f"{API}/severities"), 401, "not_authenticated")


# ---------------------------------------------------------------- declaring


async def test_it_declares_an_incident_in_triage_with_a_reference_timers_checklist_and_no_roles(
    api, frozen_clock
):
    response = await api.post(
        f"{API}/incidents",
        json={
            "title": "Checkout returns 502",
            "severity": "SEV1",
            "summary": "Every card payment fails.",
            "services": ["Checkout", "payments"],
        },
    )

    assert response.status_code == 201, response.text
    incident = response.json()
    assert incident["ref"] == "INC-20261123-01"
    assert incident["title"] == "Checkout returns 502"
    assert incident["summary"] == "Every card payment fails."
    assert incident["severity"] == "SEV1"
    assert incident["status"] == "triage"
    assert incident["services"] == ["checkout", "payments"]
    assert at(incident["declared_at"]) == frozen_clock.now
    assert incident["acknowledged_at"] is None
    assert incident["mitigated_at"] is None
    assert incident["resolved_at"] is None
    assert incident["roles"] == {
        "incident_commander": None,
        "comms_lead": None,
        "tech_lead": None,
        "scribe": None,
        "sme": [],
    }
    timers = incident["timers"]
    assert at(timers["ack"]["due_at"]) == at("2026-11-23T14:05:00+00:00")
    assert at(timers["mitigation"]["due_at"]) == at("2026-11-23T15:00:00+00:00")
    assert at(timers["next_update"]["due_at"]) == at("2026-11-23T14:15:00+00:00")
    assert {t["state"] for t in timers.values()} == {"running"}
    assert all(t["met_at"] is None for t in timers.values())
    checklist = incident["checklist"]
    assert len(checklist) >= 3
    assert {"ic-assigned", "status-page"} <= {item["key"] for item in checklist}
    assert all(not item["done"] and item["done_by"] is None and item["done_at"] is None for item in checklist)

    read_back = await api.get(f"{API}/incidents/{incident['ref']}")
    assert read_back.status_code == 200
    assert read_back.json() == incident


async def test_references_count_up_within_the_utc_day(api):
    refs = [(await declare(api, f"Incident {n}"))["ref"] for n in range(3)]

    assert refs == ["INC-20261123-01", "INC-20261123-02", "INC-20261123-03"]


async def test_a_sev4_incident_is_acknowledged_within_one_business_day_and_has_no_other_timers(
    api, frozen_clock
):
    frozen_clock.now = datetime.fromisoformat("2026-11-27T16:00:00+00:00")  # a Friday

    incident = await declare(api, "Typo on the pricing page", severity="SEV4")

    assert at(incident["timers"]["ack"]["due_at"]) == at("2026-11-30T16:00:00+00:00")  # Monday
    assert incident["timers"]["mitigation"] is None
    assert incident["timers"]["next_update"] is None


BAD_DECLARATIONS = [
    ({"title": "", "severity": "SEV1"}, "Title is required"),
    ({"title": "   ", "severity": "SEV1"}, "Title is required"),
    ({"title": "x" * 201, "severity": "SEV1"}, "title: String should have at most 200 characters"),
    ({"title": "Outage", "severity": "SEV9"}, "SEV1, SEV2, SEV3, SEV4"),
    ({"title": "Outage", "severity": "SEV1", "impact": "high"}, "impact"),
    ({"title": 5, "severity": "SEV1"}, "title"),
    ({"title": "Outage", "severity": "SEV1", "services": "checkout"}, "services"),
    ({"title": "Outage", "severity": "SEV1", "services": [1]}, "services"),
    ({"title": "Outage", "severity": "SEV1", "services": ["no!such?service"]}, "not a valid name"),
    ({"title": "Outage", "severity": "SEV1", "summary": "x" * 10_001}, "summary: String should have at most"),
    ({"severity": "SEV1"}, "title"),
]


async def test_declaring_with_bad_input_is_refused_with_422_and_writes_nothing(api):
    for body, mentions in BAD_DECLARATIONS:
        response = await api.post(f"{API}/incidents", json=body)

        assert response.status_code == 422, (body, response.text)
        assert_error(response, 422, "invalid_input", mentions=mentions)
    assert (await api.get(f"{API}/incidents")).json()["items"] == []


async def test_declaring_without_a_token_is_refused_with_401(anonymous, api):
    response = await anonymous.post(f"{API}/incidents", json={"title": "Outage", "severity": "SEV1"})

    assert_error(response, 401, "not_authenticated")
    assert (await api.get(f"{API}/incidents")).json()["items"] == []


async def test_a_bad_bearer_token_is_refused_with_401(app, api):
    bad = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://test",
        headers={"Authorization": "Bearer icc_not-a-real-token"},
    )

    assert_error(
        await bad.post(f"{API}/incidents", json={"title": "Outage", "severity": "SEV1"}),
        401,
        "not_authenticated",
        mentions="token",
    )
    assert_error(await bad.get(f"{API}/incidents"), 401, "not_authenticated")
    assert (await api.get(f"{API}/incidents")).json()["items"] == []


async def test_a_viewer_cannot_declare_an_incident(call_as, viewer, api):
    as_viewer = await call_as(viewer)

    response = await as_viewer.post(f"{API}/incidents", json={"title": "Outage", "severity": "SEV1"})

    assert_error(response, 403, "not_permitted")
    assert (await api.get(f"{API}/incidents")).json()["items"] == []


async def test_a_body_over_1_mib_is_refused_with_413_and_writes_nothing(api):
    body = b'{"title": "' + b"x" * MIB + b'", "severity": "SEV1"}'

    response = await api.post(f"{API}/incidents", content=body, headers=JSON)

    assert_error(response, 413, "too_large")
    assert (await api.get(f"{API}/incidents")).json()["items"] == []


async def test_a_chunked_body_over_1_mib_is_refused_with_413_too(api):
    async def chunks():
        yield b'{"title": "'
        for _ in range(4):
            yield b"x" * (MIB // 2)
        yield b'", "severity": "SEV1"}'

    response = await api.post(f"{API}/incidents", content=chunks(), headers=JSON)

    assert_error(response, 413, "too_large")


# ---------------------------------------------------------------- listing


@pytest.fixture
async def five_incidents(api, call_as, responder) -> dict[str, str]:
    """Five incidents, declared in this order; returns name → ref."""
    refs = {
        "checkout": (await declare(api, "Checkout returns 502", services=["checkout", "payments"]))["ref"],
        "search": (await declare(api, "Search is slow", severity="SEV3", services=["search"]))["ref"],
        "typo": (
            await declare(
                api, "Typo on the pricing page", severity="SEV4", summary="It says montly", services=["web"]
            )
        )["ref"],
        "login": (await declare(api, "Login fails for SSO users", severity="SEV2", services=["auth"]))["ref"],
        "disk": (await declare(api, "Disk full on db-3", severity="SEV2", services=["db"]))["ref"],
    }
    moved = await api.post(f"{API}/incidents/{refs['login']}/status", json={"status": "investigating"})
    assert moved.status_code == 200, moved.text
    took = await api.put(
        f"{API}/incidents/{refs['disk']}/roles/incident_commander", json={"email": responder.email}
    )
    assert took.status_code == 200, took.text
    resolved = await api.post(f"{API}/incidents/{refs['disk']}/status", json={"status": "resolved"})
    assert resolved.status_code == 200, resolved.text
    return refs


async def listed(api: httpx.AsyncClient, **params) -> list[str]:
    response = await api.get(f"{API}/incidents", params=params)
    assert response.status_code == 200, response.text
    return [item["ref"] for item in response.json()["items"]]


async def test_it_lists_incidents_newest_first_with_their_summary_fields(api, five_incidents, responder):
    response = await api.get(f"{API}/incidents")

    assert response.status_code == 200
    page = response.json()
    assert page["next_cursor"] is None
    names = ["disk", "login", "typo", "search", "checkout"]
    assert [item["ref"] for item in page["items"]] == [five_incidents[n] for n in names]
    disk = page["items"][0]
    assert disk["status"] == "resolved"
    assert disk["incident_commander"] == person(responder)
    assert disk["timers"]["next_update"] is None
    assert page["items"][1]["incident_commander"] is None
    assert set(disk) >= {"ref", "title", "severity", "status", "services", "declared_at", "timers"}


async def test_it_filters_incidents_by_status_severity_and_whether_they_are_active(api, five_incidents):
    refs = five_incidents

    assert await listed(api, status="investigating") == [refs["login"]]
    assert await listed(api, status="resolved") == [refs["disk"]]
    assert await listed(api, severity="SEV2") == [refs["disk"], refs["login"]]
    assert await listed(api, severity="sev2") == [refs["disk"], refs["login"]]
    assert await listed(api, active="true") == [refs[n] for n in ("login", "typo", "search", "checkout")]
    assert await listed(api, active="false") == [refs["disk"]]
    assert await listed(api, active="true", severity="SEV2") == [refs["login"]]


async def test_it_filters_incidents_by_affected_service(api, five_incidents):
    assert await listed(api, service="checkout") == [five_incidents["checkout"]]
    assert await listed(api, service="payments") == [five_incidents["checkout"]]
    assert await listed(api, service=" CHECKOUT ") == [five_incidents["checkout"]]
    assert await listed(api, service="nothing-here") == []


async def test_it_finds_incidents_by_text_in_the_title_summary_or_reference(api, five_incidents):
    refs = five_incidents

    assert await listed(api, q="slow") == [refs["search"]]
    assert await listed(api, q="MONTLY") == [refs["typo"]]
    assert await listed(api, q=refs["disk"]) == [refs["disk"]]
    assert await listed(api, q="100%") == []


async def test_the_cursor_walks_every_incident_once_two_at_a_time(api):
    declared = [(await declare(api, f"Incident {n}"))["ref"] for n in range(5)]

    seen, pages, cursor = [], [], None
    while True:
        params = {"limit": 2} if cursor is None else {"limit": 2, "cursor": cursor}
        response = await api.get(f"{API}/incidents", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(len(page["items"]))
        seen += [item["ref"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10

    assert pages == [2, 2, 1]
    assert seen == list(reversed(declared))
    assert len(set(seen)) == 5


async def test_listing_with_a_bad_filter_is_refused_with_422(api):
    for params, mentions in [
        ({"status": "sleeping"}, "sleeping"),
        ({"active": "perhaps"}, "active"),
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"cursor": "abc"}, "cursor"),
    ]:
        response = await api.get(f"{API}/incidents", params=params)

        assert response.status_code == 422, (params, response.text)
        assert_error(response, 422, "invalid_input", mentions=mentions)


async def test_a_viewer_can_list_and_read_incidents(api, call_as, viewer):
    incident = await declare(api)
    as_viewer = await call_as(viewer)

    assert [i["ref"] for i in (await as_viewer.get(f"{API}/incidents")).json()["items"]] == [incident["ref"]]
    assert (await as_viewer.get(f"{API}/incidents/{incident['ref']}")).json() == incident
    assert (await as_viewer.get(f"{API}/incidents/{incident['ref']}/timeline")).status_code == 200
    assert (await as_viewer.get(f"{API}/severities")).status_code == 200


# ---------------------------------------------------------------- one incident


async def test_reading_an_unknown_incident_is_a_404(api):
    assert_error(
        await api.get(f"{API}/incidents/INC-20261123-99"), 404, "not_found", mentions="INC-20261123-99"
    )


async def test_an_unknown_api_address_is_a_json_404_and_a_wrong_method_a_json_405(api):
    assert_error(await api.get(f"{API}/nothing-here"), 404, "not_found")
    assert_error(await api.patch(f"{API}/severities"), 405, "method_not_allowed")


async def test_acknowledging_stops_the_ack_timer_and_a_second_acknowledgement_is_a_conflict(
    api, frozen_clock
):
    ref = (await declare(api))["ref"]
    frozen_clock.advance(minutes=3)

    first = await api.post(f"{API}/incidents/{ref}/acknowledge")

    assert first.status_code == 200, first.text
    incident = first.json()
    assert at(incident["acknowledged_at"]) == frozen_clock.now
    assert incident["timers"]["ack"]["state"] == "met"
    assert at(incident["timers"]["ack"]["met_at"]) == frozen_clock.now
    assert incident["timers"]["mitigation"]["state"] == "running"
    assert_error(await api.post(f"{API}/incidents/{ref}/acknowledge"), 409, "conflict", mentions=ref)
    read_back = (await api.get(f"{API}/incidents/{ref}")).json()
    assert at(read_back["acknowledged_at"]) == frozen_clock.now
    assert [e["kind"] for e in await timeline(api, ref)] == ["declared", "acknowledged"]


async def test_acknowledging_an_unknown_incident_is_a_404(api):
    assert_error(await api.post(f"{API}/incidents/INC-20261123-99/acknowledge"), 404, "not_found")


async def test_changing_severity_needs_a_reason_and_restarts_the_running_timers(api, frozen_clock):
    ref = (await declare(api))["ref"]
    frozen_clock.advance(minutes=10)

    assert_error(
        await api.post(f"{API}/incidents/{ref}/severity", json={"severity": "SEV2"}),
        422,
        "invalid_input",
        mentions="reason",
    )
    assert_error(
        await api.post(f"{API}/incidents/{ref}/severity", json={"severity": "SEV2", "reason": "  "}),
        422,
        "invalid_input",
    )
    assert_error(
        await api.post(f"{API}/incidents/{ref}/severity", json={"severity": "SEV7", "reason": "why not"}),
        422,
        "invalid_input",
        mentions="SEV1, SEV2, SEV3, SEV4",
    )
    assert (await api.get(f"{API}/incidents/{ref}")).json()["severity"] == "SEV1"

    changed = await api.post(
        f"{API}/incidents/{ref}/severity", json={"severity": "SEV2", "reason": "Only EU customers"}
    )

    assert changed.status_code == 200, changed.text
    incident = changed.json()
    assert incident["severity"] == "SEV2"
    assert at(incident["timers"]["ack"]["due_at"]) == at("2026-11-23T14:20:00+00:00")
    assert at(incident["timers"]["mitigation"]["due_at"]) == at("2026-11-23T16:10:00+00:00")
    assert (await api.get(f"{API}/incidents/{ref}")).json()["severity"] == "SEV2"
    last = (await timeline(api, ref))[-1]
    assert last["kind"] == "severity"
    assert "Only EU customers" in last["body"]

    assert_error(
        await api.post(f"{API}/incidents/{ref}/severity", json={"severity": "SEV2", "reason": "again"}),
        409,
        "conflict",
    )


async def test_status_moves_forward_and_an_invalid_move_is_a_409_saying_what_is_allowed(api):
    ref = (await declare(api))["ref"]

    moved = await api.post(
        f"{API}/incidents/{ref}/status", json={"status": "investigating", "reason": "on it"}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "investigating"
    skipped = await api.post(f"{API}/incidents/{ref}/status", json={"status": "monitoring"})
    assert skipped.status_code == 200, skipped.text
    assert skipped.json()["mitigated_at"] is not None
    back = await api.post(f"{API}/incidents/{ref}/status", json={"status": "investigating"})
    assert back.status_code == 200, back.text
    assert back.json()["mitigated_at"] is None

    body = assert_error(
        await api.post(f"{API}/incidents/{ref}/status", json={"status": "triage"}),
        409,
        "invalid_transition",
        mentions="identified, monitoring, resolved",
    )
    assert "triage" in body["detail"]
    assert_error(
        await api.post(f"{API}/incidents/{ref}/status", json={"status": "investigating"}),
        409,
        "invalid_transition",
    )
    assert_error(
        await api.post(f"{API}/incidents/{ref}/status", json={"status": "asleep"}),
        422,
        "invalid_input",
        mentions="asleep",
    )
    assert (await api.get(f"{API}/incidents/{ref}")).json()["status"] == "investigating"


async def test_only_the_incident_commander_can_resolve_admins_included(
    api, call_as, responder, admin, make_user, frozen_clock
):
    ref = (await declare(api))["ref"]
    as_admin = await call_as(admin)

    assert_error(
        await api.post(f"{API}/incidents/{ref}/status", json={"status": "resolved"}),
        403,
        "not_permitted",
        mentions="Incident Commander",
    )
    other = await make_user("responder")
    assert (
        await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": other.email})
    ).status_code == 200
    assert_error(
        await as_admin.post(f"{API}/incidents/{ref}/status", json={"status": "resolved"}),
        403,
        "not_permitted",
    )
    assert (await api.get(f"{API}/incidents/{ref}")).json()["resolved_at"] is None

    handed = await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": responder.email})
    assert handed.status_code == 200
    frozen_clock.advance(minutes=30)
    resolved = await api.post(
        f"{API}/incidents/{ref}/status", json={"status": "resolved", "reason": "Rolled back"}
    )

    assert resolved.status_code == 200, resolved.text
    incident = resolved.json()
    assert incident["status"] == "resolved"
    assert at(incident["resolved_at"]) == frozen_clock.now
    assert at(incident["mitigated_at"]) == frozen_clock.now
    assert incident["timers"]["next_update"] is None
    assert incident["timers"]["mitigation"]["state"] == "met"
    read_back = (await api.get(f"{API}/incidents/{ref}")).json()
    assert read_back["status"] == "resolved"
    assert at(read_back["resolved_at"]) == frozen_clock.now

    reopened = await api.post(f"{API}/incidents/{ref}/status", json={"status": "investigating"})
    assert reopened.status_code == 200, reopened.text
    assert reopened.json()["resolved_at"] is None


# ---------------------------------------------------------------- roles


async def test_assigning_a_role_then_another_person_is_a_handover(api, responder, make_user):
    ref = (await declare(api))["ref"]
    tess = await make_user("responder", name="Tess Tech")

    first = await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": responder.email})
    assert first.status_code == 200, first.text
    assert first.json()["roles"]["incident_commander"] == person(responder)

    handover = await api.put(
        f"{API}/incidents/{ref}/roles/incident_commander", json={"email": tess.email.upper()}
    )

    assert handover.status_code == 200, handover.text
    assert handover.json()["roles"]["incident_commander"] == person(tess)
    assert (await api.get(f"{API}/incidents/{ref}")).json()["roles"]["incident_commander"] == person(tess)
    last = (await timeline(api, ref))[-1]
    assert last["kind"] == "role"
    assert "handed over" in last["body"] and responder.name in last["body"] and tess.name in last["body"]
    assert_error(
        await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": tess.email}),
        409,
        "conflict",
    )

    for role in ("comms_lead", "tech_lead", "scribe"):
        assigned = await api.put(f"{API}/incidents/{ref}/roles/{role}", json={"email": responder.email})
        assert assigned.status_code == 200, assigned.text
        assert assigned.json()["roles"][role] == person(responder)


async def test_clearing_a_role_leaves_it_empty_and_clearing_it_again_is_a_404(api, responder):
    ref = (await declare(api))["ref"]
    await api.put(f"{API}/incidents/{ref}/roles/scribe", json={"email": responder.email})

    cleared = await api.delete(f"{API}/incidents/{ref}/roles/scribe")

    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["roles"]["scribe"] is None
    assert (await api.get(f"{API}/incidents/{ref}")).json()["roles"]["scribe"] is None
    assert_error(await api.delete(f"{API}/incidents/{ref}/roles/scribe"), 404, "not_found")


async def test_several_smes_can_join_and_leave(api, make_user):
    ref = (await declare(api))["ref"]
    dana = await make_user("responder", name="Dana DBA")
    nico = await make_user("viewer", name="Nico Network")

    assert (await api.post(f"{API}/incidents/{ref}/roles/sme", json={"email": dana.email})).status_code == 200
    both = await api.post(f"{API}/incidents/{ref}/roles/sme", json={"email": nico.email})

    assert both.status_code == 200, both.text
    assert both.json()["roles"]["sme"] == [person(dana), person(nico)]
    assert_error(
        await api.post(f"{API}/incidents/{ref}/roles/sme", json={"email": dana.email}), 409, "conflict"
    )

    left = await api.delete(f"{API}/incidents/{ref}/roles/sme/{dana.email}")

    assert left.status_code == 200, left.text
    assert left.json()["roles"]["sme"] == [person(nico)]
    assert (await api.get(f"{API}/incidents/{ref}")).json()["roles"]["sme"] == [person(nico)]
    assert_error(await api.delete(f"{API}/incidents/{ref}/roles/sme/{dana.email}"), 404, "not_found")


async def test_an_unknown_role_is_a_404_and_an_unknown_person_a_422(api, responder):
    ref = (await declare(api))["ref"]

    assert_error(
        await api.put(f"{API}/incidents/{ref}/roles/wizard", json={"email": responder.email}),
        404,
        "not_found",
        mentions="wizard",
    )
    assert_error(await api.delete(f"{API}/incidents/{ref}/roles/wizard"), 404, "not_found")
    assert_error(
        await api.put(f"{API}/incidents/{ref}/roles/scribe", json={"email": "nobody@example.com"}),
        422,
        "invalid_input",
        mentions="nobody@example.com",
    )
    assert_error(
        await api.post(f"{API}/incidents/{ref}/roles/sme", json={"email": "nobody@example.com"}),
        422,
        "invalid_input",
    )
    assert_error(
        await api.delete(f"{API}/incidents/{ref}/roles/sme/nobody@example.com"), 422, "invalid_input"
    )
    assert_error(
        await api.put(f"{API}/incidents/INC-20261123-99/roles/scribe", json={"email": responder.email}),
        404,
        "not_found",
    )
    roles = (await api.get(f"{API}/incidents/{ref}")).json()["roles"]
    assert roles["scribe"] is None and roles["sme"] == []


# ---------------------------------------------------------------- checklist


async def test_ticking_a_checklist_item_records_who_and_when(api, responder, frozen_clock):
    ref = (await declare(api))["ref"]
    frozen_clock.advance(minutes=2)

    ticked = await api.post(f"{API}/incidents/{ref}/checklist/ic-assigned", json={"done": True})

    assert ticked.status_code == 200, ticked.text
    item = next(i for i in ticked.json()["checklist"] if i["key"] == "ic-assigned")
    assert item["done"] is True
    assert item["done_by"] == person(responder)
    assert at(item["done_at"]) == frozen_clock.now
    read_back = (await api.get(f"{API}/incidents/{ref}")).json()["checklist"]
    assert [i["key"] for i in read_back if i["done"]] == ["ic-assigned"]

    unticked = await api.post(f"{API}/incidents/{ref}/checklist/ic-assigned", json={"done": False})
    assert unticked.status_code == 200
    item = next(i for i in unticked.json()["checklist"] if i["key"] == "ic-assigned")
    assert (item["done"], item["done_by"], item["done_at"]) == (False, None, None)


async def test_an_unknown_checklist_item_is_a_404(api):
    ref = (await declare(api))["ref"]

    assert_error(
        await api.post(f"{API}/incidents/{ref}/checklist/feed-the-cat", json={"done": True}),
        404,
        "not_found",
        mentions="feed-the-cat",
    )
    assert_error(
        await api.post(f"{API}/incidents/{ref}/checklist/ic-assigned", json={"done": "maybe"}),
        422,
        "invalid_input",
    )


# ---------------------------------------------------------------- timeline


async def test_logging_an_entry_returns_it_with_author_times_and_revision(api, responder, frozen_clock):
    ref = (await declare(api))["ref"]
    frozen_clock.advance(minutes=5)

    response = await api.post(
        f"{API}/incidents/{ref}/timeline", json={"kind": "decision", "body": "Roll back to 4.1"}
    )

    assert response.status_code == 201, response.text
    entry = response.json()
    assert set(entry) >= {"id", "kind", "body", "author", "occurred_at", "recorded_at", "revision"}
    assert entry["kind"] == "decision"
    assert entry["body"] == "Roll back to 4.1"
    assert entry["author"] == person(responder)
    assert at(entry["occurred_at"]) == at(entry["recorded_at"]) == frozen_clock.now
    assert entry["revision"] == 1
    assert entry.get("redacted") is None
    assert (await timeline(api, ref))[-1] == entry

    default = await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "Paged the DBA"})
    assert default.status_code == 201
    assert default.json()["kind"] == "note"


async def test_a_back_dated_entry_is_ordered_by_when_it_happened(api, frozen_clock):
    ref = (await declare(api))["ref"]
    frozen_clock.advance(minutes=20)
    later = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "Paged the DBA"})).json()

    response = await api.post(
        f"{API}/incidents/{ref}/timeline",
        json={"kind": "action", "body": "Deployed 4.2", "occurred_at": "2026-11-23T15:30:00+02:00"},
    )

    assert response.status_code == 201, response.text
    backdated = response.json()
    assert at(backdated["occurred_at"]) == at("2026-11-23T13:30:00+00:00")
    assert at(backdated["recorded_at"]) == frozen_clock.now
    entries = await timeline(api, ref)
    assert entries[0]["id"] == backdated["id"]
    assert [e["kind"] for e in entries] == ["action", "declared", "note"]
    assert entries[-1]["id"] == later["id"]


async def test_an_entry_with_a_bad_occurred_at_is_refused_with_422(api):
    ref = (await declare(api))["ref"]

    for occurred_at, mentions in [
        ("2026-11-23T13:00:00", "offset"),
        ("2026-11-23T16:00:00+00:00", "future"),
        ("2026-09-01T12:00:00+00:00", "30 days"),
        ("yesterday", "occurred_at"),
    ]:
        response = await api.post(
            f"{API}/incidents/{ref}/timeline", json={"body": "x", "occurred_at": occurred_at}
        )

        assert response.status_code == 422, (occurred_at, response.text)
        assert_error(response, 422, "invalid_input", mentions=mentions)
    assert [e["kind"] for e in await timeline(api, ref)] == ["declared"]


async def test_a_bad_timeline_entry_is_refused_with_422(api):
    ref = (await declare(api))["ref"]

    for body in [
        {"body": ""},
        {"body": "   "},
        {"body": "x" * 20_001},
        {"kind": "declared", "body": "I declare"},
        {"kind": "rumour", "body": "heard something"},
        {"body": "x", "client_key": "k" * 65},
        {"body": "x", "mood": "calm"},
        {},
    ]:
        response = await api.post(f"{API}/incidents/{ref}/timeline", json=body)

        assert response.status_code == 422, (body, response.text)
        assert_error(response, 422, "invalid_input")
    assert [e["kind"] for e in await timeline(api, ref)] == ["declared"]


async def test_an_entry_on_a_missing_incident_is_a_404(api):
    assert_error(
        await api.post(f"{API}/incidents/INC-20261123-99/timeline", json={"body": "hello"}),
        404,
        "not_found",
    )
    assert_error(await api.get(f"{API}/incidents/INC-20261123-99/timeline"), 404, "not_found")


async def test_posting_twice_with_the_same_client_key_writes_one_entry(api):
    ref = (await declare(api))["ref"]
    payload = {"body": "Restarted the primary", "client_key": "c0ffee-1"}

    first = await api.post(f"{API}/incidents/{ref}/timeline", json=payload)
    second = await api.post(f"{API}/incidents/{ref}/timeline", json=payload)

    assert first.status_code == 201, first.text
    assert second.status_code in (200, 201), second.text
    assert second.json()["id"] == first.json()["id"]
    assert [e["body"] for e in await timeline(api, ref)].count("Restarted the primary") == 1


async def test_the_timeline_after_an_id_returns_only_newer_records(api, frozen_clock):
    ref = (await declare(api))["ref"]
    seen = await timeline(api, ref)
    frozen_clock.advance(minutes=1)
    one = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "one"})).json()
    two = (
        await api.post(
            f"{API}/incidents/{ref}/timeline",
            json={"body": "two, earlier", "occurred_at": "2026-11-23T13:59:00+00:00"},
        )
    ).json()

    newer = await timeline(api, ref, after=seen[-1]["id"])

    assert {e["id"] for e in newer} == {one["id"], two["id"]}
    assert [e["id"] for e in newer] == [two["id"], one["id"]]
    assert await timeline(api, ref, after=two["id"]) == []
    page = await api.get(f"{API}/incidents/{ref}/timeline", params={"after": one["id"]})
    assert page.json()["next_cursor"] is None
    assert_error(
        await api.get(f"{API}/incidents/{ref}/timeline", params={"after": "latest"}), 422, "invalid_input"
    )


async def test_correcting_an_entry_makes_revision_2_and_keeps_revision_1_in_its_history(
    api, responder, frozen_clock
):
    ref = (await declare(api))["ref"]
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "Restarted db-2"})).json()
    frozen_clock.advance(minutes=1)

    edited = await api.patch(f"{API}/timeline/{entry['id']}", json={"body": "Restarted db-3"})

    assert edited.status_code == 200, edited.text
    assert edited.json()["id"] == entry["id"]
    assert edited.json()["revision"] == 2
    assert edited.json()["body"] == "Restarted db-3"
    assert (await timeline(api, ref))[-1]["body"] == "Restarted db-3"
    history = await api.get(f"{API}/timeline/{entry['id']}/history")
    assert history.status_code == 200
    assert history.json()["entry"]["revision"] == 2
    revisions = history.json()["revisions"]
    assert [(r["revision"], r["body"]) for r in revisions] == [(1, "Restarted db-2"), (2, "Restarted db-3")]
    assert all(r["edited_by"] == person(responder) for r in revisions)
    assert at(revisions[1]["edited_at"]) == frozen_clock.now


async def test_a_correction_must_change_something_and_be_by_the_author_of_a_written_entry(
    api, call_as, make_user
):
    ref = (await declare(api))["ref"]
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "Restarted db-2"})).json()
    declared = (await timeline(api, ref))[0]
    someone_else = await call_as(await make_user("responder"))

    assert_error(
        await api.patch(f"{API}/timeline/{entry['id']}", json={"body": "Restarted db-2"}), 409, "conflict"
    )
    assert_error(await api.patch(f"{API}/timeline/{entry['id']}", json={"body": " "}), 422, "invalid_input")
    assert_error(await api.patch(f"{API}/timeline/{entry['id']}", json={"text": "x"}), 422, "invalid_input")
    assert_error(
        await someone_else.patch(f"{API}/timeline/{entry['id']}", json={"body": "Mine now"}),
        403,
        "not_permitted",
    )
    assert_error(
        await api.patch(f"{API}/timeline/{declared['id']}", json={"body": "Nope"}), 403, "not_permitted"
    )
    assert_error(await api.patch(f"{API}/timeline/999999", json={"body": "Nope"}), 404, "not_found")
    assert (await timeline(api, ref))[-1]["revision"] == 1


async def test_redacting_removes_the_text_from_every_revision_and_keeps_who_when_and_why(
    api, responder, frozen_clock
):
    ref = (await declare(api))["ref"]
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "password is hunter2"})).json()
    await api.patch(f"{API}/timeline/{entry['id']}", json={"body": "password is hunter3"})
    frozen_clock.advance(minutes=2)

    redacted = await api.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": "Secret pasted"})

    assert redacted.status_code == 200, redacted.text
    body = redacted.json()
    assert body["body"] is None
    assert body["redacted"]["by"] == person(responder)
    assert at(body["redacted"]["at"]) == frozen_clock.now
    assert body["redacted"]["reason"] == "Secret pasted"
    listed_entry = next(e for e in await timeline(api, ref) if e["id"] == entry["id"])
    assert listed_entry["body"] is None
    assert listed_entry["redacted"]["reason"] == "Secret pasted"
    history = (await api.get(f"{API}/timeline/{entry['id']}/history")).json()
    assert history["entry"]["body"] is None
    assert [(r["revision"], r["body"]) for r in history["revisions"]] == [(1, None), (2, None)]
    assert "hunter" not in (await api.get(f"{API}/incidents/{ref}/timeline")).text

    assert_error(
        await api.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": "again"}), 409, "conflict"
    )
    assert_error(await api.patch(f"{API}/timeline/{entry['id']}", json={"body": "back"}), 409, "conflict")


async def test_redacting_needs_a_reason_and_the_author_the_commander_or_an_admin(
    api, call_as, make_user, admin
):
    ref = (await declare(api))["ref"]
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "oops"})).json()
    other = await make_user("responder")
    as_other = await call_as(other)

    assert_error(
        await api.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": ""}), 422, "invalid_input"
    )
    assert_error(await api.post(f"{API}/timeline/{entry['id']}/redact", json={}), 422, "invalid_input")
    assert_error(
        await as_other.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": "x"}),
        403,
        "not_permitted",
    )
    assert_error(await api.post(f"{API}/timeline/999999/redact", json={"reason": "x"}), 404, "not_found")
    assert (await timeline(api, ref))[-1]["body"] == "oops"

    await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": other.email})
    by_commander = await as_other.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": "IC says"})
    assert by_commander.status_code == 200, by_commander.text
    assert by_commander.json()["redacted"]["by"] == person(other)

    second = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "oops again"})).json()
    as_admin = await call_as(admin)
    by_admin = await as_admin.post(f"{API}/timeline/{second['id']}/redact", json={"reason": "admin says"})
    assert by_admin.status_code == 200, by_admin.text


async def test_the_history_of_a_missing_entry_is_a_404(api):
    assert_error(await api.get(f"{API}/timeline/999999/history"), 404, "not_found")


# ---------------------------------------------------------------- across endpoints


async def test_every_time_in_the_responses_is_iso_8601_with_an_offset(api, responder):
    ref = (await declare(api))["ref"]
    await api.post(f"{API}/incidents/{ref}/acknowledge")
    await api.post(f"{API}/incidents/{ref}/checklist/ic-assigned", json={"done": True})
    await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": responder.email})
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "note"})).json()
    await api.patch(f"{API}/timeline/{entry['id']}", json={"body": "note, corrected"})
    redacted = (await api.post(f"{API}/timeline/{entry['id']}/redact", json={"reason": "r"})).json()
    resolved = (await api.post(f"{API}/incidents/{ref}/status", json={"status": "resolved"})).json()
    documents = [
        resolved,
        redacted,
        (await api.get(f"{API}/incidents")).json(),
        (await api.get(f"{API}/incidents/{ref}/timeline")).json(),
        (await api.get(f"{API}/timeline/{entry['id']}/history")).json(),
    ]

    times = [t for document in documents for t in every_time_in(document)]

    assert len(times) >= 15
    for value in times:
        at(value)


WRITES = [
    ("POST", "/incidents", {"title": "Outage", "severity": "SEV1"}),
    ("POST", "/incidents/{ref}/acknowledge", None),
    ("POST", "/incidents/{ref}/severity", {"severity": "SEV2", "reason": "smaller"}),
    ("POST", "/incidents/{ref}/status", {"status": "investigating"}),
    ("PUT", "/incidents/{ref}/roles/scribe", {"email": "{email}"}),
    ("DELETE", "/incidents/{ref}/roles/incident_commander", None),
    ("POST", "/incidents/{ref}/roles/sme", {"email": "{email}"}),
    ("DELETE", "/incidents/{ref}/roles/sme/{email}", None),
    ("POST", "/incidents/{ref}/checklist/ic-assigned", {"done": True}),
    ("POST", "/incidents/{ref}/timeline", {"body": "hello"}),
    ("PATCH", "/timeline/{entry}", {"body": "changed"}),
    ("POST", "/timeline/{entry}/redact", {"reason": "why"}),
]
READS = [
    ("GET", "/severities", None),
    ("GET", "/incidents", None),
    ("GET", "/incidents/{ref}", None),
    ("GET", "/incidents/{ref}/timeline", None),
    ("GET", "/timeline/{entry}/history", None),
]


@pytest.fixture
async def busy_incident(api, responder) -> dict:
    """An incident with an IC, an SME and a written entry, to aim every endpoint at."""
    ref = (await declare(api))["ref"]
    await api.put(f"{API}/incidents/{ref}/roles/incident_commander", json={"email": responder.email})
    await api.post(f"{API}/incidents/{ref}/roles/sme", json={"email": responder.email})
    entry = (await api.post(f"{API}/incidents/{ref}/timeline", json={"body": "a note"})).json()
    return {"ref": ref, "entry": str(entry["id"]), "email": responder.email}


def fill(template, values: dict):
    if isinstance(template, str):
        return template.format(**values)
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    return template


async def snapshot(api: httpx.AsyncClient, ref: str) -> tuple:
    incident = (await api.get(f"{API}/incidents/{ref}")).json()
    return incident, await timeline(api, ref), (await api.get(f"{API}/incidents")).json()


async def test_a_viewer_cannot_change_anything_through_any_endpoint(api, call_as, viewer, busy_incident):
    as_viewer = await call_as(viewer)
    before = await snapshot(api, busy_incident["ref"])

    for method, path, body in WRITES:
        url = API + fill(path, busy_incident)
        response = await as_viewer.request(method, url, json=fill(body, busy_incident))

        assert response.status_code == 403, (method, url, response.text)
        assert_error(response, 403, "not_permitted")
    assert await snapshot(api, busy_incident["ref"]) == before


async def test_every_endpoint_refuses_a_client_without_a_token_with_401(anonymous, api, busy_incident):
    before = await snapshot(api, busy_incident["ref"])

    for method, path, body in WRITES + READS:
        url = API + fill(path, busy_incident)
        response = await anonymous.request(method, url, json=fill(body, busy_incident))

        assert response.status_code == 401, (method, url, response.text)
        assert_error(response, 401, "not_authenticated")
    assert await snapshot(api, busy_incident["ref"]) == before


async def test_a_browser_session_cannot_write_through_the_api_without_its_csrf_token(
    anonymous, session, busy_incident, api
):
    browser_user = await accounts.create_user(
        session, email="browser@example.com", name="Bo Browser", role="responder", password=PASSWORD
    )
    csrf = await sign_in(anonymous, browser_user)
    ref = busy_incident["ref"]

    assert (await anonymous.get(f"{API}/incidents/{ref}")).status_code == 200
    assert_error(await anonymous.post(f"{API}/incidents/{ref}/acknowledge"), 403, "not_permitted")
    assert (await api.get(f"{API}/incidents/{ref}")).json()["acknowledged_at"] is None
    acknowledged = await anonymous.post(f"{API}/incidents/{ref}/acknowledge", headers={"X-CSRF-Token": csrf})
    assert acknowledged.status_code == 200, acknowledged.text


BAD_BODIES = [
    ("POST", "/incidents", b"{"),
    ("POST", "/incidents", b"[]"),
    ("POST", "/incidents", b"null"),
    ("POST", "/incidents", b"\xff\xfe"),
    ("POST", "/incidents", b'{"title": ["Outage"], "severity": "SEV1"}'),
    ("POST", "/incidents", b'{"title": "Outage", "severity": 1}'),
    ("POST", "/incidents", b'{"title": "Outage", "severity": "SEV1", "summary": {}}'),
    ("POST", "/incidents/{ref}/severity", b'{"severity": "SEV2", "reason": 42}'),
    ("POST", "/incidents/{ref}/severity", b"severity=SEV2"),
    ("POST", "/incidents/{ref}/status", b'{"status": null}'),
    ("POST", "/incidents/{ref}/status", b'{"status": "resolved", "reason": ["a"]}'),
    ("PUT", "/incidents/{ref}/roles/scribe", b'{"email": 7}'),
    ("PUT", "/incidents/{ref}/roles/scribe", b""),
    ("POST", "/incidents/{ref}/roles/sme", b'{"email": ["a@example.com"]}'),
    ("POST", "/incidents/{ref}/checklist/ic-assigned", b'{"done": "maybe"}'),
    ("POST", "/incidents/{ref}/checklist/ic-assigned", b'{"done": true'),
    ("POST", "/incidents/{ref}/timeline", b'{"body": 1}'),
    ("POST", "/incidents/{ref}/timeline", b'{"body": "x", "occurred_at": 1e400}'),
    ("POST", "/incidents/{ref}/timeline", b'{"body": "x", "occurred_at": "2026-13-45T99:00:00Z"}'),
    ("POST", "/incidents/{ref}/timeline", b'{"body": "x", "kind": 3}'),
    ("PATCH", "/timeline/{entry}", b'{"body": null}'),
    ("PATCH", "/timeline/{entry}", b'"just a string"'),
    ("POST", "/timeline/{entry}/redact", b'{"reason": {"why": "x"}}'),
    ("PATCH", "/timeline/not-a-number", b'{"body": "x"}'),
    ("GET", "/timeline/not-a-number/history", None),
    ("GET", "/incidents/{ref}/timeline?after=-", None),
    ("GET", "/incidents?limit=many", None),
]


async def test_bad_input_is_a_4xx_with_a_detail_never_a_500(api, busy_incident):
    for method, path, content in BAD_BODIES:
        url = API + fill(path, busy_incident)
        response = await api.request(method, url, content=content, headers=JSON)

        assert 400 <= response.status_code < 500, (method, url, content, response.text)
        body = response.json()
        assert isinstance(body["detail"], str) and body["detail"], (method, url, content, body)
        assert isinstance(body["code"], str), (method, url, content, body)


NUL_INPUTS = [
    ("POST", "/incidents", {"title": "Out\u0000age", "severity": "SEV1"}),
    ("POST", "/incidents", {"title": "Outage", "severity": "SEV1", "summary": "a\u0000b"}),
    ("POST", "/incidents/{ref}/severity", {"severity": "SEV2", "reason": "a\u0000b"}),
    ("POST", "/incidents/{ref}/status", {"status": "investigating", "reason": "a\u0000b"}),
    ("PUT", "/incidents/{ref}/roles/scribe", {"email": "a\u0000b@example.com"}),
    ("POST", "/incidents/{ref}/checklist/ic%00assigned", {"done": True}),
    ("POST", "/incidents/{ref}/timeline", {"body": "a\u0000b"}),
    ("POST", "/incidents/{ref}/timeline", {"body": "ok", "client_key": "k\u0000"}),
    ("PATCH", "/timeline/{entry}", {"body": "a\u0000b"}),
    ("POST", "/timeline/{entry}/redact", {"reason": "a\u0000b"}),
    ("GET", "/incidents?q=a%00b", None),
    ("GET", "/incidents?service=a%00b", None),
    ("GET", "/incidents/INC%00", None),
]


async def test_text_with_a_nul_character_is_refused_with_422_not_a_500(api, busy_incident):
    answers = {}
    for method, path, body in NUL_INPUTS:
        url = API + fill(path, busy_incident)
        response = await api.request(method, url, json=fill(body, busy_incident))
        answers[f"{method} {url} {body}"] = (response.status_code, response.json().get("code"))

    assert {case: a for case, a in answers.items() if a != (422, "invalid_input")} == {}


HUGE_NUMBERS = [
    ("GET", f"/incidents?cursor={INT4_MAX + 1}", None),
    ("GET", "/incidents?cursor=99999999999999999999", None),
    ("GET", f"/incidents/{{ref}}/timeline?after={INT4_MAX + 1}", None),
    ("GET", f"/timeline/{INT4_MAX + 1}/history", None),
    ("PATCH", f"/timeline/{INT4_MAX + 1}", {"body": "x"}),
    ("POST", f"/timeline/{INT4_MAX + 1}/redact", {"reason": "x"}),
]


async def test_an_id_or_cursor_beyond_the_integer_range_is_a_4xx_not_a_500(api, busy_incident):
    answers = {}
    for method, path, body in HUGE_NUMBERS:
        url = API + fill(path, busy_incident)
        response = await api.request(method, url, json=body)
        answers[f"{method} {url}"] = (response.status_code, response.json().get("code"))

    expected = {(422, "invalid_input"), (404, "not_found")}
    assert {case: a for case, a in answers.items() if a not in expected} == {}


async def test_the_openapi_document_lists_every_endpoint(anonymous):
    response = await anonymous.get(f"{API}/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    expected = {
        "/api/v1/severities": {"get"},
        "/api/v1/incidents": {"get", "post"},
        "/api/v1/incidents/{ref}": {"get"},
        "/api/v1/incidents/{ref}/acknowledge": {"post"},
        "/api/v1/incidents/{ref}/severity": {"post"},
        "/api/v1/incidents/{ref}/status": {"post"},
        "/api/v1/incidents/{ref}/roles/{role}": {"put", "delete"},
        "/api/v1/incidents/{ref}/roles/sme": {"post"},
        "/api/v1/incidents/{ref}/roles/sme/{email}": {"delete"},
        "/api/v1/incidents/{ref}/checklist/{key}": {"post"},
        "/api/v1/incidents/{ref}/timeline": {"get", "post"},
        "/api/v1/timeline/{entry_id}": {"patch"},
        "/api/v1/timeline/{entry_id}/redact": {"post"},
        "/api/v1/timeline/{entry_id}/history": {"get"},
        "/api/v1/status": {"get"},
        "/api/v1/incidents/{ref}/updates": {"get", "post"},
        "/api/v1/incidents/{ref}/impacts/{component}": {"put"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
