"""Runbooks in a real browser: the modal beside an incident, deep links into it, every mermaid
diagram of the shared corpus, hostile runbooks, and screenshots of the reader.

The module starts its own uvicorn (with tests/support.py, as tests/test_browser.py) with ICC_RUNBOOKS_DIR
pointing at a temporary directory that the tests fill, so they decide which runbooks exist. The
server notices file changes on page loads (`refresh_if_changed`), keyed on a stat fingerprint it
keeps in memory. conftest empties the tables after each test while that fingerprint survives, so
every test first calls `runbooks.resync()`, which bumps the files' mtimes: the next page load then
syncs again and re-inserts whatever the truncation removed (unchanged files are not re-rendered).

As everywhere (see tests/support.py), the `browser` fixture is requested last, after the async ones.
"""

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.incidents import service as incidents
from app.runbooks.render import split_front_matter
from app.runbooks.service import _key_for
from tests import support
from tests.support import PHONE, REPO, WIDE, open_page, sign_in, timeline_of, wait_until

browser = support.browser  # Chromium for one test; ask for it last (see tests/support.py)

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "runbooks"
MASTER = REPO / "runbooks" / "rb-000-incident-response.md"
MERMAID_FENCE = re.compile(r"^```mermaid[ \t]*$", re.MULTILINE)

# Diagrams of the shared corpus that the pinned mermaid cannot draw, by file and by position among that
# file's ```mermaid fences (0-based). Each must show the error note and its source; any other
# failure, or one of these starting to render, fails the test. None today: all 238 are drawn.
# (Offline, mermaid_docs_syntax_flowchart.md #67, an image node of
# https://mermaid.js.org/favicon.svg with `constraint: "on"`, fails with "The source image cannot
# be decoded."; the test serves remote images from a stand-in so the network does not decide.)
KNOWN_DIAGRAM_FAILURES: dict[str, set[int]] = {}

STAND_IN_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">'
    '<rect width="32" height="32" fill="#888"/></svg>'
)

CHECKOUT_KEY = "RB-CHK"
CHECKOUT_TITLE = "Checkout is failing"


def _paragraphs(topic: str, n: int = 5) -> str:
    sentence = (
        f"When {topic} is the question, read the dashboards first, write down what you see in the "
        "incident timeline, and only then change something; one change at a time, each one logged. "
    )
    return "\n\n".join(sentence * 3 for _ in range(n))


CHECKOUT_RUNBOOK = f"""---
id: {CHECKOUT_KEY}
title: {CHECKOUT_TITLE}
services: [checkout]
tags: [payments, checkout]
owner: payments-team
updated: 2026-11-20
---

# {CHECKOUT_TITLE}

{_paragraphs("the first minute", 2)}

## Confirm the symptoms

{_paragraphs("confirming the symptoms")}

## How the decision goes

```mermaid
flowchart TD
  A[Checkout alert fires] --> B{{Error rate above 5%?}}
  B -->|yes| C[Roll back the last deploy]
  B -->|no| D[Watch for ten minutes]
  C --> E[Verify recovery]
  D --> E
```

{_paragraphs("the decision")}

## Roll back the last deploy

```sh
kubectl -n checkout rollout undo deployment/checkout-api
```

{_paragraphs("rolling back")}

## Drain the payment queue

{_paragraphs("draining the queue")}

## Verify recovery

{_paragraphs("verifying recovery")}

## 2. Tell the customers

{_paragraphs("telling customers")}

## Close out

{_paragraphs("closing out", 3)}
"""

