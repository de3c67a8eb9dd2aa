"""Publication and the closing update in a real browser: an incident the README's Alertmanager
example opened is published from its page, and resolving an incident that is on the status page
asks for its closing update, prefilled and editable, in the same step. The server is a real
uvicorn; as everywhere (tests/support.py), the `browser` fixture is requested last."""

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents import service as incidents
from app.incidents.models import Incident
from app.status import updates as status
from tests import support
from tests.support import PHONE, WIDE, open_page, sign_in
from tests.test_publication import readme_alertmanager_delivery

browser = support.browser  # Chromium for one test; ask for it last
live_server = support.live_server


@pytest.fixture
def alert_declared(live_server: str) -> str:
    """The README's Alertmanager delivery, sent to the real server as Alertmanager would."""
    token, path, body = readme_alertmanager_delivery()
    response = httpx.post(
        live_server + path,
        content=body,
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
        trust_env=False,
    )
    assert response.status_code == 200, response.text
    [ref] = response.json()["incidents"]
    return ref


@pytest.fixture
async def on_the_page(session: AsyncSession, responder: User) -> str:
    """A SEV1 on checkout declared by the responder (so published), who is its IC."""
    incident = await incidents.declare_incident(
        session, actor=responder, title="Checkout returns 502", severity="SEV1", services=["checkout"]
    )
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    return incident.ref


def test_a_responder_publishes_an_alert_declared_incident_from_its_page(
    alert_declared: str, responder: User, live_server: str, browser_output_dir: Path, browser: Browser
) -> None:
    # Read without the browser, whose cache would keep this copy for its max-age of 10 s.
    before = httpx.get(f"{live_server}/status", trust_env=False).text
    assert "<h1>All systems operational</h1>" in before and "Checkout disruption" not in before

    page = open_page(browser, live_server)
    sign_in(page, responder)
    page.goto(f"/incidents/{alert_declared}")
    publication = page.locator(".publication")
    expect(publication).to_contain_text("Not on the status page.")
    page.screenshot(path=browser_output_dir / "incident-unpublished.png", full_page=True)
    page.get_by_role("button", name="Publish to status page").click()
    expect(publication).to_contain_text("On the status page since")
    expect(publication).to_contain_text(f"({responder.name})")
    expect(page.locator("#icc-timeline li.entry").last).to_contain_text("Published to the status page.")
    expect(page.get_by_role("button", name="Take off the status page")).to_be_visible()

    page.goto("/status")
    expect(page.locator(".status-banner h1")).to_have_text("Checkout is down")
    expect(page.locator(".status-incident h3")).to_have_text("Checkout disruption")
    page.context.close()


def test_resolving_an_incident_on_the_page_posts_its_prefilled_and_edited_closing_update(
    on_the_page: str, responder: User, live_server: str, browser_output_dir: Path, browser: Browser
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, responder)
    page.goto(f"/incidents/{on_the_page}")
    page.evaluate("window.__sameDocument = 'still here'")
    page.locator("summary", has_text="Resolve").click()
    closing = page.get_by_label("Closing update for the status page")
    expect(closing).to_be_visible()
    expect(closing).to_have_value(status.update_templates(Incident(services=["checkout"]))["resolved"])
    page.screenshot(path=browser_output_dir / "incident-resolve-closing-update.png", full_page=True)
    closing.fill("Checkout works again. Cause in brief: a bad deploy, rolled back. We will publish a review.")
    page.get_by_role("button", name="Resolve and post the update").click()

    head = page.locator(".incident-head")
    expect(head.locator(".stepper [aria-current=step]")).to_have_text("Resolved")
    expect(page.locator(".comms .update.public").first).to_contain_text("Checkout works again.")
    assert page.evaluate("window.__sameDocument") == "still here", "the page reloaded"

    page.goto("/status")
    expect(page.locator(".status-banner h1")).to_have_text("All systems operational")
    past = page.locator(".status-incident.resolved")
    expect(past.locator(".status-update").first).to_contain_text("Checkout works again.")
    expect(page.locator(".next-update")).to_have_count(0)
    page.set_viewport_size(PHONE)
    page.screenshot(path=browser_output_dir / "status-page-resolved-phone.png", full_page=True)
    page.set_viewport_size(WIDE)
    assert re.search(r"Resolved", past.locator(".status-line").inner_text())
    page.context.close()
