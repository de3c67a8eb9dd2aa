"""PagerDuty's Events API v2 as its documentation says and its clients expect: the /v2/enqueue and
/v2/change/enqueue paths, dedup_key semantics (an acknowledge or resolve for no open alert is
dropped, a trigger after a resolve opens a new alert), PagerDuty's error body, change events and
the incident page's "Recent changes". The real clients drive a running server in
tests/test_pagerduty_clients.py."""

import asyncio
import json
from datetime import timedelta

import pytest

from app.alerts.config import load_alert_config
from app.incidents import service as incidents
from tests import test_alerts
from tests.test_alerts import API, CORPUS, CORPUS_ROUTING_KEYS, rows

# The alert tests' fixtures, by name; `alert_config` below replaces theirs.
sender = test_alerts.sender
api = test_alerts.api
_empty_alert_tables = test_alerts._empty_alert_tables

PD_KEY = "0123456789abcdef0123456789abcdef"
OPS_KEY = "fedcba9876543210fedcba9876543210"
TINY_KEY = "11112222333344445555666677778888"
CONFIG = f"""
[alerts]
rate_limit = "1000/m"

[alerts.sources.pagerduty]
kind = "pagerduty"
routing_keys = {json.dumps([PD_KEY, *CORPUS_ROUTING_KEYS])}

[alerts.sources.ops]
kind = "pagerduty"
routing_keys = ["{OPS_KEY}"]

[alerts.sources.tiny-pd]
kind = "pagerduty"
routing_keys = ["{TINY_KEY}"]
rate_limit = "2/m"

[[alerts.routes]]
sources = ["ops"]
match = []
service = "payments"
action = "triage"

[[alerts.routes]]
match = ['severity="critical"']
service_label = "group"
action = "declare"

[[alerts.routes]]
match = []
action = "triage"
"""
PD_ERROR_KEYS = {"status", "message", "errors"}


@pytest.fixture
def alert_config(app, tmp_path):
    """The app with PagerDuty sources: the default one, `ops` (its routing rule names the service
    payments) and `tiny-pd` (2 events a minute)."""
    path = tmp_path / "icc.toml"
    path.write_text(CONFIG)
    previous = app.state.alert_config
    app.state.alert_config = load_alert_config(path)
    yield app.state.alert_config
    app.state.alert_config = previous


def trigger(dedup_key: str | None = "disk/db-1", *, key: str = PD_KEY, **payload: object) -> dict:
    event: dict = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "Disk 99% on db-1", "source": "db-1", "severity": "warning", **payload},
    }
    if dedup_key:
        event["dedup_key"] = dedup_key
    return event


def follow_up(action: str, dedup_key: str = "disk/db-1", *, key: str = PD_KEY) -> dict:
    return {"routing_key": key, "event_action": action, "dedup_key": dedup_key}


def change(summary: str = "Deploy checkout v2.4.1", *, key: str = PD_KEY, **payload: object) -> dict:
    return {
        "routing_key": key,
        "payload": {"summary": summary, "source": "ci", **payload},
        "links": [{"href": "https://ci.example.com/builds/42", "text": "Build 42"}],
    }


async def alert_rows(session) -> list[tuple]:
    return await rows(
        session,
        "SELECT status, delivery_count, acknowledged_at IS NOT NULL, severity, title FROM alerts ORDER BY id",
    )


# ---------------------------------------------------------------- dedup_key, as documented


async def test_an_acknowledge_or_resolve_for_an_unknown_dedup_key_is_accepted_and_changes_nothing(
    sender, session
):
    for action in ("acknowledge", "resolve"):
        response = await sender.post("/v2/enqueue", json=follow_up(action, "never-triggered"))

        assert response.status_code == 202, response.text
        assert response.json() == {
            "status": "success",
            "message": "Event processed",
            "dedup_key": "never-triggered",
        }
    assert await alert_rows(session) == []
    assert await rows(session, "SELECT count(*) FROM alert_dead_letters") == [(0,)]


async def test_an_acknowledge_after_the_resolve_leaves_the_resolved_alert_as_it_was(sender, session):
    await sender.post("/v2/enqueue", json=trigger())
    await sender.post("/v2/enqueue", json=follow_up("resolve"))

    late = await sender.post("/v2/enqueue", json=follow_up("acknowledge"))

    assert late.status_code == 202
    assert await alert_rows(session) == [("resolved", 2, False, "warning", "Disk 99% on db-1")]