XSS_KEY = "xss-vectors"
XSS_TITLE = "<img src=x onerror=window.__xss=1>"
XSS_TAG = "<script>window.__xss=1</script>"
XSS_RUNBOOK = """---
title: <img src=x onerror=window.__xss=1>
tags: ["<script>window.__xss=1</script>"]
services: [xss-svc]
---

# Hostile runbook

A paragraph before the vectors, with a [normal link](https://example.com/ok).

<script>window.__xss=1</script>

<img src=x onerror="window.__xss=1">

Inline <img src=x onerror="window.__xss=1"> image in a paragraph.

[click](javascript:window.__xss=1)

[click too](JAVASCRIPT:window.__xss=1) and <javascript:window.__xss=1>

<a href="data:text/html,<script>alert(1)</script>">d</a>

<a href="javascript:window.__xss=1">raw javascript link</a>

Inline <a href="javascript:window.__xss=1">inline raw link</a> here.

<svg onload="window.__xss=1">

<iframe src="javascript:window.__xss=1"></iframe>

<details open ontoggle="window.__xss=1"><summary>toggle</summary>inside</details>

<p onclick="window.__xss=1" onmouseover="window.__xss=1">hover or click this paragraph</p>

## Diagram

```mermaid
flowchart LR
  A[Start] --> B[Next]
  click A callback "x"
  click B "javascript:window.__xss=1"
```
"""


class RunbooksDir:
    """The server's runbooks directory."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, name: str, text: str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return target

    def resync(self) -> None:
        """Change the directory's fingerprint (mtimes) so the next page load syncs again."""
        now = time.time_ns()
        for path in self.path.rglob("*.md"):
            mtime = max(path.stat().st_mtime_ns + 1_000_000_000, now)
            os.utime(path, ns=(mtime, mtime))


@pytest.fixture(scope="module")
def runbooks_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runbooks")
    (path / "checkout.md").write_text(CHECKOUT_RUNBOOK, encoding="utf-8")
    return path


@pytest.fixture
def runbooks(runbooks_path: Path) -> RunbooksDir:
    directory = RunbooksDir(runbooks_path)
    directory.resync()
    return directory


