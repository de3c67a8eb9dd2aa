"""PagerDuty's own Python clients against the product: python-pagerduty (`pagerduty`, httpx2) and
pdpyras (requests), each given a base URL, against uvicorn serving HTTPS on 127.0.0.1
(python-pagerduty takes only https:// base URLs; trustme makes the certificate and its CA). The
base URLs, calls and answers here are the ones the README shows."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pagerduty
import pdpyras
import psycopg
import pytest
import trustme

from tests import test_alerts
from tests.conftest import _libpq
from tests.support import Tls, uvicorn_server

_empty_alert_tables = test_alerts._empty_alert_tables  # the alert tests' clean-up, by name

PD_KEY = "0123456789abcdef0123456789abcdef"  # source `pagerduty`: base URL the product itself
DEPLOY_KEY = "fedcba9876543210fedcba9876543210"  # source `deploys`: /api/v1/alerts/pagerduty/deploys
CONFIG = f"""
[alerts.sources.pagerduty]
kind = "pagerduty"
routing_keys = ["{PD_KEY}"]

[alerts.sources.deploys]
kind = "pagerduty"
routing_keys = ["{DEPLOY_KEY}"]

[[alerts.routes]]
sources = ["deploys"]
match = []
service = "checkout"
action = "triage"

[[alerts.routes]]
match = ['severity="critical"']
service_label = "component"
action = "declare"

[[alerts.routes]]
match = []
action = "triage"
"""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    certificate = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(folder / "ca.pem")
    certificate.private_key_pem.write_to_path(folder / "key.pem")
    for n, blob in enumerate(certificate.cert_chain_pems):
        blob.write_to_path(folder / "cert.pem", append=n > 0)
    return Tls(certfile=folder / "cert.pem", keyfile=folder / "key.pem", ca_file=folder / "ca.pem")


@pytest.fixture(scope="module")
def server(database_url: str, tls: Tls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The product over HTTPS with the two PagerDuty sources; yields its base URL."""
    folder = tmp_path_factory.mktemp("pd-server")
    (folder / "icc.toml").write_text(CONFIG)
    env = {"ICC_CONFIG": str(folder / "icc.toml")}
    with uvicorn_server(database_url, folder / "uvicorn.log", env, tls=tls) as base_url:
        yield base_url


def query(database_url: str, sql: str) -> list[tuple]:
    with psycopg.connect(_libpq(database_url)) as conn:
        return conn.execute(sql).fetchall()


def now() -> str:
    return datetime.now(UTC).isoformat()


def test_python_pagerduty_triggers_acknowledges_and_resolves_an_alert_and_sends_changes(
    server, tls, database_url
):
    events = pagerduty.EventsApiV2Client(
        PD_KEY, base_url=server, verify=tls.client_context(), trust_env=False
    )

    key = events.trigger(
        "Checkout returns 502",
        "web-2",
        dedup_key="checkout-502",
        severity="critical",
        payload={"component": "checkout", "timestamp": now()},
        custom_details={"error rate": "12%"},
        links=[{"href": "https://grafana.example.com/d/checkout", "text": "Dashboard"}],
    )
    assert key == "checkout-502"
    ((status, severity, service, on_incident, links),) = query(
        database_url, "SELECT status, severity, service, incident_id IS NOT NULL, links FROM alerts"
    )
    assert (status, severity, service, on_incident) == ("firing", "critical", "checkout", True)
    assert links == [{"href": "https://grafana.example.com/d/checkout", "text": "Dashboard"}]

    assert events.acknowledge(key) == key
    assert events.resolve(key) == key
    assert events.acknowledge(key) == key  # after the resolve: accepted, changes nothing
    assert query(database_url, "SELECT status, acknowledged_by_sender FROM alerts") == [("resolved", True)]
    (last,) = query(
        database_url, "SELECT body FROM timeline_entries WHERE kind = 'alert' ORDER BY id DESC LIMIT 1"
    )
    assert last[0].startswith("Resolved: Checkout returns 502") and "Every alert of this incident" in last[0]

    generated = events.trigger("Queue backlog", "mq-1", severity="warning")
    assert generated.startswith("icc-")

    deploys = pagerduty.EventsApiV2Client(
        DEPLOY_KEY,
        base_url=f"{server}/api/v1/alerts/pagerduty/deploys",
        verify=tls.client_context(),
        trust_env=False,
    )
    deploys.submit(
        "Deploy checkout v2.4.1",
        source="ci",
        custom_details={"build": 42},
        links=[{"href": "https://ci.example.com/builds/42", "text": "Build 42"}],
        timestamp=now(),
    )
    assert query(database_url, "SELECT source, summary, origin, service FROM change_events") == [
        ("deploys", "Deploy checkout v2.4.1", "ci", "checkout")
    ]

    with pytest.raises(pagerduty.HttpError) as refused:
        events.send_event("trigger", payload={"summary": "No source, no severity"})
    assert refused.value.response.status_code == 400
    assert refused.value.response.json() == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["payload.source: required for trigger events"],
    }


def test_pdpyras_triggers_acknowledges_and_resolves_an_alert_and_sends_changes(server, tls, database_url):
    events = pdpyras.EventsAPISession(PD_KEY)
    events.url = server
    events.verify = str(tls.ca_file)
    events.trust_env = False

    key = events.trigger("Disk 99% on db-1", "db-1", dedup_key="disk/db-1", severity="error")
    assert key == "disk/db-1"
    assert events.acknowledge(key) == key
    assert events.resolve(key) == key
    assert events.trigger("Disk 99% on db-1 again", "db-1", dedup_key=key, severity="error") == key
    assert query(database_url, "SELECT status, title, acknowledged_by_sender FROM alerts ORDER BY id") == [
        ("resolved", "Disk 99% on db-1", True),
        ("firing", "Disk 99% on db-1 again", False),  # a trigger after the resolve: a new alert
    ]

    changes = pdpyras.ChangeEventsAPISession(DEPLOY_KEY)
    changes.url = f"{server}/api/v1/alerts/pagerduty/deploys"
    changes.verify = str(tls.ca_file)
    changes.trust_env = False
    change_id = changes.submit("Rotate the TLS key", source="vault", custom_details={"who": "ops"})
    assert query(database_url, "SELECT id::text, service, custom_details FROM change_events") == [
        (change_id, "checkout", {"who": "ops"})
    ]

    with pytest.raises(pdpyras.PDHTTPError) as refused:
        events.send_event("resolve", dedup_key="x" * 256)
    assert refused.value.response.status_code == 400
    assert json.loads(refused.value.response.text)["status"] == "invalid event"
    assert query(database_url, "SELECT kind, status_code FROM alert_dead_letters") == [("pagerduty", 400)]