async def test_a_trigger_after_the_resolve_opens_a_new_alert_and_keeps_the_old_one(sender, session):
    await sender.post("/v2/enqueue", json=trigger())
    again = await sender.post("/v2/enqueue", json=trigger())  # an open alert: added to it
    await sender.post("/v2/enqueue", json=follow_up("acknowledge"))
    await sender.post("/v2/enqueue", json=follow_up("resolve"))

    reopened = await sender.post("/v2/enqueue", json=trigger(summary="Disk 99% on db-1 again"))

    assert again.json()["dedup_key"] == reopened.json()["dedup_key"] == "disk/db-1"
    assert await alert_rows(session) == [
        ("resolved", 4, True, "warning", "Disk 99% on db-1"),
        ("firing", 1, False, "warning", "Disk 99% on db-1 again"),
    ]
    await sender.post("/v2/enqueue", json=follow_up("resolve"))
    assert [r[0] for r in await alert_rows(session)] == ["resolved", "resolved"]


async def test_concurrent_triggers_of_one_key_make_one_open_alert_before_and_after_a_resolve(sender, session):
    first = await asyncio.gather(*(sender.post("/v2/enqueue", json=trigger()) for _ in range(12)))
    assert [r.status_code for r in first] == [202] * 12
    assert await rows(session, "SELECT count(*), max(delivery_count) FROM alerts") == [(1, 12)]
    await sender.post("/v2/enqueue", json=follow_up("resolve"))

    second = await asyncio.gather(*(sender.post("/v2/enqueue", json=trigger()) for _ in range(12)))

    assert [r.status_code for r in second] == [202] * 12
    assert await rows(
        session, "SELECT status, count(*), sum(delivery_count) FROM alerts GROUP BY status ORDER BY status"
    ) == [("firing", 1, 12), ("resolved", 1, 13)]


async def test_a_key_that_fires_again_on_an_open_incident_says_so_there(sender, api, session):
    declared = await sender.post("/v2/enqueue", json=trigger(severity="critical", group="checkout"))
    await sender.post("/v2/enqueue", json=follow_up("resolve"))
    incident = (await rows(session, "SELECT ref FROM incidents"))[0][0]

    await sender.post("/v2/enqueue", json=trigger(severity="critical", group="checkout"))

    assert declared.status_code == 202
    assert await rows(session, "SELECT count(*), count(DISTINCT incident_id) FROM alerts") == [(2, 1)]
    timeline = (await api.get(f"{API}/incidents/{incident}/timeline")).json()["items"]
    assert [e["body"].split(":")[0] for e in timeline if e["kind"] == "alert"] == [
        "Opened by alert",
        "Resolved",
        "Firing again",
    ]


async def test_the_corpus_acknowledge_and_resolve_apply_to_the_open_alert_of_their_key(sender, session):
    if not (CORPUS / "pagerduty").is_dir():
        pytest.skip(f"the alert corpus is missing: expected it at {CORPUS}")
    acknowledge = (CORPUS / "pagerduty" / "pagerduty-devdocs_acknowledge.json").read_bytes()
    resolve = (CORPUS / "pagerduty" / "pagerduty-devdocs_resolve.json").read_bytes()
    opened = json.loads((CORPUS / "pagerduty" / "pagerduty-devdocs_trigger_full.json").read_bytes())
    opened.update(routing_key="routingkeyhere", dedup_key="dedupkeyhere")

    assert (await sender.post("/v2/enqueue", json=opened)).status_code == 202
    assert (await sender.post("/v2/enqueue", content=acknowledge)).status_code == 202
    assert await alert_rows(session) == [("firing", 2, True, "info", "Example alert on host1.example.com")]
    assert (await sender.post("/v2/enqueue", content=resolve)).status_code == 202
    assert (await sender.post("/v2/enqueue", content=acknowledge)).status_code == 202
    assert await alert_rows(session) == [("resolved", 3, True, "info", "Example alert on host1.example.com")]
    links = (await rows(session, "SELECT links FROM alerts"))[0][0]
    assert [link["text"] for link in links] == ["Link text", "Example text", "Sample Monitoring Service"]


# ---------------------------------------------------------------- the paths


async def test_the_events_api_paths_serve_the_default_source_and_a_named_one(sender, session):
    default = await sender.post("/v2/enqueue", json=trigger("a"))
    by_key = await sender.post("/v2/enqueue", json=trigger("b", key=OPS_KEY))  # its routing key names it
    named = await sender.post(f"{API}/alerts/pagerduty/ops/v2/enqueue", json=trigger("c", key=OPS_KEY))
    old = await sender.post(f"{API}/alerts/pagerduty", json=trigger("d"))

    assert [r.status_code for r in (default, by_key, named, old)] == [202] * 4
    assert await rows(session, "SELECT dedup_key, source FROM alerts ORDER BY dedup_key") == [
        ("a", "pagerduty"),
        ("b", "ops"),
        ("c", "ops"),
        ("d", "pagerduty"),
    ]