@pytest.fixture(scope="module")
def server(database_url: str, runbooks_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """uvicorn on the test database, reading runbooks from this module's directory."""
    log_path = tmp_path_factory.mktemp("server-runbooks") / "uvicorn.log"
    with support.uvicorn_server(database_url, log_path, {"ICC_RUNBOOKS_DIR": str(runbooks_path)}) as base_url:
        yield base_url


async def _declare(session: AsyncSession, actor: User, title: str, services: list[str]) -> str:
    incident = await incidents.declare_incident(
        session, actor=actor, title=title, severity="SEV2", services=services
    )
    return incident.ref


@pytest.fixture
async def checkout_incident(session: AsyncSession, responder: User) -> str:
    return await _declare(session, responder, "Checkout returns 502", ["checkout"])


MODAL_IS_MODAL = "document.getElementById('icc-modal').matches(':modal')"
MODAL_IS_OPEN = "document.getElementById('icc-modal').open"


def wait_for_diagrams(page: Page, timeout: float = 20_000) -> None:
    """Until every mermaid block became a figure or shows its error."""
    wait_until(
        page, "document.querySelectorAll('pre.mermaid:not([data-done=error])').length === 0", timeout=timeout
    )


def heading_placement(page: Page, slug: str) -> dict:
    """Where a heading of the open modal sits, and whether a person sees it (not covered)."""
    return page.evaluate(
        """(slug) => {
            const dialog = document.getElementById('icc-modal');
            const heading = document.getElementById(slug);
            const d = dialog.getBoundingClientRect(), h = heading.getBoundingClientRect();
            const x = Math.min(h.left + 20, h.right - 1), y = h.top + h.height / 2;
            const hit = document.elementFromPoint(x, y);
            return {
                inDialog: dialog.contains(heading),
                top: h.top, bottom: h.bottom, dialogTop: d.top, dialogBottom: d.bottom,
                inside: h.top >= d.top && h.bottom <= d.bottom,
                uncovered: !!hit && heading.contains(hit),
                covering: hit ? hit.outerHTML.slice(0, 80) : null,
                scrollTop: dialog.scrollTop,
            };
        }""",
        slug,
    )


def open_suggested(page: Page, key: str) -> None:
    page.locator("ul.suggested a", has_text=key).click()
    wait_until(page, MODAL_IS_MODAL)
    expect(page.locator("#icc-modal .sheet")).to_have_attribute("data-runbook", key)


# ---------------------------------------------------------------- the modal beside an incident


def test_runbook_opens_as_a_modal_beside_the_incident(
    runbooks: RunbooksDir, checkout_incident: str, responder: User, server: str, browser: Browser
) -> None:
    ref = checkout_incident
    page = open_page(browser, server)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, responder)
    page.goto(f"/incidents/{ref}")

    suggested = page.locator("ul.suggested a", has_text=CHECKOUT_KEY)
    expect(suggested).to_contain_text(CHECKOUT_TITLE)
    expect(suggested).to_have_attribute("href", f"/incidents/{ref}?runbook={CHECKOUT_KEY}")
    suggested.scroll_into_view_if_needed()
    window_scroll = page.evaluate("window.scrollY")
    suggested.click()

    dialog = page.locator("#icc-modal")
    wait_until(page, MODAL_IS_MODAL)
    expect(dialog).to_be_visible()
    expect(dialog.locator(".sheet-title")).to_have_text(CHECKOUT_TITLE)
    timers = dialog.locator(".sheet-incident [data-timer]")
    expect(timers).to_have_count(3)
    for n in range(3):
        expect(timers.nth(n)).to_be_visible()
    expect(timers.first).to_contain_text("left")  # ticking inside the modal too
    expect(dialog.locator(".sheet-incident")).to_contain_text(ref)
    wait_for_diagrams(page)
    expect(dialog.locator(".doc figure.diagram > svg")).to_have_count(1)

    assert page.evaluate("window.scrollY") == window_scroll, "opening the modal moved the page"

    # The modal scrolls on its own; the page behind it does not move.
    sizes = dialog.evaluate("d => ({scroll: d.scrollHeight, client: d.clientHeight})")
    assert sizes["scroll"] > sizes["client"], sizes
    box = dialog.locator(".doc").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, 500)
    page.mouse.wheel(0, 900)
    wait_until(page, "document.getElementById('icc-modal').scrollTop > 0")
    assert page.evaluate("window.scrollY") == window_scroll

    # A contents link moves the reader to its heading, inside the modal.
    dialog.locator(".toc a", has_text="Verify recovery").click()
    wait_until(
        page,
        """() => {
            const h = document.getElementById('verify-recovery').getBoundingClientRect();
            const d = document.getElementById('icc-modal').getBoundingClientRect();
            return h.top >= d.top && h.bottom <= d.bottom;
        }""",
    )
    placement = heading_placement(page, "verify-recovery")
    assert placement["inside"] and placement["uncovered"], placement
    assert page.evaluate("window.scrollY") == window_scroll

    page.keyboard.press("Escape")
    wait_until(page, f"!{MODAL_IS_OPEN}")
    expect(dialog).to_be_hidden()

    # Opened again, "Attach" notes on the timeline that the runbook is being followed.
    open_suggested(page, CHECKOUT_KEY)
    dialog.get_by_role("button", name=f"Attach to {ref}").click()
    entry = page.locator("#icc-timeline li.entry", has_text="Following runbook")
    expect(entry).to_contain_text(f"Following runbook {CHECKOUT_KEY} {CHECKOUT_TITLE}")
    expect(entry.get_by_role("link", name=f"{CHECKOUT_KEY} {CHECKOUT_TITLE}")).to_have_attribute(
        "href", f"/runbooks/{CHECKOUT_KEY}"
    )
    dialog.get_by_role("button", name="Close runbook (Esc)").click()
    wait_until(page, f"!{MODAL_IS_OPEN}")
    expect(entry).to_be_visible()
    bodies = [e["body"] for e in timeline_of(page, server, ref)]
    assert f"Following runbook [{CHECKOUT_KEY} {CHECKOUT_TITLE}](/runbooks/{CHECKOUT_KEY})." in bodies
    assert errors == []
    page.context.close()


# ---------------------------------------------------------------- deep links


