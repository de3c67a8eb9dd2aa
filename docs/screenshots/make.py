"""Screenshots of every page at 1400 px and 390 px wide, in the light and the dark theme.

    .venv/bin/python docs/screenshots/make.py            # on an embedded PostgreSQL of its own
    .venv/bin/python docs/screenshots/make.py --server postgresql://postgres@127.0.0.1:5432/postgres

It starts `icc serve --demo` on a free port of 127.0.0.1 against a new database (an embedded one
in a temporary directory, or one created on --server and dropped afterwards), signs in as the
demo's Incident Commander in Debian's Chromium (/usr/bin/chromium), runs the "Log tail" action
once so the action runs have a row, and writes `<page>-<width>-<theme>.png` into this directory:
what fits the window, plus the whole incident page as `incident-full-1400-light.png` (the
README's picture). Needs the README's install (`pip install -e '.[dev]'`, `npm ci --prefix
static`).
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
from playwright.sync_api import Page, expect, sync_playwright

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
ICC = Path(sys.executable).with_name("icc")
CHROMIUM = "/usr/bin/chromium"
SAM = ("sam@example.com", "demo-password")
WIDTHS = {1400: 900, 390: 844}
THEMES = ("light", "dark")
SEV1_TITLE = "Checkout returns 502 for most users"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def database(server: str | None) -> Iterator[dict[str, str]]:
    """The environment for a database of its own: a new one on `server`, or an embedded one."""
    if server is None:
        with tempfile.TemporaryDirectory(prefix="icc-screens-") as data:
            yield {"ICC_DATA_DIR": data}
        return
    name = f"icc_screens_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    try:
        yield {"ICC_DATABASE_URL": url}
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def demo_server(db_env: dict[str, str]) -> Iterator[str]:
    """`icc serve --demo` on a free port; yields its base URL, stops it (and its database) after."""
    port = free_port()
    # The defaults, not the developer's icc.toml; the runbooks of the repository.
    env = {**os.environ, "ICC_CONFIG": str(HERE / "no-icc.toml"), "ICC_RUNBOOKS_DIR": str(REPO / "runbooks")}
    env.pop("ICC_ENVIRONMENT", None)
    env.update(db_env)
    if "ICC_DATABASE_URL" in db_env:
        subprocess.run([ICC, "migrate"], env=env, cwd=REPO, check=True)  # noqa: S603 - our own icc
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(  # noqa: S603 - our own icc, on 127.0.0.1
            [ICC, "serve", "--demo", "--port", str(port)],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        yield from _serving(process, f"http://127.0.0.1:{port}", log)


def _serving(process: subprocess.Popen, base_url: str, log) -> Iterator[str]:
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                sys.exit(f"icc serve --demo did not start:\n{log.read().decode(errors='replace')}")
            time.sleep(0.2)
        yield base_url
    finally:
        process.send_signal(signal.SIGINT)  # as Ctrl-C: the embedded database stops too
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def sign_in(page: Page) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(SAM[0])
    page.get_by_label("Password").fill(SAM[1])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/incidents")


def settle(page: Page) -> None:
    """Until local times, countdowns and diagrams are drawn."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(400)


def prepare(page: Page) -> str:
    """Run one action on the SEV1 (so the action runs page has a row); returns its reference."""
    page.goto("/incidents")
    page.get_by_role("link", name=SEV1_TITLE).first.click()
    page.wait_for_url("**/incidents/INC-*")
    ref = page.url.rsplit("/", 1)[1]
    page.get_by_role("button", name="Log tail").click()
    expect(page.locator("#icc-modal")).to_contain_text("Succeeded")
    page.keyboard.press("Escape")
    return ref


def pages(ref: str) -> dict[str, Callable[[Page], None]]:
    """Each page by its file name, and how to get there."""

    def visit(path: str) -> Callable[[Page], None]:
        return lambda page: page.goto(path)

    def with_runbook(page: Page) -> None:
        page.goto(f"/incidents/{ref}")
        page.locator("ul.suggested a", has_text="RB-001").click()
        expect(page.locator("#icc-modal .sheet-title")).to_be_visible()

    def first_alert(page: Page) -> None:
        page.goto("/alerts")
        page.locator("table a[href^='/alerts/']").first.click()
        page.wait_for_url("**/alerts/*")

    def entry_history(page: Page) -> None:
        page.goto(f"/incidents/{ref}")
        page.locator("a.edited").first.click()
        page.wait_for_url("**/timeline/*")

    return {
        "incidents": visit("/incidents"),
        "incident": visit(f"/incidents/{ref}"),
        "incident-runbook": with_runbook,
        "declare": visit("/incidents/new"),
        "dashboard": visit("/dashboard"),
        "alerts": visit("/alerts"),
        "alert": first_alert,
        "runbooks": visit("/runbooks"),
        "runbook": visit("/runbooks/RB-000"),
        "action-runs": visit("/actions/runs"),
        "status": visit("/status"),
        "entry-history": entry_history,
        "error": visit("/incidents/INC-20000101-99"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", help="a PostgreSQL server URL to create a temporary database on")
    parser.add_argument("--only", nargs="*", help="just these pages (by file name prefix)")
    args = parser.parse_args()
    with database(args.server) as db_env, demo_server(db_env) as base_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        ref = ""
        for theme in THEMES:
            for width, height in WIDTHS.items():
                context = browser.new_context(
                    base_url=base_url, viewport={"width": width, "height": height}, color_scheme=theme
                )
                context.set_default_timeout(10_000)
                page = context.new_page()
                page.goto("/login")
                settle(page)
                if not args.only or "login" in args.only:
                    page.screenshot(path=HERE / f"login-{width}-{theme}.png")
                sign_in(page)
                ref = ref or prepare(page)
                for name, go in pages(ref).items():
                    if args.only and not any(name.startswith(o) for o in args.only):
                        continue
                    go(page)
                    settle(page)
                    page.screenshot(path=HERE / f"{name}-{width}-{theme}.png")
                    if name == "incident" and width == 1400 and theme == "light":
                        page.screenshot(path=HERE / "incident-full-1400-light.png", full_page=True)
                    print(f"{name}-{width}-{theme}.png", flush=True)
                context.close()
        browser.close()


if __name__ == "__main__":
    main()