async def test_a_trigger_without_dedup_key_is_answered_with_the_key_it_was_given(sender, session):
    response = await sender.post("/v2/enqueue", json=trigger(None))

    key = response.json()["dedup_key"]
    assert response.status_code == 202 and key.startswith("icc-")
    assert await rows(session, "SELECT dedup_key FROM alerts") == [(key,)]
    assert (await sender.post("/v2/enqueue", json=follow_up("resolve", key))).status_code == 202
    assert await rows(session, "SELECT status FROM alerts") == [("resolved",)]


@pytest.mark.parametrize(
    ("path", "event", "mentions"),
    [
        (
            "/v2/enqueue",
            {**trigger(), "payload": {"source": "db-1", "severity": "warning"}},
            "payload.summary",
        ),
        ("/v2/enqueue", trigger(severity="fatal"), "payload.severity"),
        ("/v2/enqueue", {**trigger(), "event_action": "explode"}, "event_action"),
        ("/v2/enqueue", follow_up("resolve", "x" * 256), "dedup_key"),
        ("/v2/enqueue", {**trigger(), "links": "https://example.com"}, "links"),
        ("/v2/enqueue", trigger(key="not-a-key-of-ours"), "routing_key"),
        ("/v2/enqueue", {"event_action": "trigger", "payload": {}}, "routing_key"),
        (f"{API}/alerts/pagerduty/nope/v2/enqueue", trigger(), "No pagerduty alert source named 'nope'"),
        ("/v2/change/enqueue", {"routing_key": PD_KEY, "payload": {"source": "ci"}}, "payload.summary"),
        ("/v2/change/enqueue", change(timestamp="2026-13-01T00:00:00Z"), "payload.timestamp"),
    ],
)
async def test_an_invalid_event_gets_pagerdutys_400_and_a_dead_letter(sender, session, path, event, mentions):
    response = await sender.post(path, json=event)

    assert response.status_code == 400, response.text
    body = response.json()
    assert set(body) == PD_ERROR_KEYS
    assert (body["status"], body["message"]) == ("invalid event", "Event object is invalid")
    assert mentions in body["errors"][0]
    assert await alert_rows(session) == []
    assert await rows(session, "SELECT count(*) FROM change_events") == [(0,)]
    ((code, reason, kept),) = await rows(session, "SELECT status_code, reason, body FROM alert_dead_letters")
    assert code == 400 and mentions in reason
    assert PD_KEY not in kept and "not-a-key-of-ours" not in kept  # routing keys masked