@pytest.mark.parametrize(
    "slug",
    [
        "verify-recovery",
        "2-tell-the-customers",
    ],
)
def test_deep_link_opens_the_modal_at_the_heading(
    slug: str, runbooks: RunbooksDir, checkout_incident: str, responder: User, server: str, browser: Browser
) -> None:
    ref = checkout_incident
    page = open_page(browser, server)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, responder)
    page.goto(f"/incidents/{ref}?runbook={CHECKOUT_KEY}#{slug}")

    wait_until(page, MODAL_IS_MODAL)
    dialog = page.locator("#icc-modal")
    expect(dialog.locator(".sheet-title")).to_have_text(CHECKOUT_TITLE)
    page.wait_for_timeout(300)  # let the reader settle (diagram, fonts) before measuring
    placement = heading_placement(page, slug)
    assert placement["inDialog"], placement
    assert placement["scrollTop"] > 0, placement
    assert placement["inside"], placement
    assert placement["uncovered"], placement

    # The page keeps working: the timers tick, and Esc closes the modal, empties it and drops
    # ?runbook= from the address.
    problems: list[str] = []
    countdown = page.locator("section.timers [data-timer] [data-countdown]").first
    expect(countdown).to_contain_text("left")
    before = countdown.text_content()
    page.wait_for_timeout(2_100)
    if countdown.text_content() == before:
        problems.append(f"the timers do not tick: still {before!r} two seconds later")
    page.keyboard.press("Escape")
    wait_until(page, f"!{MODAL_IS_OPEN}")
    page.wait_for_timeout(200)
    if "runbook=" in page.url:
        problems.append(f"closing kept ?runbook= in the address: {page.url}")
    if page.evaluate("document.getElementById('icc-modal').children.length"):
        problems.append("closing left the runbook in the dialog")
    assert errors == [], [*problems, *errors]
    assert problems == []
    page.context.close()


# ---------------------------------------------------------------- mermaid, the whole corpus


@pytest.fixture
def corpus(runbooks: RunbooksDir) -> Iterator[Path]:
    """The shared corpus, copied into the server's directory for one test, removed afterwards
    (so later tests do not sync thirty more files after each truncation)."""
    if not CORPUS.is_dir():
        message = f"{CORPUS} is missing: the shared runbook corpus sits next to the checkout"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    copy = runbooks.path / "corpus"
    shutil.copytree(CORPUS, copy, dirs_exist_ok=True)
    runbooks.resync()
    yield copy
    shutil.rmtree(copy)


def test_every_mermaid_block_of_the_corpus_becomes_a_diagram(
    corpus: Path, responder: User, server: str, browser: Browser
) -> None:
    with_diagrams: dict[str, tuple[str, int]] = {}
    for source in sorted(corpus.glob("*.md")):
        text = source.read_text(encoding="utf-8")
        fences = len(MERMAID_FENCE.findall(text))
        if fences:
            meta, _, _ = split_front_matter(text)
            meta_id = str(meta["id"]).strip() if meta.get("id") else None
            with_diagrams[source.name] = (_key_for(source, meta_id), fences)
    assert with_diagrams, "the corpus has no ```mermaid block at all"

    page = open_page(browser, server)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # Documents and diagrams show remote images (one flowchart is an image node of
    # https://mermaid.js.org/favicon.svg that mermaid must decode to size, and fails without the
    # network). The browser gets a local stand-in so the result does not depend on the network.
    def stand_in(route: Route) -> None:
        route.fulfill(status=200, content_type="image/svg+xml", body=STAND_IN_SVG)

    page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), stand_in)
    sign_in(page, responder)
    page.goto("/runbooks")
    links = set(
        page.locator(".runbook-list > li > a").evaluate_all("as => as.map(a => a.getAttribute('href'))")
    )
    missing = {name: key for name, (key, _) in with_diagrams.items() if f"/runbooks/{key}" not in links}
    assert not missing, f"not listed in the library: {missing}"

    failures: dict[str, dict[int, str]] = {}
    for name, (key, fences) in with_diagrams.items():
        page.goto(f"/runbooks/{key}")
        expect(page.locator(".sheet-title")).to_be_visible()
        blocks = page.locator(".doc pre.mermaid, .doc figure.diagram")
        expect(blocks).to_have_count(fences)
        wait_for_diagrams(page, timeout=20_000 + 150 * fences)  # the flowchart docs have 111
        states = blocks.evaluate_all(
            """els => els.map(el => el.matches('figure.diagram')
                ? {ok: !!el.querySelector(':scope > svg')}
                : {ok: false,
                   error: el.previousElementSibling && el.previousElementSibling.matches('.diagram-error')
                    ? el.previousElementSibling.textContent : null,
                   source: el.textContent})"""
        )
        source_blocks = [
            m.group(1)
            for m in re.finditer(
                r"^```mermaid[ \t]*\n(.*?)^```[ \t]*$",
                (corpus / name).read_text(encoding="utf-8"),
                re.MULTILINE | re.DOTALL,
            )
        ]
        for index, state in enumerate(states):
            if state["ok"]:
                continue
            failures.setdefault(name, {})[index] = state["error"] or "(no error note)"
            assert state["error"], f"{name} diagram {index}: neither drawn nor explained"
            assert state["source"].strip() == source_blocks[index].strip(), f"{name} diagram {index}"
        drawn = page.locator(".doc figure.diagram > svg").count()
        assert drawn + len(failures.get(name, {})) == fences, name

    got = {name: set(found) for name, found in failures.items()}
    assert got == KNOWN_DIAGRAM_FAILURES, f"diagrams that could not be drawn: {failures}"
    assert errors == []
    page.context.close()


