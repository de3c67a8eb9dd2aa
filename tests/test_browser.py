"""Real-browser tests: Debian's Chromium, driven by Playwright, against a real uvicorn server on
the test database. They check what a responder or a viewer sees and can do on the pages.

Playwright's sync API marks its own event loop as running while it is started, so no async
fixture may run then: the `browser` fixture is function-scoped and every test asks for it last,
after the async user fixtures (see tests/support.py). The server's output goes to uvicorn.log
in pytest's temporary directory (`server*/`), shown when it fails to start.
"""

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents import service
from tests import support
from tests.support import PHONE, WIDE, open_page, sign_in, timeline_of

browser = support.browser  # Chromium for one test; ask for it last
live_server = support.live_server  # module-scoped: one server for this module's tests


def focus_is_on_body(page: Page) -> None:
    """Where focus is when the scribe has just clicked somewhere else on the page."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    assert page.evaluate("document.activeElement === document.body")


def log_with_keyboard(page: Page, text: str, *, shortcut: str = "n") -> None:
    """Focus the box with the shortcut, type, press Enter; wait for the entry to appear."""
    box = page.locator("#icc-entry-body")
    page.keyboard.press(shortcut)
    expect(box).to_be_focused()
    expect(box).to_have_value("")  # the shortcut key itself is not typed into the box
    page.keyboard.type(text)
    page.keyboard.press("Enter")
    shown = text.removeprefix("/d ").removeprefix("/a ")
    expect(page.locator("#icc-timeline li.entry").last).to_contain_text(shown)
    expect(box).to_have_value("")
    expect(box).to_be_focused()


@pytest.fixture
async def declared(session: AsyncSession, responder: User) -> str:
    """A SEV2 incident declared by the responder, with one note in its timeline."""
    incident = await service.declare_incident(
        session, actor=responder, title="Search is slow", severity="SEV2", services="search"
    )
    await service.add_timeline_entry(
        session, actor=responder, ref=incident.ref, kind="note", body="p99 latency at 4 s on search-api"
    )
    return incident.ref


def test_responder_runs_an_incident_from_the_keyboard(
    responder: User, live_server: str, browser_output_dir: Path, browser: Browser
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, responder)

    page.get_by_role("link", name="Declare incident").click()
    page.get_by_label("Title").fill("Checkout returns 502")
    page.locator("label.sev-option", has_text="SEV2").locator("input").check()
    page.get_by_label("Affected services").fill("checkout, payments-api")
    page.get_by_role("button", name="Declare").click()
    page.wait_for_url("**/incidents/INC-*")
    ref = page.url.rsplit("/", 1)[1]

    head = page.locator(".incident-head")
    expect(head.locator("h1")).to_have_text("Checkout returns 502")
    expect(head.locator(".sev.big")).to_have_text("SEV2")
    expect(head.locator(".stepper [aria-current=step]")).to_have_text("Triage")
    expect(page.locator(".side")).to_contain_text("checkout, payments-api")
    expect(page.locator("section.timers [data-timer]")).to_have_count(3)
    expect(page.locator("#icc-timeline")).to_contain_text("Declared SEV2: Checkout returns 502")

    # "I'll be the Incident Commander" is ticked on the form: the declarer runs it from the start.
    commander = page.locator(".role.ic dd")
    expect(commander).to_contain_text(f"{responder.name} (you)")
    expect(page.locator("#icc-timeline")).to_contain_text(f"{responder.name} is Incident Commander.")
    expect(page.get_by_role("button", name="Take IC")).to_have_count(0)

    page.evaluate("window.__sameDocument = 'still here'")
    focus_is_on_body(page)
    log_with_keyboard(page, "Rolled back checkout to v41, 502s dropping")
    focus_is_on_body(page)
    log_with_keyboard(page, "/d Keep payments-api in read-only mode until 10:00")
    focus_is_on_body(page)
    log_with_keyboard(page, "Error rate back under 1%", shortcut="/")
    assert page.evaluate("window.__sameDocument") == "still here", "the page reloaded"

    entries = page.locator("#icc-timeline li.entry")
    decision = entries.filter(has_text="Keep payments-api in read-only mode")
    expect(decision).to_have_class("entry kind-decision")
    expect(decision.locator(".kind")).to_have_text("decision")
    expect(decision).not_to_contain_text("/d")
    for text in ("Rolled back checkout to v41", "Error rate back under 1%"):
        expect(entries.filter(has_text=text).locator(".kind")).to_have_text("note")

    page.locator("summary", has_text="Change severity").click()
    severity_form = page.locator("form[action$='/severity']")
    severity_form.get_by_label("New severity").select_option("SEV1")
    severity_form.get_by_label("Reason").fill("Payments failing for all EU customers")
    severity_form.get_by_role("button", name="Change severity").click()
    expect(head.locator(".sev.big")).to_have_text("SEV1")
    expect(page.locator("#icc-timeline")).to_contain_text(
        "Raised severity SEV2 → SEV1: Payments failing for all EU customers"
    )
    assert page.evaluate("window.__sameDocument") == "still here"

    page.screenshot(path=browser_output_dir / "incident-page-wide.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=browser_output_dir / "incident-page-phone.png", full_page=True)
    page.set_viewport_size(WIDE)

    # Checkout is on the status page: resolving asks for the closing public update.
    page.locator("summary", has_text="Resolve").click()
    page.get_by_role("button", name="Resolve and post the update").click()
    expect(head.locator(".stepper [aria-current=step]")).to_have_text("Resolved")
    expect(page.locator("#icc-timeline")).to_contain_text("Status: Triage → Resolved.")
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    page.screenshot(path=browser_output_dir / "incident-page-resolved-wide.png", full_page=True)

    # What the timeline holds, read back from the server: three entries of ours, one decision.
    items = timeline_of(page, live_server, ref)
    mine = [(e["kind"], e["body"]) for e in items if e["kind"] in ("note", "decision")]
    assert mine == [
        ("note", "Rolled back checkout to v41, 502s dropping"),
        ("decision", "Keep payments-api in read-only mode until 10:00"),
        ("note", "Error rate back under 1%"),
    ]
    assert [e["kind"] for e in items][-3:] == ["severity", "status", "update"]

    page.goto("/incidents")
    expect(page.locator("table.incidents.resolved")).to_contain_text("Checkout returns 502")
    page.screenshot(path=browser_output_dir / "incident-list.png", full_page=True)
    page.context.close()


def test_viewer_sees_the_incident_but_no_write_controls(
    declared: str, viewer: User, live_server: str, browser_output_dir: Path, browser: Browser
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, viewer)
    expect(page.locator("table.incidents")).to_contain_text("Search is slow")
    page.screenshot(path=browser_output_dir / "incident-list-active.png", full_page=True)
    page.get_by_role("link", name="Search is slow").click()
    page.wait_for_url(f"**/incidents/{declared}")

    expect(page.locator(".incident-head h1")).to_have_text("Search is slow")
    expect(page.locator(".incident-head .sev.big")).to_have_text("SEV2")
    expect(page.locator("#icc-timeline")).to_contain_text("p99 latency at 4 s on search-api")
    timers = page.locator("section.timers [data-timer]")
    expect(timers).to_have_count(3)
    expect(timers.first).to_contain_text("left")  # counting down, not a static placeholder

    expect(page.locator("#icc-entry-body")).to_have_count(0)
    expect(page.locator("textarea")).to_have_count(0)
    for name in ("Acknowledge", "Resolve", "Take", "Take IC", "Change severity", "Declare incident"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)
    expect(page.get_by_role("link", name="Declare incident")).to_have_count(0)
    expect(page.locator("summary")).to_have_count(0)  # no Assign, Add SME, ⋯ edit menus
    expect(page.locator("[hx-post], [hx-put], [hx-patch], [hx-delete]")).to_have_count(0)
    actions = page.locator("form[method=post]").evaluate_all("forms => forms.map(f => f.action)")
    assert actions == [f"{live_server}/logout"]
    expect(page.get_by_role("button")).to_have_text(["Sign out"])
    page.screenshot(path=browser_output_dir / "incident-page-viewer-wide.png", full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=browser_output_dir / "incident-page-viewer-phone.png", full_page=True)
    page.context.close()


def test_typed_entry_survives_a_refused_post(
    declared: str, responder: User, live_server: str, browser: Browser
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, responder)
    page.goto(f"/incidents/{declared}")
    box = page.locator("#icc-entry-body")
    error = page.locator("#icc-entry-error")
    page.evaluate("window.__sameDocument = 'still here'")

    # An impossible back-dating time, typed as a scribe would.
    focus_is_on_body(page)
    page.keyboard.press("n")
    typed = "@25:99 failover to the standby database"
    page.keyboard.type(typed)
    page.keyboard.press("Enter")
    expect(error).to_contain_text("25:99 is not a time of day.")
    expect(error.get_by_role("alert")).to_be_visible()
    expect(box).to_have_value(typed)
    expect(box).to_be_focused()

    # Longer than the 20,000 characters an entry may hold.
    too_long = "x" * 20_001
    box.fill(too_long)
    box.press("Enter")
    expect(error).to_contain_text("The entry is too long (20,001 characters; the limit is 20,000).")
    expect(box).to_have_value(too_long)
    expect(box).to_be_focused()

    # Nothing was written.
    expect(page.locator("#icc-timeline li.entry")).to_have_count(2)  # declared + the note
    assert [e["body"] for e in timeline_of(page, live_server, declared)] == [
        "Declared SEV2: Search is slow. Affected: search.",
        "p99 latency at 4 s on search-api",
    ]
    assert page.evaluate("window.__sameDocument") == "still here", "the page reloaded"
    page.context.close()


def test_corrected_entry_posts_and_clears_the_message(
    declared: str, responder: User, live_server: str, browser: Browser
) -> None:
    page = open_page(browser, live_server)
    sign_in(page, responder)
    page.goto(f"/incidents/{declared}")
    box = page.locator("#icc-entry-body")
    error = page.locator("#icc-entry-error")
    focus_is_on_body(page)
    page.keyboard.press("n")
    page.keyboard.type("@25:99 failover to the standby database")
    page.keyboard.press("Enter")
    expect(error).to_contain_text("25:99 is not a time of day.")

    box.fill("Failover to the standby database at 14:02")
    box.press("Enter")
    expect(page.locator("#icc-timeline li.entry").last).to_contain_text("Failover to the standby database")
    expect(error).to_be_empty()
    expect(box).to_have_value("")
    expect(box).to_be_focused()
    page.context.close()