async def test_a_body_that_is_not_json_gets_pagerdutys_400(sender):
    response = await sender.post(
        "/v2/enqueue", content=b"{oops", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["status"] == "invalid event"
    assert "not valid JSON" in response.json()["errors"][0]


async def test_the_older_path_keeps_the_apis_own_error_shape(sender):
    response = await sender.post(f"{API}/alerts/pagerduty", json=trigger(severity="fatal"))

    assert response.status_code == 422
    assert response.json()["code"] == "invalid_payload" and "payload.severity" in response.json()["detail"]


async def test_a_pagerduty_path_over_its_rate_limit_answers_429_with_retry_after(sender, session):
    path = f"{API}/alerts/pagerduty/tiny-pd/v2/enqueue"
    statuses = [(await sender.post(path, json=trigger(key=TINY_KEY))).status_code for _ in range(2)]
    limited = await sender.post(path, json=trigger(key=TINY_KEY))

    assert statuses == [202, 202]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert set(limited.json()) == PD_ERROR_KEYS and "limit of 2 deliveries" in limited.json()["message"]
    assert await rows(session, "SELECT count(*) FROM alert_dead_letters") == [(0,)]


# ---------------------------------------------------------------- change events


async def test_a_change_event_is_kept_with_the_service_its_details_name(sender, api, session):
    response = await sender.post(
        "/v2/change/enqueue",
        json=change(
            timestamp="2026-11-23T13:30:00.000+0000", custom_details={"service": "Checkout", "build": 42}
        ),
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"status": "success", "message": "Change event processed", "id": "1"}
    assert await rows(
        session, "SELECT source, summary, origin, service, occurred_at::text FROM change_events"
    ) == [("pagerduty", "Deploy checkout v2.4.1", "ci", "checkout", "2026-11-23 13:30:00+00")]
    (item,) = (await api.get(f"{API}/change-events")).json()["items"]
    assert item["custom_details"] == {"service": "Checkout", "build": 42}
    assert item["links"] == [{"href": "https://ci.example.com/builds/42", "text": "Build 42"}]
    assert await rows(session, "SELECT count(*) FROM alerts") == [(0,)]  # a change opens nothing


async def test_a_change_event_of_a_source_takes_the_service_its_routing_rule_names(sender, session):
    await sender.post(f"{API}/alerts/pagerduty/ops/v2/change/enqueue", json=change(key=OPS_KEY))
    await sender.post("/v2/change/enqueue", json=change("Rotate the TLS key", key=OPS_KEY))
    await sender.post("/v2/change/enqueue", json=change("Tweak a dashboard"))  # names no service

    assert await rows(session, "SELECT source, service FROM change_events ORDER BY id") == [
        ("ops", "payments"),
        ("ops", "payments"),
        ("pagerduty", None),
    ]


async def test_the_change_events_api_filters_by_service_and_since(sender, api, frozen_clock):
    for minutes, service in ((0, "checkout"), (10, "search"), (20, "checkout")):
        at = (frozen_clock.now + timedelta(minutes=minutes)).isoformat()
        await sender.post(
            "/v2/change/enqueue",
            json=change(f"{service} at +{minutes}", timestamp=at, custom_details={"service": service}),
        )

    async def summaries(**params) -> list[str]:
        response = await api.get(f"{API}/change-events", params=params)
        assert response.status_code == 200, response.text
        return [e["summary"] for e in response.json()["items"]]

    assert await summaries() == ["checkout at +20", "search at +10", "checkout at +0"]
    assert await summaries(service="checkout") == ["checkout at +20", "checkout at +0"]
    assert await summaries(since="2026-11-23T14:05:00Z") == ["checkout at +20", "search at +10"]
    assert (await api.get(f"{API}/change-events", params={"since": "2026-11-23T14:05:00"})).status_code == 422
    assert (await sender.get(f"{API}/change-events")).status_code == 401


async def test_the_incident_page_shows_the_changes_of_its_services_from_the_hour_before(
    sender, client, responder, session, frozen_clock
):
    from tests.conftest import sign_in

    now = frozen_clock.now
    for minutes, summary, service in (
        (-90, "Too old to matter", "checkout"),
        (-50, "Raise the pool size", "checkout"),
        (-20, "<script>alert(1)</script> deploy", "checkout"),
        (-10, "Reindex search", "search"),
    ):
        await sender.post(
            "/v2/change/enqueue",
            json=change(summary, timestamp=(now + timedelta(minutes=minutes)).isoformat(),
                        custom_details={"service": service}),
        )  # fmt: skip
    incident = await incidents.declare_incident(
        session, actor=responder, title="Checkout 502s", severity="SEV2", services=["checkout"]
    )
    await sign_in(client, responder)

    page = (await client.get(f"/incidents/{incident.ref}")).text

    section = page[page.index('id="icc-changes-h"') : page.index('id="icc-about-h"')]
    assert "Recent changes <small>2</small>" in section
    assert section.index("&lt;script&gt;alert(1)&lt;/script&gt; deploy") < section.index(
        "Raise the pool size"
    )
    assert "<script>alert(1)" not in page
    assert "Too old to matter" not in section and "Reindex search" not in section
    assert 'href="https://ci.example.com/builds/42"' in section
    fragment = await client.get(f"/incidents/{incident.ref}", headers={"HX-Request": "true"})
    assert "Raise the pool size" in fragment.text


async def test_a_refused_change_event_is_a_dead_letter_an_admin_replays(sender, api_as, admin, app, tmp_path):
    refused = await sender.post(f"{API}/alerts/pagerduty/deploys/v2/change/enqueue", json=change(key=OPS_KEY))
    assert refused.status_code == 400
    as_admin = await api_as(admin)
    (letter,) = (await as_admin.get(f"{API}/alert-dead-letters")).json()["items"]
    assert (letter["source"], letter["kind"], letter["status_code"]) == ("deploys", "pagerduty-change", 400)
    assert OPS_KEY not in letter["body"] and OPS_KEY[-4:] in letter["body"]

    path = tmp_path / "fixed.toml"
    path.write_text(
        CONFIG + f'\n[alerts.sources.deploys]\nkind = "pagerduty"\nrouting_keys = ["{OPS_KEY}"]\n'
    )
    app.state.alert_config = load_alert_config(path)
    replayed = await as_admin.post(f"{API}/alert-dead-letters/{letter['id']}/replay")

    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replay_alert_count"] == 1
    (item,) = (await as_admin.get(f"{API}/change-events")).json()["items"]
    assert (item["source"], item["summary"]) == ("deploys", "Deploy checkout v2.4.1")
