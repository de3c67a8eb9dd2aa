"""Support for the tests that run the application in real processes and drive it in Chromium.

Servers: `uvicorn_server()` runs `python -m uvicorn app.main:create_app --factory` on a free port
of 127.0.0.1 against a database, with extra environment (and, given a `Tls`, over HTTPS), waits
for /healthz and yields the base URL; its output goes to a log file that is shown when it fails to
start. The pieces (`free_port`,
`uvicorn_command`, `server_env`, `wait_until_healthy`, `stop`) serve processes a test manages
itself, such as the replicas of tests/test_live_processes.py.

Browsers: Debian's Chromium (/usr/bin/chromium) driven by Playwright's sync API. When it is
missing the browser tests are skipped, or fail when the CI environment variable is set.

Playwright's sync API marks its own event loop as running while it is started, so no async
fixture may run then: the `browser` fixture is function-scoped and every test asks for it last,
after the async fixtures (which are then set up before it and torn down after it). A module uses
the fixtures here by naming them: `browser = support.browser`, `live_server = support.live_server`.
"""

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.auth.models import User
from tests.conftest import PASSWORD

REPO = Path(__file__).resolve().parent.parent
NO_CONFIG = Path(__file__).parent / "no-such-icc.toml"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WIDE = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def uvicorn_command(port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra,
    ]


def server_env(database_url: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, on the test database, without a config file unless `extra`
    names one (ICC_CONFIG)."""
    return {
        **os.environ,
        "ICC_DATABASE_URL": database_url,
        "ICC_ENVIRONMENT": "test",
        "ICC_CONFIG": str(NO_CONFIG),
        **(extra or {}),
    }


def wait_until_healthy(
    base_url: str,
    process: subprocess.Popen,
    *,
    name: str = "uvicorn",
    log: Callable[[], str] = lambda: "",
    timeout: float = 20.0,
    verify: ssl.SSLContext | bool = True,
    path: str = "/healthz",
) -> None:
    """Until `base_url` + `path` answers 200; fails with the log if the process exits or time runs
    out."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited with {process.returncode}:\n{log()}")
        try:
            if httpx.get(f"{base_url}{path}", timeout=1, trust_env=False, verify=verify).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer {path} within {timeout:g} s:\n{log()}")
        time.sleep(0.1)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class Tls:
    """A server certificate for 127.0.0.1 and the CA that signed it (trustme makes them in a test)."""

    certfile: Path
    keyfile: Path
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@contextmanager
def uvicorn_server(
    database_url: str, log_path: Path, env: Mapping[str, str] | None = None, *, tls: Tls | None = None
) -> Iterator[str]:
    """The application served by uvicorn in its own process (over HTTPS given `tls`); yields its
    base URL."""
    port = free_port()
    base_url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    certificate = ["--ssl-certfile", str(tls.certfile), "--ssl-keyfile", str(tls.keyfile)] if tls else []
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            uvicorn_command(port, *certificate),
            cwd=REPO,
            env=server_env(database_url, env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(
                base_url,
                process,
                log=lambda: log_path.read_text(errors="replace"),
                verify=tls.client_context() if tls else True,
            )
            yield base_url
        finally:
            stop(process)


@pytest.fixture(scope="module")
def live_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The application served by uvicorn in its own process, on the test database, no config."""
    with uvicorn_server(database_url, tmp_path_factory.mktemp("server") / "uvicorn.log") as base_url:
        yield base_url


# --- browsers ----------------------------------------------------------------------------------


@contextmanager
def chromium() -> Iterator[Browser]:
    """Chromium started by Playwright; skips the test when it is missing (fails it under CI)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Chromium for one test. Ask for it last, after the async fixtures (see the module docstring)."""
    with chromium() as launched:
        yield launched


def open_page(browser: Browser, base_url: str, viewport: Mapping[str, int] = WIDE) -> Page:
    """A page in a new context (its own cookies) on `base_url`, with 5 s timeouts."""
    context = browser.new_context(base_url=base_url, viewport=dict(viewport))
    context.set_default_timeout(5_000)
    expect.set_options(timeout=5_000)
    return context.new_page()


def sign_in(page: Page, user: User) -> None:
    """Through the login page, as a person would."""
    page.goto("/login")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/incidents")
    expect(page.locator(".whoami")).to_contain_text(user.name)


def wait_until(page: Page, expression: str, *, timeout: float = 5_000) -> None:
    """Until `expression` (JavaScript: an expression, or a function of no argument) is truthy in
    the page. Playwright's wait_for_function evaluates its predicate with eval() inside the page,
    which the product's Content-Security-Policy forbids; page.evaluate is not subject to it."""
    deadline = time.monotonic() + timeout / 1000
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout / 1000:g} s: {expression}")
        page.wait_for_timeout(50)


def timeline_of(page: Page, base_url: str, ref: str) -> list[dict]:
    """The incident's timeline from the JSON API, read with the browser's session cookie."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    with httpx.Client(base_url=base_url, cookies=cookies) as api:
        response = api.get(f"/api/v1/incidents/{ref}/timeline")
        assert response.status_code == 200, response.text
        return response.json()["items"]
