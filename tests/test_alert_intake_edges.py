"""The alert intakes at their edges: hostile JSON (1,000 levels deep, a 5,000-digit integer, NaN,
a lone surrogate, impossible timestamps) refused with a 4xx naming the field and kept only as a
dead letter; the incident of an Alertmanager group called as the group is; "every alert is
resolved" said once; basic auth only where a source is configured for it."""

import asyncio
import base64
import json

import pytest

from app.alerts.config import load_alert_config
from tests import test_alerts
from tests.test_alerts import AM_TOKEN, API, CORPUS, GRAFANA_TOKEN, am_alert, am_headers, am_payload, rows

# The alert tests' fixtures, by name; `alert_config` below replaces theirs.
sender = test_alerts.sender
api = test_alerts.api
_empty_alert_tables = test_alerts._empty_alert_tables

PD_KEY = "0123456789abcdef0123456789abcdef"
CONFIG = f"""
[alerts]
rate_limit = "1000/m"

[alerts.sources.alertmanager]
kind = "alertmanager"
token = "{AM_TOKEN}"

[alerts.sources.grafana]
kind = "grafana"
token = "{GRAFANA_TOKEN}"

[alerts.sources.pagerduty]
kind = "pagerduty"
routing_keys = ["{PD_KEY}"]

[[alerts.routes]]
match = ['severity=~"critical|page"']
action = "declare"

[[alerts.routes]]
match = []
action = "triage"
"""
DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 5000


@pytest.fixture
def alert_config(app, tmp_path):
    """Alertmanager and Grafana with tokens only, PagerDuty; critical and page alerts declare."""
    path = tmp_path / "icc.toml"
    path.write_text(CONFIG)
    previous = app.state.alert_config
    app.state.alert_config = load_alert_config(path)
    yield app.state.alert_config
    app.state.alert_config = previous


def am_body(
    labels: str = '{"alertname": "DiskFull"}',
    annotations: str = '{"summary": "Disk full"}',
    starts_at: str = '"2026-11-23T13:58:00Z"',
) -> bytes:
    """An Alertmanager delivery written as JSON text, so that a test can put in it what no JSON
    library writes (an unpaired \\ud800 escape, NaN, 5,000 digits)."""
    alert = (
        f'{{"status": "firing", "labels": {labels}, "annotations": {annotations}, "startsAt": {starts_at}}}'
    )
    return f'{{"version": "4", "status": "firing", "groupKey": "g", "alerts": [{alert}]}}'.encode()


def pd_body(
    summary: str = '"Disk 99% on db-1"',
    details: str = '{"free": "1%"}',
    timestamp: str = '"2026-11-23T13:58:00Z"',
) -> bytes:
    payload = (
        f'{{"summary": {summary}, "source": "db-1", "severity": "critical", "timestamp": {timestamp},'
        f' "custom_details": {details}}}'
    )
    return f'{{"routing_key": "{PD_KEY}", "event_action": "trigger", "payload": {payload}}}'.encode()


def change_body(details: str) -> bytes:
    payload = f'{{"summary": "Deploy", "custom_details": {details}}}'
    return f'{{"routing_key": "{PD_KEY}", "payload": {payload}}}'.encode()


AM = (f"{API}/alerts/alertmanager", am_headers())
GRAFANA = (f"{API}/alerts/grafana", am_headers(GRAFANA_TOKEN))
PD_OLD = (f"{API}/alerts/pagerduty", {"content-type": "application/json"})
PD = ("/v2/enqueue", {"content-type": "application/json"})
PD_CHANGE = ("/v2/change/enqueue", {"content-type": "application/json"})

