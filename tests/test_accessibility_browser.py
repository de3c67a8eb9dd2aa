"""Every kind of page, in Chromium, on the demo data: axe-core finds no critical or serious
violation in the light or the dark theme, nothing is wider than a 360 px or 390 px phone, every
page has its icon, and the incident page keeps what matters in its header and its tab.

axe-core comes from npm, pinned in static/package.json like htmx, and is loaded into each page
from /static/vendor (same origin: the pages' Content-Security-Policy allows it). One browser per
test, one signed-in context per theme or width; as everywhere (tests/support.py) the `browser`
fixture is requested last.
"""

import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.actions import service as actions
from app.actions.catalog import get_catalog
from app.auth.models import User
from app.demo import DEMO_PASSWORD, load_demo
from app.incidents import service as incidents
from app.incidents.models import Incident, TimelineEntry
from tests import support
from tests.conftest import _libpq
from tests.support import PHONE, REPO, WIDE, wait_until

browser = support.browser  # Chromium for one test; ask for it last (see tests/support.py)

AXE = "/static/vendor/axe.min.js"
SEV1_TITLE = "Checkout returns 502 for most users"
BLOCKING = ("critical", "serious")
# What each violation is reported with: the rule, its impact, where, and how to fix it.
RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map((v) => ({
        id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
        targets: v.nodes.map((n) => n.target.join(' ')).slice(0, 5), count: v.nodes.length,
    }));
}"""
# The deepest elements that reach past the window's right edge, to say what made a page too wide.
WIDER_THAN_WINDOW = """() => {
    const width = window.innerWidth;
    const past = (el) => el.getBoundingClientRect().right > width + 0.5
        || el.scrollWidth > el.clientWidth + 1;
    const named = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
        + (typeof el.className === 'string' && el.className.trim()
            ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
    return Array.from(document.querySelectorAll('body *'))
        .filter((el) => past(el) && !Array.from(el.children).some(past))
        .slice(0, 8)
        .map((el) => named(el) + ' right=' + Math.round(el.getBoundingClientRect().right)
            + ' scrollWidth=' + el.scrollWidth);
}"""


@pytest.fixture(autouse=True)
def _empty_alert_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "database_url" in request.fixturenames:
        with psycopg.connect(_libpq(request.getfixturevalue("database_url")), autocommit=True) as conn:
            conn.execute("TRUNCATE alerts, alert_dead_letters, alert_rate_windows, alert_signatures_seen")


@pytest.fixture(scope="module")
def runbooks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's runbooks (RB-000 among them), whose times the tests may move."""
    copy = tmp_path_factory.mktemp("runbooks-a11y") / "runbooks"
    shutil.copytree(REPO / "runbooks", copy)
    return copy


@pytest.fixture(scope="module")
def server(database_url: str, runbooks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_path = tmp_path_factory.mktemp("server-a11y") / "uvicorn.log"
    with support.uvicorn_server(database_url, log_path, {"ICC_RUNBOOKS_DIR": str(runbooks_dir)}) as base_url:
        yield base_url


@dataclass(frozen=True)
class Demo:
    ref: str  # the checkout SEV1, run by Sam
    overdue_ref: str  # a SEV1 whose every timer is overdue by more than an hour
    edited_entry: int
    base_url: str


@pytest.fixture
async def demo(session: AsyncSession, runbooks_dir: Path, server: str) -> Demo:
    """The demo data (as `icc serve --demo` loads it) and one action run on the SEV1. Each test
    empties the tables: newer file times make the server index the runbooks again."""
    later = time.time_ns() + 1_000_000_000
    for path in sorted(os.listdir(runbooks_dir)):
        os.utime(runbooks_dir / path, ns=(later, later))
    assert await load_demo(session)
    sam = await session.scalar(select(User).where(User.email == "sam@example.com"))
    assert sam is not None
    ref = await session.scalar(select(Incident.ref).where(Incident.title == SEV1_TITLE))
    assert ref is not None
    edited = await session.scalar(select(TimelineEntry.id).where(TimelineEntry.revision > 1))
    assert edited is not None
    await actions.prepare_action_run(session, catalog=get_catalog(), actor=sam, ref=ref, name="cache-purge")
    declared_at = clock.now() - timedelta(minutes=80)
    clock.set_source(lambda: declared_at)
    try:
        overdue = await incidents.declare_incident(
            session, actor=sam, title="Search returns no results", severity="SEV1", as_commander=True
        )
    finally:
        clock.set_source(None)
    return Demo(ref=ref, overdue_ref=overdue.ref, edited_entry=edited, base_url=server)


def signed_in(browser: Browser, base_url: str, *, viewport: dict[str, int], theme: str = "light") -> Page:
    """A page in its own context, signed in as Sam (the demo's Incident Commander)."""
    context = browser.new_context(base_url=base_url, viewport=viewport, color_scheme=theme)
    context.set_default_timeout(10_000)
    expect.set_options(timeout=10_000)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("Email").fill("sam@example.com")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/incidents")
    return page


def every_page(demo: Demo) -> dict[str, Callable[[Page], None]]:
    """Each kind of page, by name, and how a person gets there."""

    def visit(path: str) -> Callable[[Page], None]:
        return lambda page: page.goto(path)

    def incident_with_runbook(page: Page) -> None:
        page.goto(f"/incidents/{demo.ref}")
        page.locator("ul.suggested a", has_text="RB-001").click()
        wait_until(page, "document.getElementById('icc-modal').matches(':modal')")
        expect(page.locator("#icc-modal .sheet-title")).to_be_visible()

    def first_alert(page: Page) -> None:
        page.goto("/alerts")
        page.locator("a.alert-title").first.click()
        page.wait_for_url(re.compile(r"/alerts/\d+$"))

    return {
        "incident list": visit("/incidents"),
        "incident page": visit(f"/incidents/{demo.ref}"),
        "incident page, every timer overdue": visit(f"/incidents/{demo.overdue_ref}"),
        "incident page with a runbook open": incident_with_runbook,
        "declare form": visit("/incidents/new"),
        "dashboard": visit("/dashboard"),
        "alerts": visit("/alerts"),
        "unrouted alerts": visit("/alerts?view=unrouted"),
        "alert": first_alert,
        "runbooks": visit("/runbooks"),
        "RB-000": visit("/runbooks/RB-000"),
        "action runs": visit("/actions/runs"),
        "status page": visit("/status"),
        "entry history": visit(f"/timeline/{demo.edited_entry}"),
        "error page": visit("/incidents/INC-20000101-99"),
    }


def settled(page: Page) -> None:
    """Until the page's script has drawn its times, diagrams and scroll boxes."""
    page.wait_for_load_state("load")
    wait_until(page, "document.querySelectorAll('pre.mermaid:not([data-done])').length === 0")
    wait_until(
        page, "document.querySelectorAll('pre.mermaid[data-done=pending]').length === 0", timeout=20_000
    )


def walk(page: Page, demo: Demo, check: Callable[[str, Page], None]) -> None:
    """The sign-in page signed out, then every other page signed in."""
    signed_out = page.context.browser.new_context(
        base_url=demo.base_url,
        viewport=page.viewport_size,
        color_scheme=page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'"),
    )
    login = signed_out.new_page()
    login.goto("/login")
    settled(login)
    check("sign-in page", login)
    signed_out.close()
    for name, go in every_page(demo).items():
        go(page)
        settled(page)
        check(name, page)


def axe_violations(page: Page) -> list[dict]:
    page.add_script_tag(url=AXE)
    return [v for v in page.evaluate(RUN_AXE) if v["impact"] in BLOCKING]


def failed_loads(context: BrowserContext) -> list[str]:
    """Every response of 400 or more while the pages load, but the error page's own document."""
    failed: list[str] = []

    def record(response: Response) -> None:
        if response.status >= 400 and not response.url.endswith("/incidents/INC-20000101-99"):
            failed.append(f"{response.status} {response.url}")

    context.on("response", record)
    return failed


def test_no_page_has_a_critical_or_serious_accessibility_violation_in_either_theme(
    demo: Demo, browser: Browser
) -> None:
    found: list[str] = []
    without_icon: list[str] = []
    for theme in ("light", "dark"):
        page = signed_in(browser, demo.base_url, viewport=WIDE, theme=theme)
        missing = failed_loads(page.context)

        def check(name: str, page: Page, theme: str = theme) -> None:
            icon = page.evaluate("(document.querySelector('link[rel=icon]') || {}).href || null")
            if icon is None or not page.request.get(icon).ok:
                without_icon.append(f"{name} ({theme}): {icon}")
            for v in axe_violations(page):
                found.append(
                    f"{name} ({theme}): {v['impact']} {v['id']} on {v['count']} element(s), "
                    f"e.g. {'; '.join(v['targets'])}: {v['help']} ({v['helpUrl']})"
                )

        walk(page, demo, check)
        assert missing == [], f"pages loaded what is not there ({theme}): {missing}"
        page.context.close()
    assert without_icon == [], "pages without an icon that loads"
    assert found == [], "axe-core found:\n" + "\n".join(found)


def test_no_page_is_wider_than_a_phone(demo: Demo, browser: Browser) -> None:
    too_wide: list[str] = []
    for width in (360, PHONE["width"]):
        page = signed_in(browser, demo.base_url, viewport={"width": width, "height": PHONE["height"]})

        def check(name: str, page: Page, width: int = width) -> None:
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            if scroll_width > page.evaluate("window.innerWidth"):
                too_wide.append(
                    f"{name} at {width} px is {scroll_width} px wide: {page.evaluate(WIDER_THAN_WINDOW)}"
                )

        walk(page, demo, check)
        page.context.close()
    assert too_wide == [], "\n".join(too_wide)


def test_on_a_phone_the_header_shows_the_ic_and_the_most_urgent_timer_and_the_menu_folds(
    demo: Demo, browser: Browser
) -> None:
    page = signed_in(browser, demo.base_url, viewport=PHONE)
    page.goto(f"/incidents/{demo.overdue_ref}")
    glance = page.locator(".incident-head .glance")
    expect(glance).to_contain_text("IC Sam Okafor (you)")
    urgent = glance.locator("[data-most-urgent]")
    expect(urgent).to_contain_text("Acknowledge")  # due first of the three, 75 minutes ago
    expect(urgent.locator("[data-countdown]")).to_have_text(re.compile(r"overdue 1:1\d:\d\d"))
    box = glance.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"] / 2, box
    # The tab says it too, for the responder looking at another tab.
    expect(page).to_have_title(
        re.compile(rf"SEV1 ⏱ overdue 1:1\d:\d\d · {demo.overdue_ref} Search returns no results")
    )

    navigation = page.get_by_role("navigation", name="Main")
    menu = page.get_by_role("button", name="Menu")
    expect(navigation).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    menu.click()
    expect(navigation.get_by_role("link", name="Dashboard")).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "true")

    page.goto(f"/incidents/{demo.ref}")
    expect(page).to_have_title(re.compile(rf"^SEV1 ⏱ (overdue )?\d+:\d\d · {demo.ref} {SEV1_TITLE}$"))
    page.set_viewport_size(WIDE)
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard")).to_be_visible()
    page.context.close()


def test_the_keyboard_reaches_the_timeline_box_in_three_key_presses_and_run_columns_line_up(
    demo: Demo, browser: Browser
) -> None:
    page = signed_in(browser, demo.base_url, viewport=WIDE)
    page.goto(f"/incidents/{demo.ref}")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to content")
    page.keyboard.press("Tab")
    expect(page.locator(":focus")).to_have_text("Skip to the timeline box")
    page.keyboard.press("Enter")
    expect(page.locator("#icc-entry-body")).to_be_focused()
    landmarks = page.locator("main section[aria-labelledby], main section[aria-label]")
    assert landmarks.count() >= 10  # the header, the timers, the timeline and each side panel

    page.goto("/actions/runs")
    header, first_row = page.locator("table.runs").evaluate(
        """t => [t.tHead.rows[0], t.tBodies[0].rows[0]].map(
            (row) => Array.from(row.cells, (c) => Math.round(c.getBoundingClientRect().left)))"""
    )
    assert header == first_row, "each heading stands over its column"
    page.context.close()
