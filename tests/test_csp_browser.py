"""The Content-Security-Policy, enforced in Chromium: every kind of page works without one
violation, diagrams included. An inline script, an inline style or an eval() anywhere in what a
page loads makes this test fail (see app/security.py for the policy)."""

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents import service as incidents
from tests import support
from tests.support import open_page, sign_in, wait_until

browser = support.browser  # Chromium for one test; ask for it last (see tests/support.py)

RUNBOOK = """---
id: RB-CSP
title: Checkout recovery
services: [checkout]
---

# Checkout recovery

Check the payment provider first.

```mermaid
flowchart TD
    A[Checkout errors] --> B{Provider down?}
    B -->|Yes| C[Fail over]
    B -->|No| D[Roll back]
```
"""

# Reported by the page (and the diagram renderer's frame) for every blocked load or inline use.
RECORD_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (e) => console.error(
    'csp-violation ' + e.effectiveDirective + ' blocked ' + (e.blockedURI || 'inline') +
    ' at ' + e.sourceFile + ':' + e.lineNumber));
"""


@pytest.fixture(scope="module")
def runbook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runbooks-csp") / "checkout.md"
    path.write_text(RUNBOOK, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(database_url: str, runbook: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("server-csp") / "uvicorn.log"
    with support.uvicorn_server(
        database_url, log_path, {"ICC_RUNBOOKS_DIR": str(runbook.parent)}
    ) as base_url:
        yield base_url


@pytest.fixture
def fresh_runbook(runbook: Path) -> None:
    """Each test empties the tables: a newer modification time makes the server index it again."""
    later = max(runbook.stat().st_mtime_ns + 1_000_000_000, time.time_ns())
    os.utime(runbook, ns=(later, later))


@pytest.fixture
async def incident_ref(session: AsyncSession, responder: User, fresh_runbook: None) -> str:
    incident = await incidents.declare_incident(
        session, actor=responder, title="Checkout returns 502", severity="SEV1", services=["checkout"]
    )
    await incidents.add_timeline_entry(
        session, actor=responder, ref=incident.ref, kind="note", body="**502s** from `checkout-api`"
    )
    return incident.ref


def watch_for_violations(page: Page) -> list[str]:
    found: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        text = message.text
        if text.startswith("csp-violation") or "Content Security Policy" in text:
            found.append(f"{page.url}: {text}")

    page.add_init_script(RECORD_VIOLATIONS)
    page.on("console", on_console)
    page.on("pageerror", lambda exc: found.append(f"{page.url}: page error {exc}"))
    return found


def assert_diagram_drawn_and_styled(page: Page, scope: str) -> None:
    wait_until(page, "document.querySelectorAll('pre.mermaid:not([data-done=error])').length === 0")
    expect(page.locator(f"{scope} figure.diagram > svg")).to_have_count(1)
    # Its style sheet applies: the shapes are filled with the theme's colour, not SVG's black.
    fill = page.locator(f"{scope} figure.diagram g.node rect, {scope} figure.diagram g.node polygon").first
    assert fill.evaluate("el => getComputedStyle(el).fill") not in ("rgb(0, 0, 0)", "none")


def test_every_kind_of_page_works_under_the_policy_without_a_violation(
    incident_ref: str, responder: User, server: str, browser: Browser
) -> None:
    page = open_page(browser, server)
    violations = watch_for_violations(page)

    sign_in(page, responder)  # the sign-in page, then the incident list
    expect(page.locator("main")).to_contain_text("Checkout returns 502")
    page.get_by_role("link", name="Checkout returns 502").first.click()
    expect(page.locator("#icc-timeline")).to_contain_text("502s")

    # The incident page works: an entry posted with HTMX, and a runbook with a diagram in the modal.
    page.keyboard.press("n")
    page.keyboard.type("Provider status page is green")
    page.keyboard.press("Enter")
    expect(page.locator("#icc-timeline li.entry").last).to_contain_text("Provider status page is green")
    page.locator("ul.suggested a", has_text="RB-CSP").click()
    wait_until(page, "document.getElementById('icc-modal').matches(':modal')")
    assert_diagram_drawn_and_styled(page, "#icc-modal")
    page.keyboard.press("Escape")

    for path, shows in (
        ("/dashboard", "SEV1"),
        ("/alerts", "Alerts"),
        ("/runbooks", "Checkout recovery"),
        ("/actions/runs", "Action runs"),
        ("/status", "Services"),
    ):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(shows)

    page.goto("/runbooks/RB-CSP")
    assert_diagram_drawn_and_styled(page, ".doc")

    page.goto("/api/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/incidents/{ref}").first).to_be_visible()

    page.wait_for_timeout(300)  # reports are queued as tasks: let the last ones arrive
    assert violations == []
    page.context.close()


def test_a_page_cannot_run_an_inline_script_or_load_one_from_elsewhere(
    responder: User, server: str, browser: Browser
) -> None:
    page = open_page(browser, server)
    violations = watch_for_violations(page)
    page.goto("/login")
    ran = page.evaluate(
        """() => {
            window.ran = [];
            const inline = document.createElement('script');
            inline.textContent = 'window.ran.push("inline")';
            document.head.append(inline);
            const remote = document.createElement('script');
            remote.src = 'https://cdn.example.com/x.js';
            document.head.append(remote);
            document.body.insertAdjacentHTML('beforeend', '<img src=x onerror="window.ran.push(1)">');
            return new Promise((done) => setTimeout(() => done(window.ran), 300));
        }"""
    )
    assert ran == []
    blocked = " ".join(violations)
    assert "script-src-elem blocked inline" in blocked
    assert "script-src-elem blocked https://cdn.example.com/x.js" in blocked
    assert "script-src-attr blocked inline" in blocked
    page.context.close()


def test_the_runbook_diagram_frame_is_sandboxed_and_cannot_reach_the_page(
    incident_ref: str, responder: User, server: str, browser: Browser
) -> None:
    page = open_page(browser, server)
    sign_in(page, responder)
    page.goto("/runbooks/RB-CSP")
    wait_until(page, "document.querySelectorAll('pre.mermaid:not([data-done=error])').length === 0")
    frame = page.locator("iframe.diagram-renderer")
    expect(frame).to_have_attribute("sandbox", "allow-scripts")
    renderer = next(f for f in page.frames if f.url.endswith("/runbooks/diagram-renderer"))
    assert (
        renderer.evaluate("() => { try { return !!window.parent.document; } catch (e) { return false; } }")
        is False
    )
    assert renderer.evaluate("() => { try { return document.cookie; } catch (e) { return 'refused'; } }") == (
        "refused"
    )
    page.context.close()


def test_the_api_docs_use_the_pinned_swagger_ui_from_this_site(server: str, browser: Browser) -> None:
    page = open_page(browser, server)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/api/docs")
    expect(page.locator(".opblock").first).to_be_visible()
    assert requested and all(url.startswith(server) for url in requested), requested
    assert Path(support.REPO / "static" / "vendor" / "swagger-ui-bundle.js").is_file()
    page.context.close()