# ---------------------------------------------------------------- hostile runbooks

NO_HANDLERS = """() => Array.from(document.querySelectorAll('.doc, .doc *, .sheet-title, .runbook-list *'))
    .flatMap(el => Array.from(el.attributes)
        .filter(a => /^on/i.test(a.name) || /^\\s*(javascript|data|vbscript):/i.test(a.value))
        .map(a => el.tagName + ' ' + a.name + '=' + a.value))"""


def _click_every_link(page: Page, reload: str) -> list[str]:
    """Click each link of the runbook (http(s) ones excepted), reloading `reload` in between.
    Returns the hrefs clicked."""
    clicked: list[str] = []
    links = page.locator(".doc a")
    for index in range(links.count()):
        link = links.nth(index)
        href = link.get_attribute("href") or link.get_attribute("xlink:href") or ""
        if re.match(r"https?://", href):
            continue
        link.scroll_into_view_if_needed()
        link.click(force=True, no_wait_after=True)
        page.wait_for_timeout(100)
        assert page.evaluate("typeof window.__xss") == "undefined", f"link {index} {href!r}"
        clicked.append(href)
        if page.url != reload:
            page.goto(reload)
            wait_for_diagrams(page)
    return clicked


def _assert_inert(page: Page, where: str) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined", where
    expect(page.locator(".doc script")).to_have_count(0)
    expect(page.locator(".doc iframe, .doc object, .doc embed")).to_have_count(0)
    assert page.evaluate(NO_HANDLERS) == [], where


@pytest.fixture
async def xss_incident(session: AsyncSession, responder: User) -> str:
    return await _declare(session, responder, "Hostile runbook drill", ["xss-svc"])