HOSTILE = [
    (AM, am_body(annotations=f'{{"detail": {DEEP}}}'), "alerts[0].annotations.detail"),
    (AM, am_body(annotations=f'{{"value": {HUGE}}}'), "alerts[0].annotations.value"),
    (AM, am_body(annotations='{"value": NaN}'), "alerts[0].annotations.value"),
    (AM, am_body(annotations='{"value": 1e999}'), "alerts[0].annotations.value"),
    (AM, am_body(labels='{"alertname": "\\ud800"}'), "alerts[0].labels.alertname"),
    (AM, am_body(labels='{"alertname": "Disk", "\\udfff": "x"}'), "alerts[0].labels.\\udfff (its name)"),
    (AM, am_body(annotations='{"summary": "a \\u0000 b"}'), "alerts[0].annotations.summary"),
    (AM, am_body(starts_at='"2026-11-23T13:58:00+99:00"'), "alerts[0].startsAt"),
    (AM, am_body(starts_at='"2026-11-23T13:58:00+24:00"'), "alerts[0].startsAt"),
    (AM, am_body(starts_at='"2026-11-23T24:00:00Z"'), "alerts[0].startsAt"),
    (AM, am_body(starts_at='"0000-01-01T00:00:00Z"'), "alerts[0].startsAt"),
    (AM, am_body(starts_at='"9999-12-31T23:59:59-23:59"'), "alerts[0].startsAt"),
    (GRAFANA, am_body(annotations=f'{{"values": {DEEP}}}'), "alerts[0].annotations.values"),
    (GRAFANA, am_body(annotations=f'{{"values": {{"B": {HUGE}}}}}'), "alerts[0].annotations.values.B"),
    (GRAFANA, am_body(labels='{"alertname": "\\ud800"}'), "alerts[0].labels.alertname"),
    (GRAFANA, am_body(starts_at='"2026-11-23T13:58:00+99:00"'), "alerts[0].startsAt"),
    (PD_OLD, pd_body(details=DEEP), "payload.custom_details"),
    (PD_OLD, pd_body(summary='"\\ud800"'), "payload.summary"),
    (PD_OLD, pd_body(timestamp='"2026-11-23T13:58:00+99:00"'), "payload.timestamp"),
    (PD, pd_body(details=f'{{"rows": {DEEP}}}'), "payload.custom_details.rows"),
    (PD, pd_body(details=f'{{"rows": {HUGE}}}'), "payload.custom_details.rows"),
    (PD, pd_body(summary='"Disk \\ud800 full"'), "payload.summary"),
    (PD, pd_body(details='{"note": "\\udbff"}'), "payload.custom_details.note"),
    (PD, pd_body(timestamp='"0000-06-01T00:00:00Z"'), "payload.timestamp"),
    (PD_CHANGE, change_body(f'{{"diff": {DEEP}}}'), "payload.custom_details.diff"),
    (PD_CHANGE, change_body('{"author": "\\ud800"}'), "payload.custom_details.author"),
]


@pytest.mark.parametrize(("intake", "body", "field"), HOSTILE)
async def test_hostile_json_is_a_4xx_naming_the_field_and_keeps_only_a_dead_letter(
    sender, session, intake, body, field
):
    path, headers = intake
    response = await sender.post(path, content=body, headers=headers)

    assert response.status_code in (400, 422), response.text
    answer = response.json()
    if path.startswith("/v2/"):
        assert response.status_code == 400 and answer["status"] == "invalid event"
        detail = answer["errors"][0]
    else:
        detail = answer["detail"]
    assert detail.startswith(field), detail
    assert await rows(session, "SELECT count(*) FROM alerts") == [(0,)]
    assert await rows(session, "SELECT count(*) FROM change_events") == [(0,)]
    assert await rows(session, "SELECT count(*) FROM incidents") == [(0,)]
    ((code, reason),) = await rows(session, "SELECT status_code, reason FROM alert_dead_letters")
    assert code == response.status_code and reason.startswith(field)


async def test_a_wide_body_that_is_not_deep_is_accepted(sender, session):
    alerts = [am_alert("Wide", fingerprint=f"{n:016x}", pod=f"p{n}") for n in range(150)]
    for alert in alerts:
        alert["annotations"]["history"] = [[1, [2, [3]]], {"a": {"b": [4]}}]
    response = await sender.post(f"{API}/alerts/alertmanager", json=am_payload(*alerts), headers=am_headers())

    assert response.status_code == 200, response.text
    assert await rows(session, "SELECT count(*) FROM alerts") == [(150,)]


@pytest.mark.parametrize("name", ["%00x", "%ED%A0%80"])
async def test_a_source_name_no_store_keeps_is_a_404_and_a_dead_letter(sender, session, name):
    response = await sender.post(
        f"{API}/alerts/alertmanager/{name}", json=am_payload(am_alert()), headers=am_headers()
    )

    assert response.status_code == 404 and response.json()["code"] == "unknown_source"
    assert await rows(session, "SELECT count(*) FROM alert_dead_letters") == [(1,)]


# ---------------------------------------------------------------- Alertmanager groups


def group(
    *alerts: dict, group_labels: dict, common_summary: str | None = None, status: str = "firing"
) -> dict:
    payload = am_payload(*alerts, status=status, group_key='{}:{alertname="CheckoutDown"}')
    payload["groupLabels"] = group_labels
    payload["commonLabels"] = {"alertname": "CheckoutDown", "severity": "critical", "service": "checkout"}
    if common_summary:
        payload["commonAnnotations"] = {"summary": common_summary}
    return payload


def instance(host: str, *, status: str = "firing") -> dict:
    alert = am_alert(
        "CheckoutDown",
        status=status,
        fingerprint=f"{host:0>16}",
        severity="critical",
        service="checkout",
        host=host,
    )
    alert["annotations"]["summary"] = f"Checkout returns 502 on {host}"
    return alert


async def incident_titles(session) -> list[str]:
    return [r[0] for r in await rows(session, "SELECT title FROM incidents ORDER BY id")]


async def test_a_groups_incident_is_titled_from_its_group_labels_not_from_one_instance(sender, session):
    payload = group(
        instance("web-2"),
        instance("web-5"),
        group_labels={"alertname": "CheckoutDown", "service": "checkout"},
    )

    response = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert response.status_code == 200 and len(response.json()["incidents"]) == 1
    assert await incident_titles(session) == ["CheckoutDown (service=checkout)"]
    titles = [r[0] for r in await rows(session, "SELECT title FROM alerts ORDER BY id")]
    assert titles == ["Checkout returns 502 on web-2", "Checkout returns 502 on web-5"]  # each alert its own


