"""Alert ingestion as the monitoring systems and the responders see it: each sender's payload
accepted and normalised, one row per alert however often and however concurrently it is sent,
routing into incidents, signatures, rate limits, dead letters, acknowledgement and the API."""

import asyncio
import base64
import json
import os
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from app.alerts import credentials, queries
from app.alerts.adapters import alert_identity, parse_timestamp
from app.alerts.config import load_alert_config, parse_matcher
from app.alerts.errors import InvalidPayload
from app.config import ConfigError
from app.incidents import service as incidents
from app.masking import MASK
from tests.conftest import _libpq

API = "/api/v1"
AM_TOKEN = "test-alertmanager-token"
GRAFANA_TOKEN = "test-grafana-token"
SECRET = "test-webhook-secret"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "alerts"
CORPUS_ROUTING_KEYS = [
    "R0UT1NGKEY00000000000000000000AB",
    "e93facc04764012d7bfb002500d5d1a6",
    "routingkeyhere",
    "samplekeyhere",
]
CONFIG = f"""
[alerts]
rate_limit = "1000/m"

[alerts.sources.alertmanager]
kind = "alertmanager"
token = "{AM_TOKEN}"

[alerts.sources.grafana]
kind = "grafana"
basic_user = "grafana"
basic_password_env = "ICC_TEST_GRAFANA_PASSWORD"
token = "{GRAFANA_TOKEN}"

[alerts.sources.pagerduty]
kind = "pagerduty"
routing_keys = {json.dumps(CORPUS_ROUTING_KEYS)}

[alerts.sources.generic]
kind = "generic"
secret_env = "ICC_TEST_ALERT_SECRET"
fields = {{ dedup_key = "id", title = "name", status = "state", severity = "level", labels = "tags" }}

[alerts.sources.tiny]
kind = "alertmanager"
token = "{AM_TOKEN}"
rate_limit = "3/m"

[[alerts.routes]]
match = ['service="checkout"', 'severity=~"critical|page"']
service = "checkout"
severity = "SEV1"
action = "declare"

[[alerts.routes]]
match = ['team="search"']
action = "attach"
service = "search"

[[alerts.routes]]
match = ['severity="critical"', 'env!="staging"']
action = "declare"

[[alerts.routes]]
match = []
action = "triage"
"""


@pytest.fixture
def alert_config(app, tmp_path, monkeypatch):
    """The app with the test's [alerts] configuration; the alert tables emptied afterwards."""
    monkeypatch.setenv("ICC_TEST_ALERT_SECRET", SECRET)
    monkeypatch.setenv("ICC_TEST_GRAFANA_PASSWORD", GRAFANA_TOKEN)
    path = tmp_path / "icc.toml"
    path.write_text(CONFIG)
    previous = app.state.alert_config
    app.state.alert_config = load_alert_config(path)
    yield app.state.alert_config
    app.state.alert_config = previous


@pytest.fixture(autouse=True)
def _empty_alert_tables(request):
    yield
    if "database_url" in request.fixturenames:
        with psycopg.connect(_libpq(request.getfixturevalue("database_url")), autocommit=True) as conn:
            conn.execute(
                "TRUNCATE alerts, alert_dead_letters, alert_rate_windows, alert_signatures_seen,"
                " change_events RESTART IDENTITY"
            )


