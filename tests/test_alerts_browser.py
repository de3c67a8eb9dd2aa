"""The alert history page in a real browser: alerts posted to a real uvicorn server by a real HTTP
client (as Alertmanager would), then read, filtered and acknowledged by a responder. Screenshots
go to test-output/. As everywhere (tests/support.py), the `browser` fixture is requested last."""

from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, expect

from app.alerts.config import DEV_CREDENTIALS
from app.auth.models import User
from tests import support
from tests.conftest import _libpq
from tests.support import PHONE, open_page, sign_in
from tests.test_alerts import am_alert, am_payload

browser = support.browser  # Chromium for one test; ask for it last
live_server = support.live_server


@pytest.fixture(autouse=True)
def _empty_alert_tables(request):
    yield
    if "database_url" in request.fixturenames:
        with psycopg.connect(_libpq(request.getfixturevalue("database_url")), autocommit=True) as conn:
            conn.execute("TRUNCATE alerts, alert_dead_letters, alert_rate_windows, alert_signatures_seen")


def post_alerts(base_url: str) -> None:
    """What an Alertmanager with the default source would send: a page, a warning, a resolve."""
    headers = {"Authorization": f"Bearer {DEV_CREDENTIALS['ICC_ALERTMANAGER_TOKEN']}"}
    deliveries = [
        am_payload(am_alert("CheckoutDown", severity="critical", service="checkout"), group_key="checkout"),
        am_payload(
            am_alert(
                "DiskAlmostFull", fingerprint="1111000011110000", severity="warning", service="orders-db"
            ),
            group_key="disk",
        ),
        am_payload(
            am_alert("CertExpiring", fingerprint="2222000022220000", status="resolved", severity="info"),
            status="resolved",
            group_key="certs",
        ),
    ]
    with httpx.Client(base_url=base_url, headers=headers) as sender:
        for payload in deliveries:
            response = sender.post("/api/v1/alerts/alertmanager", json=payload)
            assert response.status_code == 200, response.text
        refused = sender.post("/api/v1/alerts/alertmanager", content=b'{"alerts": [}')
        assert refused.status_code == 400


def test_a_responder_reads_filters_and_acknowledges_alerts(
    responder: User, live_server: str, browser_output_dir: Path, browser: Browser
) -> None:
    post_alerts(live_server)
    page = open_page(browser, live_server)
    sign_in(page, responder)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts").click()
    page.wait_for_url("**/alerts")
    rows = page.locator("#icc-alerts tbody tr")
    expect(rows).to_have_count(3)
    checkout = rows.filter(has_text="CheckoutDown")
    expect(checkout).to_contain_text("Firing")
    expect(checkout.locator("a .ref")).to_contain_text("INC-")  # declared by the default rule
    expect(rows.filter(has_text="DiskAlmostFull")).to_contain_text("unrouted")
    expect(page.get_by_role("link", name="Unrouted 1")).to_be_visible()
    page.screenshot(path=str(browser_output_dir / "alerts-history.png"), full_page=True)

    page.get_by_label("Status").select_option("resolved")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("CertExpiring")
    page.get_by_label("Status").select_option("")
    expect(rows).to_have_count(3)

    rows.filter(has_text="DiskAlmostFull").get_by_role("button", name="Acknowledge").click()
    expect(rows.filter(has_text="DiskAlmostFull")).to_contain_text(responder.name)

    checkout.locator("a.alert-title").click()
    expect(page.locator("h1")).to_have_text("CheckoutDown on checkout")
    page.locator("dd a .ref").click()
    panel = page.locator(".linked-alerts")
    expect(panel).to_contain_text("CheckoutDown on checkout")
    expect(panel).to_contain_text("1 firing / 1")
    expect(page.locator("#icc-timeline")).to_contain_text("Opened by alert: CheckoutDown on checkout")
    page.screenshot(path=str(browser_output_dir / "alerts-incident-panel.png"), full_page=False)

    page.set_viewport_size(PHONE)
    page.goto("/alerts")
    expect(rows).to_have_count(3)
    page.screenshot(path=str(browser_output_dir / "alerts-history-phone.png"), full_page=True)