def test_hostile_runbook_runs_nothing(
    runbooks: RunbooksDir, xss_incident: str, responder: User, server: str, browser: Browser
) -> None:
    runbooks.write("xss-vectors.md", XSS_RUNBOOK)
    page = open_page(browser, server)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, responder)

    # The library: the title and the tag are text.
    page.goto("/runbooks")
    item = page.locator(".runbook-list > li", has=page.locator(f'a[href="/runbooks/{XSS_KEY}"]'))
    expect(item.locator(f'a[href="/runbooks/{XSS_KEY}"]')).to_have_text(f"{XSS_KEY} {XSS_TITLE}")
    expect(item.locator("a.tag")).to_have_text(XSS_TAG)
    expect(item.locator("img, script")).to_have_count(0)
    _assert_inert(page, "library")

    # The viewer.
    viewer = f"{server}/runbooks/{XSS_KEY}"
    page.goto(viewer)
    expect(page.locator(".sheet-title")).to_have_text(XSS_TITLE)
    expect(page).to_have_title(re.compile(re.escape(XSS_TITLE)))
    wait_for_diagrams(page)
    expect(page.locator(".doc figure.diagram > svg")).to_have_count(1)
    expect(page.locator(".doc")).to_contain_text("[click](javascript:window.__xss=1)")
    _assert_inert(page, "viewer")
    clicked = _click_every_link(page, viewer)
    assert clicked, "the hostile runbook should keep some (defused) links to click"
    for node in page.locator(".doc figure.diagram g.node").all():
        node.click(force=True)
    page.wait_for_timeout(200)
    _assert_inert(page, "viewer after clicks")
    expect(page.locator(".doc p", has_text="hover or click this paragraph")).to_be_visible()
    page.locator(".doc p", has_text="hover or click this paragraph").click()
    page.locator(".doc summary", has_text="toggle").click()
    _assert_inert(page, "viewer after clicks")

    # The modal beside an incident.
    incident_page = f"{server}/incidents/{xss_incident}"
    page.goto(incident_page)
    expect(page.locator("ul.suggested a", has_text=XSS_KEY)).to_contain_text(XSS_TITLE)
    open_suggested(page, XSS_KEY)
    expect(page.locator("#icc-modal .sheet-title")).to_have_text(XSS_TITLE)
    wait_for_diagrams(page)
    _assert_inert(page, "modal")
    links = page.locator("#icc-modal .doc a")
    for index in range(links.count()):
        link = links.nth(index)
        href = link.get_attribute("href") or ""
        if re.match(r"https?://", href):
            continue
        if not page.evaluate(MODAL_IS_OPEN):
            page.goto(incident_page)
            open_suggested(page, XSS_KEY)
            wait_for_diagrams(page)
        link.click(force=True, no_wait_after=True)
        page.wait_for_timeout(100)
        assert page.evaluate("typeof window.__xss") == "undefined", f"modal link {index} {href!r}"
    if page.evaluate(MODAL_IS_OPEN):
        for node in page.locator("#icc-modal figure.diagram g.node").all():
            node.click(force=True)
    page.wait_for_timeout(200)
    _assert_inert(page, "modal after clicks")
    assert dialogs == []
    page.context.close()


# ---------------------------------------------------------------- screenshots


@pytest.fixture
async def master_incident(session: AsyncSession, responder: User) -> str:
    return await _declare(session, responder, "Payments API latency above 2 s", ["payments-api"])


def test_screenshots_of_the_reader(
    runbooks: RunbooksDir,
    master_incident: str,
    responder: User,
    server: str,
    browser_output_dir: Path,
    browser: Browser,
) -> None:
    shutil.copyfile(MASTER, runbooks.path / MASTER.name)
    runbooks.resync()
    meta, _, _ = split_front_matter(MASTER.read_text(encoding="utf-8"))
    key = _key_for(MASTER, str(meta.get("id") or "") or None)
    page = open_page(browser, server)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, responder)

    page.goto(f"/runbooks/{key}")
    expect(page.locator(".sheet-title")).to_have_text("Incident response master runbook")
    wait_for_diagrams(page)
    expect(page.locator(".diagram-error")).to_have_count(0)
    page.screenshot(path=browser_output_dir / "runbook-viewer-wide.png")
    page.locator(".doc figure.diagram").first.scroll_into_view_if_needed()
    page.screenshot(path=browser_output_dir / "runbook-viewer-diagram.png")
    page.set_viewport_size(PHONE)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=browser_output_dir / "runbook-viewer-phone.png")
    page.set_viewport_size(WIDE)

    page.goto(f"/incidents/{master_incident}")
    open_suggested(page, key)
    wait_for_diagrams(page)
    page.wait_for_timeout(300)
    page.screenshot(path=browser_output_dir / "runbook-modal.png")
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(200)
    page.screenshot(path=browser_output_dir / "runbook-modal-phone.png")
    page.locator("#icc-modal").evaluate("d => { d.scrollTop = 1500; }")
    page.wait_for_timeout(200)
    page.screenshot(path=browser_output_dir / "runbook-modal-phone-scrolled.png")
    assert errors == []
    page.context.close()