@pytest.fixture
def sender(app, alert_config):
    """A monitoring system: an HTTP client with no user credentials."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test"
    )


@pytest.fixture
async def api(api_as, responder):
    return await api_as(responder)


def am_headers(token: str = AM_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "content-type": "application/json"}


def signed(body: bytes, *, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = str(at if at is not None else int(time.time()))
    return {
        "content-type": "application/json",
        "X-ICC-Timestamp": stamp,
        "X-ICC-Signature": credentials.sign_alert_delivery(secret, stamp, body),
    }


def am_payload(*alerts_: dict, status: str = "firing", group_key: str = '{}:{alertname="X"}') -> dict:
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "icc",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts_),
    }


def am_alert(
    name: str = "HighErrorRate",
    *,
    status: str = "firing",
    fingerprint: str | None = "aaaabbbbccccdddd",
    **labels: str,
) -> dict:
    alert = {
        "status": status,
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} on {labels.get('service', 'somewhere')}"},
        "startsAt": "2026-11-23T13:58:00.123456789Z",
        "endsAt": "2026-11-23T14:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }
    if fingerprint:
        alert["fingerprint"] = fingerprint
    return alert


async def rows(session, sql: str, **params) -> list[tuple]:
    result = await session.execute(__import__("sqlalchemy").text(sql), params)
    return list(result.all())


# ---------------------------------------------------------------- parsing details


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-30T08:15:42.123456789Z", "2026-06-30T08:15:42.123456+00:00"),
        ("2017-05-09T07:01:37.803Z", "2017-05-09T07:01:37.803000+00:00"),
        ("2017-05-09T07:01:37.80300Z", "2017-05-09T07:01:37.803000+00:00"),
        ("2021-10-12T09:51:03.157076+02:00", "2021-10-12T07:51:03.157076+00:00"),
        ("2018-03-07T06:33:21.873077559-05:00", "2018-03-07T11:33:21.873077+00:00"),
        ("2015-07-17T08:42:58.315+0000", "2015-07-17T08:42:58.315000+00:00"),
        ("2026-06-30T08:15:42Z", "2026-06-30T08:15:42+00:00"),
    ],
)
def test_timestamps_with_3_to_9_digits_and_any_offset_parse_to_utc(text, expected):
    assert parse_timestamp(text, where="t").isoformat() == expected


def test_gos_zero_time_means_unset():
    assert parse_timestamp("0001-01-01T00:00:00Z", where="endsAt") is None


def test_a_timestamp_that_is_not_one_is_refused_naming_the_field():
    with pytest.raises(InvalidPayload, match=r"alerts\[0\]\.startsAt"):
        parse_timestamp("yesterday", where="alerts[0].startsAt")


def test_the_dedup_key_needs_both_fingerprint_and_labels_to_agree():
    same_labels = {"alertname": "X", "host": "a"}
    assert alert_identity("f1", same_labels) != alert_identity("f2", same_labels)
    assert alert_identity("f1", same_labels) != alert_identity("f1", {"alertname": "X", "host": "b"})
    assert alert_identity(None, {"b": "2", "a": "1"}) == alert_identity(None, {"a": "1", "b": "2"})


def test_matchers_follow_alertmanagers_syntax():
    assert parse_matcher('severity=~"critical|page"').matches({"severity": "page"})
    assert not parse_matcher('severity=~"critical|page"').matches({"severity": "paged"})  # anchored
    assert parse_matcher('env!="staging"').matches({})
    assert parse_matcher("team=search").matches({"team": "search"})
    with pytest.raises(ConfigError, match="invalid regex"):
        parse_matcher('x=~"("')


def test_a_broken_routing_rule_stops_start_up_with_one_line(tmp_path):
    path = tmp_path / "icc.toml"
    path.write_text('[[alerts.routes]]\nmatch = ["severity=critical"]\naction = "page-everyone"\n')
    with pytest.raises(ConfigError, match=r"alerts.routes\[0\].action"):
        load_alert_config(path)


# ---------------------------------------------------------------- each format


async def test_an_alertmanager_delivery_is_stored_normalised_with_its_raw_payload(sender, api, session):
    payload = am_payload(am_alert("DiskFull", severity="warning", service="orders-db", instance="db1"))
    response = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert response.status_code == 200, response.text
    assert response.json()["alerts"] == 1
    listed = (await api.get(f"{API}/alerts")).json()["items"]
    assert len(listed) == 1
    alert = listed[0]
    assert alert["source"] == "alertmanager"
    assert alert["status"] == "firing"
    assert alert["title"] == "DiskFull on orders-db"
    assert alert["severity"] == "warning"
    assert alert["labels"]["instance"] == "db1"
    assert alert["starts_at"] == "2026-11-23T13:58:00.123456Z"
    assert alert["ends_at"] is None
    assert alert["links"][0]["href"].startswith("http://prometheus:9090/")
    assert alert["route_action"] == "triage"  # a warning: the catch-all rule
    detail = (await api.get(f"{API}/alerts/{alert['id']}")).json()
    assert detail["raw"]["groupKey"] == '{}:{alertname="X"}'
    assert detail["raw"]["alerts"][0]["labels"]["alertname"] == "DiskFull"


async def test_a_resolve_updates_the_same_alert(sender, api):
    await sender.post(f"{API}/alerts/alertmanager", json=am_payload(am_alert()), headers=am_headers())
    resolved = am_payload(am_alert(status="resolved"), status="resolved")
    await sender.post(f"{API}/alerts/alertmanager", json=resolved, headers=am_headers())

    items = (await api.get(f"{API}/alerts")).json()["items"]
    assert len(items) == 1
    assert items[0]["status"] == "resolved"
    assert items[0]["resolved_at"] == "2026-11-23T14:05:00Z"
    assert items[0]["delivery_count"] == 2


async def test_grafana_accepts_basic_auth_and_put(sender, api):
    payload = (
        json.loads((CORPUS / "grafana" / "zulip_grafana_docs_example_firing_2alerts.json").read_bytes())
        if (CORPUS / "grafana").exists()
        else am_payload(am_alert(), am_alert("Other", fingerprint="ffff"))
    )
    basic = base64.b64encode(b"grafana:" + GRAFANA_TOKEN.encode()).decode()
    refused = await sender.put(
        f"{API}/alerts/grafana",
        json=payload,
        headers={"Authorization": "Basic " + base64.b64encode(b"grafana:no").decode()},
    )
    assert refused.status_code == 401
    response = await sender.put(
        f"{API}/alerts/grafana", json=payload, headers={"Authorization": f"Basic {basic}"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["alerts"] == 2


async def test_pagerduty_answers_as_pagerduty_does(sender, api):
    event = {
        "routing_key": "samplekeyhere",
        "event_action": "trigger",
        "dedup_key": "srv01/mysql",
        "payload": {
            "summary": "DISK at 99% on prod-datapipe03",
            "source": "prod-datapipe03.example.com",
            "severity": "critical",
            "timestamp": "2015-07-17T08:42:58.315+0000",
            "custom_details": {"free space": "1%", "ping time": 1500},
        },
    }
    response = await sender.post(f"{API}/alerts/pagerduty", json=event)

    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "srv01/mysql"}
    acknowledged = await sender.post(
        f"{API}/alerts/pagerduty",
        json={"routing_key": "samplekeyhere", "event_action": "acknowledge", "dedup_key": "srv01/mysql"},
    )
    assert acknowledged.status_code == 202
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]
    assert alert["title"] == "DISK at 99% on prod-datapipe03"
    assert alert["starts_at"] == "2015-07-17T08:42:58.315000Z"
    assert alert["annotations"]["ping time"] == "1500"
    assert alert["status"] == "firing"
    assert alert["acknowledged_by"] == "sender"
    await sender.post(
        f"{API}/alerts/pagerduty",
        json={"routing_key": "samplekeyhere", "event_action": "resolve", "dedup_key": "srv01/mysql"},
    )
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]
    assert alert["status"] == "resolved"
    assert alert["title"] == "DISK at 99% on prod-datapipe03"  # a bare resolve keeps what the trigger said


async def test_a_pagerduty_trigger_without_dedup_key_gets_a_stable_one(sender, api):
    event = {
        "routing_key": "samplekeyhere",
        "event_action": "trigger",
        "payload": {"summary": "Queue backlog 🚨", "source": "mq-1", "severity": "warning"},
    }
    first = (await sender.post(f"{API}/alerts/pagerduty", json=event)).json()["dedup_key"]
    again = (await sender.post(f"{API}/alerts/pagerduty", json=event)).json()["dedup_key"]

    assert first == again and first.startswith("icc-")
    assert len((await api.get(f"{API}/alerts")).json()["items"]) == 1


async def test_a_pagerduty_event_with_an_unknown_routing_key_is_refused(sender, api, session):
    event = {"routing_key": "not-ours", "event_action": "resolve", "dedup_key": "x"}
    response = await sender.post(f"{API}/alerts/pagerduty", json=event)

    assert response.status_code == 401
    assert "routing_key" in response.json()["detail"]
    (letter,) = await rows(session, "SELECT body FROM alert_dead_letters")
    assert "not-ours" not in letter[0] and MASK in letter[0]


async def test_a_signed_generic_webhook_is_mapped_by_its_field_paths(sender, api):
    body = json.dumps({"id": "job-42", "name": "Backup failed", "state": "alerting", "level": "critical",
                       "tags": {"service": "backups", "env": "prod"}}).encode()  # fmt: skip
    response = await sender.post(f"{API}/alerts/generic", content=body, headers=signed(body))

    assert response.status_code == 200, response.text
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]
    assert (alert["dedup_key"], alert["title"], alert["severity"]) == ("job-42", "Backup failed", "critical")
    assert alert["labels"] == {"service": "backups", "env": "prod"}
    resolved = json.dumps({"id": "job-42", "name": "Backup failed", "state": "ok"}).encode()
    await sender.post(f"{API}/alerts/generic", content=resolved, headers=signed(resolved))
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]
    assert alert["status"] == "resolved"


# ---------------------------------------------------------------- signatures and replay


async def test_a_wrong_signature_a_stale_timestamp_and_a_replay_are_refused(sender, api, session):
    body = json.dumps({"id": "1", "name": "Thing broke"}).encode()

    wrong = await sender.post(f"{API}/alerts/generic", content=body, headers=signed(body, secret="guess"))
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    stale = await sender.post(
        f"{API}/alerts/generic", content=body, headers=signed(body, at=int(time.time()) - 3600)
    )
    assert stale.status_code == 401 and "replay protection" in stale.json()["detail"]
    headers = signed(body)
    assert (await sender.post(f"{API}/alerts/generic", content=body, headers=headers)).status_code == 200
    replay = await sender.post(f"{API}/alerts/generic", content=body, headers=headers)
    assert replay.status_code == 409 and replay.json()["code"] == "replayed"
    tampered = await sender.post(f"{API}/alerts/generic", content=body + b" ", headers=signed(body))
    assert tampered.status_code == 401
    reasons = [r[0] for r in await rows(session, "SELECT status_code FROM alert_dead_letters ORDER BY id")]
    assert reasons == [401, 401, 409, 401]
    headers_kept = (await rows(session, "SELECT headers FROM alert_dead_letters ORDER BY id LIMIT 1"))[0][0]
    assert headers_kept["x-icc-signature"] == MASK


# ---------------------------------------------------------------- dedup under concurrency


async def test_concurrent_identical_deliveries_make_one_alert_and_one_incident(sender, api, session):
    payload = am_payload(am_alert("CheckoutDown", severity="critical", service="checkout"))

    responses = await asyncio.gather(
        *(sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers()) for _ in range(20))
    )

    assert [r.status_code for r in responses] == [200] * 20, [
        r.text for r in responses if r.status_code != 200
    ]
    assert await rows(session, "SELECT count(*), max(delivery_count) FROM alerts") == [(1, 20)]
    assert await rows(session, "SELECT count(*) FROM incidents") == [(1,)]
    assert await rows(session, "SELECT count(*) FROM timeline_entries WHERE kind = 'alert'") == [(1,)]


async def test_concurrent_alerts_of_one_group_open_one_incident(sender, session):
    deliveries = [
        am_payload(
            am_alert(
                "CheckoutDown", fingerprint=f"{n:016x}", severity="critical", service="checkout", pod=f"p{n}"
            )
        )
        for n in range(8)
    ]

    responses = await asyncio.gather(
        *(sender.post(f"{API}/alerts/alertmanager", json=p, headers=am_headers()) for p in deliveries)
    )

    assert all(r.status_code == 200 for r in responses)
    assert await rows(session, "SELECT count(*) FROM alerts") == [(8,)]
    assert await rows(session, "SELECT count(DISTINCT incident_id), count(incident_id) FROM alerts") == [
        (1, 8)
    ]
    assert await rows(session, "SELECT count(*) FROM incidents") == [(1,)]


async def test_same_fingerprint_different_labels_are_two_alerts(sender, api):
    payload = am_payload(
        am_alert("DiskSpace", fingerprint="ffffffffffffffff", instance="cs30"),
        am_alert("DiskSpace", fingerprint="ffffffffffffffff", instance="cs31"),
    )
    response = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert len(set(response.json()["alert_ids"])) == 2


# ---------------------------------------------------------------- routing


async def test_a_critical_checkout_alert_declares_a_sev1_and_its_resolve_prompts_the_ic(sender, api, session):
    firing = am_payload(am_alert("CheckoutDown", severity="critical", service="checkout"))
    response = await sender.post(f"{API}/alerts/alertmanager", json=firing, headers=am_headers())

    (ref,) = response.json()["incidents"]
    incident = (await api.get(f"{API}/incidents/{ref}")).json()
    assert incident["severity"] == "SEV1"
    assert incident["services"] == ["checkout"]
    timeline = (await api.get(f"{API}/incidents/{ref}/timeline")).json()["items"]
    assert [e["kind"] for e in timeline] == ["declared", "alert"]
    assert "Opened by alert: CheckoutDown on checkout" in timeline[1]["body"]

    resolved = am_payload(
        am_alert("CheckoutDown", status="resolved", severity="critical", service="checkout")
    )
    await sender.post(f"{API}/alerts/alertmanager", json=resolved, headers=am_headers())

    incident = (await api.get(f"{API}/incidents/{ref}")).json()
    assert incident["status"] == "triage"  # never resolved by itself
    timeline = (await api.get(f"{API}/incidents/{ref}/timeline")).json()["items"]
    assert timeline[-1]["kind"] == "alert"
    assert "the IC decides whether to resolve it" in timeline[-1]["body"]
    detail = await incidents.get_incident_detail(session, ref=ref)
    panel = await queries.alerts_of_incident(session, incident=detail.incident)
    assert panel.prompt_resolve


async def test_an_attach_rule_joins_the_open_incident_of_its_service(sender, api, responder, session):
    incident = await incidents.declare_incident(
        session, actor=responder, title="Search is slow", severity="SEV2", services=["search"]
    )
    payload = am_payload(am_alert("SearchLatency", severity="warning", team="search"))
    response = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert response.json()["incidents"] == [incident.ref]
    timeline = (await api.get(f"{API}/incidents/{incident.ref}/timeline")).json()["items"]
    assert timeline[-1]["kind"] == "alert" and timeline[-1]["body"].startswith("Firing: SearchLatency")


async def test_an_attach_rule_without_an_open_incident_leaves_the_alert_for_triage(sender, api):
    payload = am_payload(am_alert("SearchLatency", severity="warning", team="search"))
    response = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())

    assert response.json()["incidents"] == []
    unrouted = (await api.get(f"{API}/alerts", params={"unrouted": "true"})).json()["items"]
    assert [a["title"] for a in unrouted] == ["SearchLatency on somewhere"]


async def test_a_regex_and_a_not_equal_matcher_decide_the_route(sender, api):
    staging = am_payload(am_alert("DbDown", severity="critical", env="staging"), group_key="g1")
    prod = am_payload(
        am_alert("DbDown", fingerprint="1111222233334444", severity="critical", env="prod"), group_key="g2"
    )

    first = await sender.post(f"{API}/alerts/alertmanager", json=staging, headers=am_headers())
    second = await sender.post(f"{API}/alerts/alertmanager", json=prod, headers=am_headers())

    assert first.json()["incidents"] == []
    (ref,) = second.json()["incidents"]
    assert (await api.get(f"{API}/incidents/{ref}")).json()["severity"] == "SEV1"  # severity_map: critical


# ---------------------------------------------------------------- rate limit


async def test_a_source_over_its_rate_limit_gets_429_with_retry_after(sender, session):
    payload = am_payload(am_alert())
    statuses = [
        (await sender.post(f"{API}/alerts/alertmanager/tiny", json=payload, headers=am_headers())).status_code
        for _ in range(4)
    ]

    assert statuses == [200, 200, 200, 429]
    limited = await sender.post(f"{API}/alerts/alertmanager/tiny", json=payload, headers=am_headers())
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "limit of 3 deliveries per minute" in limited.json()["detail"]
    assert await rows(session, "SELECT hits FROM alert_rate_windows WHERE source = 'tiny'") == [(5,)]
    assert await rows(session, "SELECT count(*) FROM alert_dead_letters") == [(0,)]  # the sender retries it
    other = await sender.post(f"{API}/alerts/alertmanager", json=payload, headers=am_headers())
    assert other.status_code == 200  # per source


# ---------------------------------------------------------------- dead letters


@pytest.mark.parametrize(
    ("body", "headers", "status", "mentions"),
    [
        (b"{not json", am_headers(), 400, "not valid JSON"),
        (b"", am_headers(), 400, "empty"),
        (b'{"alerts": "many"}', am_headers(), 422, "alerts"),
        (b'{"alerts": [{"labels": {"a": "b"}}]}', am_headers(), 422, "alerts[0].status"),
        (b'{"status": "firing", "alerts": [{"labels": [1]}]}', am_headers(), 422, "alerts[0].labels"),
        (b'{"status": "firing", "alerts": [{"labels": {"a": "\\u0000"}}]}', am_headers(), 422, "NUL"),
        (json.dumps(am_payload(am_alert())).encode(), am_headers("wrong"), 401, "bearer token"),
        (json.dumps(am_payload(am_alert())).encode(), {}, 401, "needs Authorization"),
    ],
)
async def test_a_malformed_delivery_gets_a_clear_4xx_and_a_dead_letter(
    sender, session, body, headers, status, mentions
):
    response = await sender.post(f"{API}/alerts/alertmanager", content=body, headers=headers)

    assert response.status_code == status, response.text
    assert mentions in response.json()["detail"]
    assert await rows(session, "SELECT count(*) FROM alerts") == [(0,)]
    ((code, reason, kept_headers),) = await rows(
        session, "SELECT status_code, reason, headers FROM alert_dead_letters"
    )
    assert code == status and mentions in reason
    if "authorization" in kept_headers:
        assert kept_headers["authorization"] == f"Bearer {MASK}"


async def test_an_unknown_source_is_a_404_naming_the_configured_ones(sender):
    response = await sender.post(
        f"{API}/alerts/alertmanager/nope", json=am_payload(am_alert()), headers=am_headers()
    )

    assert response.status_code == 404
    assert "configured: alertmanager, tiny" in response.json()["detail"]


async def test_an_admin_replays_a_dead_letter_after_the_configuration_is_fixed(
    sender, api_as, admin, responder, alert_config, app, tmp_path
):
    payload = am_payload(am_alert("Late", severity="info"))
    refused = await sender.post(f"{API}/alerts/alertmanager/late-source", json=payload, headers=am_headers())
    assert refused.status_code == 404
    as_admin = await api_as(admin)
    (letter,) = (await as_admin.get(f"{API}/alert-dead-letters")).json()["items"]
    assert letter["source"] == "late-source" and letter["headers"]["authorization"] == f"Bearer {MASK}"
    assert (await (await api_as(responder)).get(f"{API}/alert-dead-letters")).status_code == 403

    failed = await as_admin.post(f"{API}/alert-dead-letters/{letter['id']}/replay")
    assert failed.status_code == 404
    path = tmp_path / "fixed.toml"
    path.write_text(CONFIG + f'\n[alerts.sources.late-source]\nkind = "alertmanager"\ntoken = "{AM_TOKEN}"\n')
    app.state.alert_config = load_alert_config(path)
    replayed = await as_admin.post(f"{API}/alert-dead-letters/{letter['id']}/replay")

    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["replay_alert_count"] == 1 and replayed.json()["replayed_by"] == admin.email
    (alert,) = (await as_admin.get(f"{API}/alerts", params={"source": "late-source"})).json()["items"]
    assert alert["title"] == "Late on somewhere"
    again = await as_admin.post(f"{API}/alert-dead-letters/{letter['id']}/replay")
    assert again.status_code == 409


# ---------------------------------------------------------------- people


async def test_acknowledging_an_alert_records_who_and_when_once(
    sender, api, api_as, viewer, responder, frozen_clock
):
    await sender.post(f"{API}/alerts/alertmanager", json=am_payload(am_alert()), headers=am_headers())
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]

    denied = await (await api_as(viewer)).post(f"{API}/alerts/{alert['id']}/acknowledge")
    assert denied.status_code == 403
    done = await api.post(f"{API}/alerts/{alert['id']}/acknowledge")
    assert done.status_code == 200
    assert done.json()["acknowledged_by"] == responder.email
    assert done.json()["acknowledged_at"] == "2026-11-23T14:00:00Z"
    again = await api.post(f"{API}/alerts/{alert['id']}/acknowledge")
    assert again.status_code == 409 and responder.name in again.json()["detail"]
    assert (await api.post(f"{API}/alerts/999999/acknowledge")).status_code == 404


async def test_linking_and_unlinking_by_hand_writes_the_timeline(sender, api, responder, session):
    incident = await incidents.declare_incident(session, actor=responder, title="Odd errors", severity="SEV3")
    await sender.post(f"{API}/alerts/alertmanager", json=am_payload(am_alert()), headers=am_headers())
    (alert,) = (await api.get(f"{API}/alerts")).json()["items"]

    linked = await api.put(f"{API}/alerts/{alert['id']}/incident", json={"incident": incident.ref})
    assert linked.status_code == 200 and linked.json()["incident"] == incident.ref
    assert (
        await api.put(f"{API}/alerts/{alert['id']}/incident", json={"incident": "INC-1"})
    ).status_code == 404
    unlinked = await api.delete(f"{API}/alerts/{alert['id']}/incident")
    assert unlinked.json()["incident"] is None and unlinked.json()["route_action"] == "triage"
    bodies = [e["body"] for e in (await api.get(f"{API}/incidents/{incident.ref}/timeline")).json()["items"]]
    assert bodies[-2].startswith("Linked [alert") and bodies[-1].startswith("Unlinked [alert")


async def test_the_alert_api_filters_by_status_source_service_and_since(sender, api, frozen_clock):
    await sender.post(
        f"{API}/alerts/alertmanager",
        json=am_payload(am_alert("A", service="orders-api")),
        headers=am_headers(),
    )
    frozen_clock.advance(minutes=10)
    resolved = am_payload(am_alert("B", fingerprint="0000000000000001", status="resolved", service="search"))
    await sender.post(f"{API}/alerts/alertmanager", json=resolved, headers=am_headers())
    body = json.dumps({"id": "g1", "name": "C"}).encode()
    await sender.post(
        f"{API}/alerts/generic", content=body, headers=signed(body, at=int(frozen_clock.now.timestamp()))
    )

    async def titles(**params) -> list[str]:
        response = await api.get(f"{API}/alerts", params=params)
        assert response.status_code == 200, response.text
        return [a["title"] for a in response.json()["items"]]

    assert await titles() == ["C", "B on search", "A on orders-api"]
    assert await titles(status="resolved") == ["B on search"]
    assert await titles(source="generic") == ["C"]
    assert await titles(service="orders-api") == ["A on orders-api"]  # the `service` label
    assert await titles(since="2026-11-23T14:05:00Z") == ["C", "B on search"]
    assert (await api.get(f"{API}/alerts", params={"status": "burning"})).status_code == 422
    assert (await api.get(f"{API}/alerts", params={"since": "2026-11-23T14:05:00"})).status_code == 422
    assert (await api.get(f"{API}/alerts")).status_code == 200
    assert (await sender.get(f"{API}/alerts")).status_code == 401


async def test_the_alert_pages_show_history_unrouted_queue_and_dead_letters(
    sender, api_as, client, admin, session
):
    from tests.conftest import sign_in

    await sender.post(
        f"{API}/alerts/alertmanager",
        json=am_payload(am_alert("<script>alert(1)</script>", severity="warning")),
        headers=am_headers(),
    )
    await sender.post(f"{API}/alerts/alertmanager", content=b"{", headers=am_headers())
    csrf = await sign_in(client, admin)

    page = await client.get("/alerts")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script>alert(1)" not in page.text
    fragment = await client.get("/alerts?view=unrouted", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith(
        '<div id="icc-alerts" data-live="/events" data-target="#icc-alerts">'
    )
    letters = await client.get("/alerts/dead-letters")
    assert "not valid JSON" in letters.text
    alert_id = (await rows(session, "SELECT id FROM alerts"))[0][0]
    detail = await client.get(f"/alerts/{alert_id}")
    assert detail.status_code == 200 and "Raw payload" in detail.text
    acked = await client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf, "back": "/alerts"})
    assert acked.status_code == 303 and acked.headers["location"] == "/alerts"
    assert "by sender" not in (await client.get("/alerts")).text


async def test_the_sources_page_shows_each_source_to_admins_with_credentials_masked(
    app, sender, client, admin, responder
):
    from tests.conftest import sign_in

    delivered = await sender.post(
        f"{API}/alerts/alertmanager",
        json=am_payload(am_alert("Disk", severity="warning")),
        headers=am_headers(),
    )
    assert delivered.status_code == 200
    await sender.post(f"{API}/alerts/alertmanager", content=b"{", headers=am_headers())
    await sign_in(client, admin)
    assert 'href="/alerts/sources"' in (await client.get("/alerts")).text

    page = await client.get("/alerts/sources")
    assert page.status_code == 200
    text = page.text
    for name in ("alertmanager", "grafana", "pagerduty", "generic", "tiny"):
        assert f"<strong>{name}</strong>" in text
    assert "http://test/api/v1/alerts/alertmanager</code>" in text
    assert "http://test/api/v1/alerts/alertmanager/tiny</code>" in text
    assert f"Bearer token {MASK}" in text and "HTTP basic auth, user grafana" in text
    assert "3/m" in text and "1000/m" in text
    assert (
        "severity=~&#34;critical|page&#34; → declare" in text or 'severity=~"critical|page" → declare' in text
    )
    assert "icc.toml" in text
    # The alertmanager source: one alert stored, one refused delivery in the last 24 hours.
    assert '1 <small class="muted">(1 in the last 24 h)</small>' in text
    assert '<a href="/alerts/dead-letters" class="warn">1</a>' in text
    for secret in (AM_TOKEN, GRAFANA_TOKEN, SECRET, *CORPUS_ROUTING_KEYS):
        assert secret not in text

    as_responder = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    await sign_in(as_responder, responder)
    assert (await as_responder.get("/alerts/sources")).status_code == 403
    assert 'href="/alerts/sources"' not in (await as_responder.get("/alerts")).text


async def test_an_unrouted_alert_wakes_the_live_alert_list(sender, app):
    """An alert left for triage writes no timeline entry; the ingest still announces a change to
    the /events subscribers (payload 0: no incident page hears it)."""
    async with app.router.lifespan_context(app):
        for _ in range(100):
            if app.state.listener.connected:
                break
            await asyncio.sleep(0.05)
        assert app.state.listener.connected
        with app.state.broker.subscribe() as everything, app.state.broker.subscribe(1) as one_incident:
            delivered = await sender.post(
                f"{API}/alerts/alertmanager",
                json=am_payload(am_alert("Quiet", severity="info")),
                headers=am_headers(),
            )
            assert delivered.status_code == 200 and delivered.json()["incidents"] == []
            async with asyncio.timeout(3):
                assert b"event: change\r\ndata: 0\r\n" in await everything.next_frames()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await one_incident.next_frames()


# ---------------------------------------------------------------- the corpus


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file())


async def test_every_corpus_payload_is_accepted_and_normalised_or_rejected_if_invalid(sender, api, session):
    files = _corpus_files()
    if not files:
        message = f"the alert corpus is missing: expected it at {CORPUS}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    seen_kinds = set()
    ids_by_file: dict[str, list[int]] = {}
    for path in files:
        kind = path.parent.name
        seen_kinds.add(kind)
        body = path.read_bytes()
        payload = json.loads(body)
        headers = {"content-type": "application/json"}
        if kind in ("alertmanager", "grafana"):
            headers["Authorization"] = f"Bearer {AM_TOKEN if kind == 'alertmanager' else GRAFANA_TOKEN}"
        before = (await rows(session, "SELECT count(*) FROM alert_dead_letters"))[0][0]
        response = await sender.post(f"{API}/alerts/{kind}", content=body, headers=headers)

        if "INVALID" in path.name:
            assert 400 <= response.status_code < 500, (path.name, response.text)
            assert "status" in response.json()["detail"], path.name
            after = (await rows(session, "SELECT count(*) FROM alert_dead_letters"))[0][0]
            assert after == before + 1, path.name
            continue
        if kind == "pagerduty":
            assert response.status_code == 202, (path.name, response.text)
            assert response.json()["status"] == "success"
            expected_key = payload.get("dedup_key")
            if expected_key:
                assert response.json()["dedup_key"] == expected_key
            stored = await rows(
                session,
                "SELECT status, title FROM alerts WHERE dedup_key = :k",
                k=response.json()["dedup_key"],
            )
            if payload["event_action"] == "trigger":
                assert len(stored) == 1, path.name
                assert stored[0][1] == " ".join(payload["payload"]["summary"].split())[:1024]
            else:
                # The corpus acknowledges and resolves a key it never triggered: PagerDuty drops
                # such an event, and so do we (tests/test_pagerduty_events.py triggers it first).
                assert stored == [], path.name
            continue
        assert response.status_code == 200, (path.name, response.text)
        ids = response.json()["alert_ids"]
        ids_by_file[path.name] = ids
        assert len(ids) == len(payload["alerts"]), path.name
        for alert_id, sent in zip(ids, payload["alerts"], strict=True):
            alert = (await api.get(f"{API}/alerts/{alert_id}")).json()
            expected_status = sent.get("status") or payload["status"]
            assert alert["status"] == expected_status, (path.name, alert_id)
            assert alert["labels"] == sent["labels"], path.name
            assert (alert["title"] != "Untitled alert") or not sent["labels"], path.name
            assert len(alert["title"]) <= 1024
            if sent.get("fingerprint"):
                assert alert["fingerprint"] == sent["fingerprint"]
            if expected_status == "resolved" and sent.get("endsAt", "").startswith("0001"):
                assert alert["ends_at"] is None and alert["resolved_at"] is not None
            assert alert["raw"]["alerts"] == [sent]
    assert seen_kinds == {"alertmanager", "grafana", "pagerduty"}

    # What the README points out, checked by name: neither a fingerprint nor a label set alone
    # is unique, so both pairs are two alerts each.
    assert len(set(ids_by_file["zulip_firing_2alerts_same_labels_distinct_fingerprints.json"])) == 2
    assert len(set(ids_by_file["prom2teams_resolved_2alerts_duplicate_fingerprint.json"])) == 2
    synthetic = await rows(
        session,
        "SELECT annotations->>'description' FROM alerts WHERE labels->>'mountpoint' = '/var/lib/数据'",
    )
    assert len(synthetic) == 1 and "<script>" in synthetic[0][0]  # kept as text; pages escape it