async def test_a_groups_common_summary_titles_its_incident(sender, session):
    payload = group(
        instance("web-2"),
        instance("web-5"),
        group_labels={"alertname": "CheckoutDown"},
        common_summary="Checkout returns 502",
    )

    await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert await incident_titles(session) == ["Checkout returns 502"]


@pytest.mark.parametrize(
    ("name", "title"),
    [
        ("SYNTHETIC_unicode_long_annotation_mixed_truncated_v034.json", "NodeFilesystemAlmostOutOfSpace"),
        ("msteams_firing_19alerts_regex_groupkey.json", "Server is down"),
    ],
)
async def test_the_corpus_groups_name_their_incidents_as_alertmanager_does(sender, session, name, title):
    path = CORPUS / "alertmanager" / name
    if not path.exists():
        pytest.skip(f"the alert corpus is missing: expected it at {CORPUS}")

    response = await sender.post(
        f"{API}/alerts/alertmanager", content=path.read_bytes(), headers=am_headers()
    )

    assert response.status_code == 200, response.text
    assert await incident_titles(session) == [title]


async def alert_entries(api, ref: str) -> list[str]:
    timeline = (await api.get(f"{API}/incidents/{ref}/timeline")).json()["items"]
    return [e["body"] for e in timeline if e["kind"] == "alert"]


async def test_every_alert_resolved_is_said_once_for_a_delivery_resolving_several(sender, api):
    labels = {"alertname": "CheckoutDown"}
    opened = await sender.post(
        f"{API}/alerts/alertmanager",
        json=group(instance("web-2"), instance("web-5"), group_labels=labels),
        headers=am_headers(),
    )
    (ref,) = opened.json()["incidents"]
    resolved = group(
        instance("web-2", status="resolved"),
        instance("web-5", status="resolved"),
        group_labels=labels,
        status="resolved",
    )

    for _ in range(2):  # the second is Alertmanager's repeat: nothing changes, nothing is said
        assert (
            await sender.post(f"{API}/alerts/alertmanager", json=resolved, headers=am_headers())
        ).status_code == 200

    entries = await alert_entries(api, ref)
    assert [e.split(":")[0] for e in entries] == ["Opened by alert", "Firing", "Resolved", "Resolved"]
    assert sum("Every alert of this incident is resolved" in e for e in entries) == 1
    assert "Every alert of this incident is resolved" in entries[-1]


async def test_every_alert_resolved_is_said_once_when_deliveries_resolve_the_last_ones_at_once(sender, api):
    labels = {"alertname": "CheckoutDown"}
    hosts = [f"web-{n}" for n in range(8)]
    opened = await sender.post(
        f"{API}/alerts/alertmanager",
        json=group(*(instance(h) for h in hosts), group_labels=labels),
        headers=am_headers(),
    )
    (ref,) = opened.json()["incidents"]
    deliveries = [
        group(instance(h, status="resolved"), group_labels=labels, status="resolved") for h in hosts
    ]

    answers = await asyncio.gather(
        *(sender.post(f"{API}/alerts/alertmanager", json=d, headers=am_headers()) for d in deliveries)
    )

    assert [a.status_code for a in answers] == [200] * 8
    entries = await alert_entries(api, ref)
    assert sum(e.startswith("Resolved") for e in entries) == 8
    assert sum("Every alert of this incident is resolved" in e for e in entries) == 1


async def test_concurrent_resolves_of_an_alert_never_seen_firing_keep_one_row(sender, session):
    payload = am_payload(am_alert(status="resolved"), status="resolved")
    warm = am_payload(am_alert("Other", fingerprint="0000000000000009", severity="info"))
    assert (
        await sender.post(f"{API}/alerts/alertmanager", json=warm, headers=am_headers())
    ).status_code == 200

    answers = await asyncio.gather(
        *(sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers()) for _ in range(30))
    )

    assert [a.status_code for a in answers] == [200] * 30
    assert await rows(session, "SELECT status, delivery_count FROM alerts WHERE status = 'resolved'") == [
        ("resolved", 30)
    ]


# ---------------------------------------------------------------- basic auth


async def test_basic_auth_is_refused_by_a_source_configured_without_it(sender, session):
    basic = base64.b64encode(f"alertmanager:{AM_TOKEN}".encode()).decode()

    response = await sender.post(
        f"{API}/alerts/alertmanager",
        content=json.dumps(am_payload(am_alert())),
        headers={"Authorization": f"Basic {basic}", "content-type": "application/json"},
    )

    assert response.status_code == 401
    assert "takes no basic auth" in response.json()["detail"] and "basic_user" in response.json()["detail"]
    assert await rows(session, "SELECT count(*) FROM alerts") == [(0,)]
