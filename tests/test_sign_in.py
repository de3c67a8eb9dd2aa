"""Sign-in: throttled per account and per client address in PostgreSQL, password checks off the
event loop and a few at a time, and cookies that only this host can set when served over HTTPS.

Defaults: 5 failures per account and 20 per client address in a 15-minute window
(ICC_SIGN_IN_FAILURES_PER_ACCOUNT, ICC_SIGN_IN_FAILURES_PER_ADDRESS, ICC_SIGN_IN_WINDOW_MINUTES),
one password check at a time per process (ICC_PASSWORD_CHECKS_AT_ONCE).
"""

import asyncio
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from app.auth import service as accounts
from app.auth.service import throttled_address
from app.config import get_settings
from app.incidents import service as incidents
from app.main import create_app
from tests import support
from tests.conftest import PASSWORD, _libpq
from tests.deploy_nginx import render_nginx_conf
from tests.test_topology import nginx_binary

WRONG = "not-the-password"


def client_from(app, address: str = "198.51.100.7", *, base_url: str = "http://test") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 4242)), base_url=base_url
    )


async def attempt(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    """One sign-in through the form, as a browser sends it (the login CSRF cookie and field)."""
    form = await client.get("/login")
    (token,) = re.findall(r'name="login_csrf" value="([^"]+)"', form.text)
    return await client.post(
        "/login", data={"email": email, "password": password, "login_csrf": token, "next": "/incidents"}
    )


def failures_rows(database_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(_libpq(database_url)) as conn:
        return conn.execute("SELECT scope, failures FROM sign_in_failures ORDER BY scope").fetchall()


async def test_after_five_failures_even_the_right_password_waits_for_the_window_to_end(
    app, frozen_clock, responder
):
    async with client_from(app) as client:
        for _ in range(5):
            refused = await attempt(client, responder.email, WRONG)
            assert refused.status_code == 401
            assert "Email or password is not right." in refused.text
        frozen_clock.advance(minutes=3)
        throttled = await attempt(client, responder.email, PASSWORD)
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == str(12 * 60)
        assert "Too many failed sign-ins for this account. Try again in 12 minutes." in throttled.text
        assert f'value="{responder.email}"' in throttled.text  # a readable page, the email kept
        assert "icc_session" not in client.cookies
        frozen_clock.advance(minutes=12)
        assert (await attempt(client, responder.email, PASSWORD)).status_code == 303


async def test_a_success_clears_the_accounts_failures(app, responder):
    async with client_from(app) as client:
        for _ in range(4):
            assert (await attempt(client, responder.email, WRONG)).status_code == 401
        assert (await attempt(client, responder.email, PASSWORD)).status_code == 303
    async with client_from(app) as client:
        for _ in range(5):
            assert (await attempt(client, responder.email, WRONG)).status_code == 401
        assert (await attempt(client, responder.email, WRONG)).status_code == 429


async def test_an_unknown_email_is_counted_and_answered_like_a_real_one(app, responder):
    async with client_from(app, "198.51.100.1") as known, client_from(app, "198.51.100.2") as unknown:
        for _ in range(5):
            real = await attempt(known, responder.email.upper(), WRONG)  # any case: one account
            invented = await attempt(unknown, "nobody@example.com", WRONG)
            assert (real.status_code, invented.status_code) == (401, 401)
        real = await attempt(known, responder.email, PASSWORD)
        invented = await attempt(unknown, "nobody@example.com", WRONG)
    assert (real.status_code, invented.status_code) == (429, 429)
    message = "Too many failed sign-ins for this account. Try again in"
    assert message in real.text and message in invented.text


async def test_one_client_address_is_throttled_across_accounts(app, responder, database_url):
    async with client_from(app, "203.0.113.9") as client:
        for n in range(20):
            assert (await attempt(client, f"guess-{n}@example.com", WRONG)).status_code == 401
        throttled = await attempt(client, responder.email, PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed sign-ins from your network." in throttled.text
    assert int(throttled.headers["retry-after"]) > 0
    # Another address is not affected, and nothing stored names the email or the address.
    async with client_from(app, "203.0.113.10") as elsewhere:
        assert (await attempt(elsewhere, responder.email, PASSWORD)).status_code == 303
    with psycopg.connect(_libpq(database_url)) as conn:
        stored = " ".join(str(v) for row in conn.execute("SELECT * FROM sign_in_failures") for v in row)
    assert "guess-" not in stored and "203.0.113" not in stored


async def test_an_ipv6_client_is_counted_by_its_64_network():
    assert (
        throttled_address("2001:db8:1:2::1")
        == throttled_address("2001:db8:1:2:ffff::9")
        == "2001:db8:1:2::/64"
    )
    assert throttled_address("2001:db8:1:3::1") != throttled_address("2001:db8:1:2::1")
    assert throttled_address("::ffff:192.0.2.1") == throttled_address("192.0.2.1") == "192.0.2.1"
    assert throttled_address(None) == "unknown"


async def test_a_throttled_attempt_costs_no_password_check(app, responder, monkeypatch):
    checks = []
    real_verify = accounts._hasher.verify
    monkeypatch.setattr(accounts._hasher, "verify", lambda *a: checks.append(1) or real_verify(*a))
    async with client_from(app) as client:
        for _ in range(5):
            await attempt(client, responder.email, WRONG)
        assert len(checks) == 5
        for _ in range(10):
            assert (await attempt(client, responder.email, PASSWORD)).status_code == 429
    assert len(checks) == 5


@pytest.fixture
async def other_replica(database_url: str) -> AsyncIterator[object]:
    """A second application on the same database: another replica behind the load balancer."""
    replica = create_app(database_url)
    yield replica
    await replica.state.engine.dispose()


async def test_every_replica_counts_in_the_same_place(app, other_replica, responder, database_url):
    for n in range(5):
        replica = app if n % 2 else other_replica
        async with client_from(replica) as client:
            assert (await attempt(client, responder.email, WRONG)).status_code == 401
    assert ("account", 5) in failures_rows(database_url)
    for replica in (app, other_replica):
        async with client_from(replica) as client:
            assert (await attempt(client, responder.email, PASSWORD)).status_code == 429


async def test_password_checks_run_off_the_event_loop_one_at_a_time(app, responder, monkeypatch):
    """The ordering property behind "a sign-in flood does not starve the pages": however many
    sign-ins arrive at once, at most ICC_PASSWORD_CHECKS_AT_ONCE hashes run, none on the loop."""
    running, most, threads = 0, 0, set()
    lock = threading.Lock()
    real_verify = accounts._hasher.verify

    def watched_verify(*args):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            threads.add(threading.current_thread().name)
        try:
            return real_verify(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(accounts._hasher, "verify", watched_verify)
    loop_thread = threading.current_thread().name

    async def flood(n: int) -> int:
        async with client_from(app, f"192.0.2.{n}") as client:
            return (await attempt(client, f"flood-{n}@example.com", WRONG)).status_code

    statuses = await asyncio.gather(*(flood(n) for n in range(8)), flood(100))
    assert statuses == [401] * 9
    assert most == get_settings().password_checks_at_once == 1
    assert loop_thread not in threads and all(name.startswith("icc-password") for name in threads)


def test_a_sign_in_flood_does_not_hold_up_a_signed_in_responder(database_url, tmp_path, responder_id):
    """On a real server: a signed-in page asked while 16 wrong sign-ins are in flight answers
    before nearly all of them, since their argon2 work waits in line off the event loop. Ordering,
    not a speed figure: the speed is for the benchmarks."""
    email = responder_id
    env = {"ICC_SIGN_IN_FAILURES_PER_ADDRESS": "1000"}
    with support.uvicorn_server(database_url, tmp_path / "uvicorn.log", env) as base_url:
        with httpx.Client(base_url=base_url, trust_env=False) as browser:
            form = browser.get("/login")
            (token,) = re.findall(r'name="login_csrf" value="([^"]+)"', form.text)
            signed_in = browser.post(
                "/login", data={"email": email, "password": PASSWORD, "login_csrf": token}
            )
            assert signed_in.status_code == 303
            ref = browser.get("/api/v1/incidents").json()["items"][0]["ref"]
            assert browser.get(f"/incidents/{ref}").status_code == 200  # warm

        finished: list[tuple[float, str]] = []

        async def wrong_sign_in(n: int) -> None:
            async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60) as client:
                form = await client.get("/login")
                (token,) = re.findall(r'name="login_csrf" value="([^"]+)"', form.text)
                response = await client.post(
                    "/login", data={"email": f"flood-{n}@example.com", "password": WRONG, "login_csrf": token}
                )
                assert response.status_code == 401
                finished.append((time.monotonic(), "sign-in"))

        page_asked: list[float] = []

        async def incident_page() -> None:
            await asyncio.sleep(0.3)  # the sign-ins are in flight
            async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=60) as client:
                client.cookies.update(browser.cookies)
                page_asked.append(time.monotonic())
                response = await client.get(f"/incidents/{ref}")
                assert response.status_code == 200
                finished.append((time.monotonic(), "page"))

        async def both() -> None:
            await asyncio.gather(*(wrong_sign_in(n) for n in range(16)), incident_page())

        asyncio.run(both())
    (answered,) = [at for at, what in finished if what == "page"]
    overtaking = [at for at, what in finished if what == "sign-in" and page_asked[0] < at < answered]
    # Each sign-in waits ~0.1 s for its hash, so one may finish while the page is served; with
    # the checks on the event loop, the page waited for half a dozen of them.
    assert len(overtaking) <= 2, f"{len(overtaking)} sign-ins finished while the page was served"
    assert len(finished) == 17


@pytest.fixture
async def responder_id(session, responder) -> str:
    """The responder's email, with an incident for the page to show (for a test with no loop)."""
    await incidents.declare_incident(
        session, actor=responder, title=f"Flood drill {uuid.uuid4().hex[:4]}", severity="SEV2"
    )
    return responder.email


@pytest.fixture
async def secure_app(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[object]:
    """The application as deployed behind HTTPS (ICC_SECURE_COOKIES=true)."""
    monkeypatch.setenv("ICC_SECURE_COOKIES", "true")
    get_settings.cache_clear()
    secure = create_app(database_url)
    yield secure
    await secure.state.engine.dispose()
    monkeypatch.undo()
    get_settings.cache_clear()


async def test_over_https_the_cookies_are_host_only_secure_and_httponly(secure_app, client, responder):
    plain = await client.get("/login")  # plain-HTTP development keeps working
    assert "__Host-" not in plain.headers["set-cookie"] and "Secure" not in plain.headers["set-cookie"]

    async with client_from(secure_app, base_url="https://icc.example") as browser:
        page = await browser.get("/login")
        login_cookie = page.headers["set-cookie"]
        assert login_cookie.startswith("__Host-icc_login_csrf=")
        for attribute in ("HttpOnly", "Path=/", "SameSite=strict", "Secure"):
            assert attribute in login_cookie
        assert "Domain" not in login_cookie
        signed_in = await attempt(browser, responder.email, PASSWORD)
        assert signed_in.status_code == 303
        (session_cookie,) = [c for c in signed_in.headers.get_list("set-cookie") if "icc_session" in c]
        assert session_cookie.startswith("__Host-icc_session=")
        for attribute in ("HttpOnly", "Path=/", "SameSite=lax", "Secure"):
            assert attribute in session_cookie
        listing = await browser.get("/incidents")
        assert listing.status_code == 200 and responder.name in listing.text
        csrf = listing.text.split('name="csrf_token" value="')[1].split('"')[0]
        signed_out = await browser.post("/logout", data={"csrf_token": csrf})
        # A browser drops a __Host- cookie only if the removal repeats Secure and Path=/.
        (removal,) = signed_out.headers.get_list("set-cookie")
        assert removal.startswith("__Host-icc_session=") and "Max-Age=0" in removal
        assert "Secure" in removal and "Path=/" in removal
    # The bare name, which a sibling subdomain or a plain-HTTP answer could plant, means nothing.
    async with client_from(secure_app, base_url="https://icc.example") as planted:
        await attempt(planted, responder.email, PASSWORD)
        session_token = planted.cookies["__Host-icc_session"]
    async with client_from(secure_app, base_url="https://icc.example") as planted:
        planted.cookies.set("icc_session", session_token)
        assert (await planted.get("/incidents")).status_code == 303
        planted.cookies.set("__Host-icc_session", session_token)
        assert (await planted.get("/incidents")).status_code == 200


def test_behind_the_reference_nginx_a_forged_x_forwarded_for_does_not_escape_the_address_limit(
    database_url, tmp_path_factory
):
    """The replicas believe X-Forwarded-For from anyone (only nginx reaches them) and take its
    first entry as the client: nginx must replace what a client sends, or each forged header
    would be a fresh address to the throttle."""
    nginx = nginx_binary()
    env = {"FORWARDED_ALLOW_IPS": "*", "ICC_SIGN_IN_FAILURES_PER_ADDRESS": "3"}
    logs = tmp_path_factory.mktemp("forwarded")
    with support.uvicorn_server(database_url, logs / "uvicorn.log", env) as app_url:
        directory = Path(tempfile.mkdtemp(prefix="icc-nginx-"))
        directory.chmod(0o755)  # nginx's workers drop root privileges
        port = support.free_port()
        upstream = app_url.removeprefix("http://")
        conf = render_nginx_conf(directory, upstreams=(upstream, upstream), port=port)
        command = [nginx, "-p", str(directory), "-c", str(conf), "-e", f"{directory}/logs/error.log"]
        process = subprocess.Popen([*command, "-g", "daemon off;"], stdin=subprocess.DEVNULL)
        try:
            proxy = f"http://127.0.0.1:{port}"
            support.wait_until_healthy(proxy, process, name="nginx")
            with httpx.Client(base_url=proxy, trust_env=False) as client:
                answers = []
                for n in range(4):
                    form = client.get("/login")
                    (token,) = re.findall(r'name="login_csrf" value="([^"]+)"', form.text)
                    answers.append(
                        client.post(
                            "/login",
                            data={"email": f"guess-{n}@example.com", "password": WRONG, "login_csrf": token},
                            headers={"X-Forwarded-For": f"203.0.113.{n}"},
                        )
                    )
        finally:
            support.stop(process)
            shutil.rmtree(directory, ignore_errors=True)
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert "Too many failed sign-ins from your network." in answers[-1].text
