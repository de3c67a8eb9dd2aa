"""Actions in a real browser: from a runbook opened beside an incident, the recommended action's
button opens the preview dialog; confirming it calls a real local receiver and the result shows
in the dialog and on the timeline. Screenshots of the dialog go to test-output/.

The server is its own uvicorn process (tests/support.py) with an icc.toml whose
[actions] point at a receiver this test runs on 127.0.0.1, and a runbooks directory it fills.
As everywhere, the `browser` fixture is requested last, after the async ones.
"""

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents import service as incidents
from tests import support
from tests.support import open_page, sign_in, timeline_of
from tests.test_actions import SECRET, Receiver

browser = support.browser  # Chromium for one test; ask for it last (see tests/support.py)

RUNBOOK = """---
id: RB-CACHE
title: Stale prices in checkout
services: [checkout]
actions: [cache-purge, service-restart]
---

# Stale prices in checkout

Purge the cache for the checkout service, then watch the price checks recover.
"""


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    threading.Thread(target=r.server.serve_forever, daemon=True).start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def live_server(
    database_url: str, receiver: Receiver, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    home = tmp_path_factory.mktemp("actions-server")
    (home / "runbooks").mkdir()
    (home / "runbooks" / "rb-cache.md").write_text(RUNBOOK)
    (home / "icc.toml").write_text(
        f"""
[actions]
base_url = "http://127.0.0.1:{receiver.port}"
allowlist = ["127.0.0.1:{receiver.port}"]
allow_private = ["127.0.0.1"]
signing_secret_env = "ICC_BROWSER_TEST_SECRET"

[actions.cache-purge]
url = "{{base_url}}/ok"
body = {{ incident = "{{ref}}", services = "{{services}}", by = "{{user_email}}" }}
cooldown = "none"

[actions.service-restart]
url = "{{base_url}}/ok"
cooldown = "none"
"""
    )
    env = {
        "ICC_CONFIG": str(home / "icc.toml"),
        "ICC_RUNBOOKS_DIR": str(home / "runbooks"),
        "ICC_BROWSER_TEST_SECRET": SECRET,
    }
    with support.uvicorn_server(database_url, home / "uvicorn.log", env) as base_url:
        yield base_url


@pytest.fixture
async def declared(session: AsyncSession, responder: User) -> str:
    incident = await incidents.declare_incident(
        session,
        actor=responder,
        title="Checkout shows yesterday's prices",
        severity="SEV2",
        services="checkout",
    )
    return incident.ref


def test_a_runbook_recommendation_opens_the_preview_and_runs_only_when_confirmed(
    declared: str,
    responder: User,
    receiver: Receiver,
    live_server: str,
    browser_output_dir: Path,
    browser: Browser,
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, responder)
    page.goto(f"/incidents/{declared}")
    expect(page.locator("#icc-actions-h")).to_have_text("Actions")

    page.get_by_role("link", name="RB-CACHE Stale prices in checkout").click()
    modal = page.locator("#icc-modal")
    expect(modal.locator(".sheet-title")).to_have_text("Stale prices in checkout")
    before = len(receiver.on("/ok"))
    modal.get_by_role("button", name="Run cache-purge").click()

    dialog = modal.locator(".action-dialog")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h1")).to_contain_text("Cache purge")
    preview = dialog.locator("dl.preview")
    expect(preview).to_contain_text(f"POST http://127.0.0.1:{receiver.port}/ok")
    expect(preview).to_contain_text(f'"incident": "{declared}"')
    expect(preview).to_contain_text("X-ICC-Signature: sha256=••••••")
    expect(dialog.locator(".sheet-incident")).to_contain_text(declared)
    expect(dialog.locator(".sheet-incident")).to_contain_text(f"as {responder.name}")
    expect(dialog.locator(".run-status")).to_contain_text("Awaiting confirmation")
    assert len(receiver.on("/ok")) == before, "opening the dialog must send nothing"
    dialog.screenshot(path=browser_output_dir / "action-dialog-preview.png")

    dialog.get_by_role("button", name="Confirm and run").click()
    expect(dialog.locator(".run-status")).to_contain_text("Succeeded")
    expect(dialog.locator(".run-status")).to_contain_text("HTTP 200")
    expect(dialog.locator("pre.excerpt").first).to_contain_text('"ok": true')
    expect(modal).to_be_visible()
    dialog.screenshot(path=browser_output_dir / "action-dialog-result.png")
    expect(page.locator("#icc-timeline")).to_contain_text("Ran webhook cache-purge (Cache purge): succeeded")
    hits = receiver.on("/ok")[before:]
    assert len(hits) == 1 and hits[0]["signature_valid"]

    page.keyboard.press("Escape")
    expect(modal).not_to_be_visible()
    expect(page.locator(".runs")).to_contain_text("Succeeded")

    # A dangerous action from the Actions panel asks for its name.
    page.locator(".action-list").get_by_role("button", name="Service restart").click()
    dialog = page.locator("#icc-modal .action-dialog")
    expect(dialog.get_by_role("button", name="Confirm and run")).to_be_visible()
    dialog.get_by_label("This changes production").fill("service-restart")
    dialog.screenshot(path=browser_output_dir / "action-dialog-dangerous.png")
    dialog.get_by_role("button", name="Confirm and run").click()
    expect(dialog.locator(".run-status")).to_contain_text("Succeeded")

    items = timeline_of(page, live_server, declared)
    assert [e["body"].split(":")[0] for e in items if e["kind"] == "action_run"] == [
        "Ran webhook `cache-purge` (Cache purge)",
        "Ran webhook `service-restart` (Service restart)",
    ]
    page.goto("/actions/runs")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    page.screenshot(path=browser_output_dir / "action-history.png", full_page=True)
    page.context.close()
