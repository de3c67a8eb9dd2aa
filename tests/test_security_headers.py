"""Every answer carries the security headers: pages, API, static files, errors, redirects and the
public status copies sent before any middleware; HSTS only with ICC_SECURE_COOKIES. (The
browser side, that no page breaks the policy, is tests/test_csp_browser.py.)"""

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import get_settings
from app.incidents import service as incidents
from app.main import MAX_BODY_BYTES, create_app
from app.runbooks.service import sync_runbooks
from app.security import HSTS, STRICT_POLICY
from app.status.cache import PAGE
from tests.conftest import sign_in, wait_connected

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


def assert_protected(response: httpx.Response, where: str) -> None:
    headers = response.headers
    assert headers.get("content-security-policy") == STRICT_POLICY, where
    for name, value in COMMON.items():
        assert headers.get(name) == value, f"{where}: {name}"
    assert "strict-transport-security" not in headers, where
    assert len(headers.get_list("content-security-policy")) == 1, where


async def test_every_kind_of_answer_carries_the_security_headers(app, client, session, responder, api_as):
    incident = await incidents.declare_incident(
        session, actor=responder, title="Checkout returns 502", severity="SEV2", services=["checkout"]
    )
    api = await api_as(responder)
    anonymous = {
        "sign-in page": await client.get("/login"),
        "redirect to sign-in": await client.get("/incidents"),
        "404 page": await client.get("/no-such-page"),
        "404 JSON": await client.get("/api/v1/no-such-thing"),
        "413": await client.post(
            "/api/v1/incidents",
            content=b"x" * (MAX_BODY_BYTES + 1),
            headers={"content-type": "application/json"},
        ),
        "401 JSON": await client.get("/api/v1/incidents"),
        "static CSS": await client.get("/static/css/app.css"),
        "static JS": await client.get("/static/js/app.js"),
        "health": await client.get("/healthz"),
        "API docs": await client.get("/api/docs"),
        "OpenAPI": await client.get("/api/v1/openapi.json"),
    }
    assert anonymous["redirect to sign-in"].status_code == 303
    assert anonymous["413"].status_code == 413
    await sign_in(client, responder)
    signed_in = {
        path: await client.get(path)
        for path in (
            "/incidents",
            f"/incidents/{incident.ref}",
            "/dashboard",
            "/alerts",
            "/runbooks",
            "/actions/runs",
            "/incidents/new",
        )
    }
    signed_in["HTMX fragment"] = await client.get("/incidents", headers={"HX-Request": "true"})
    signed_in["API"] = await api.get(f"/api/v1/incidents/{incident.ref}")
    for where, response in {**anonymous, **signed_in}.items():
        assert response.status_code < 500, where
        assert_protected(response, where)
    # Nothing that may hold incident details is kept by a browser or a proxy; static files may be.
    for where, response in {**anonymous, **signed_in}.items():
        if where.startswith("static"):
            assert "no-store" not in response.headers.get("cache-control", ""), where
        else:
            assert response.headers["cache-control"] == "no-store", where


async def test_the_public_status_copies_sent_before_any_middleware_carry_them_too(app, client):
    async with app.router.lifespan_context(app):
        await wait_connected(app)
        for path in ("/status", "/status/feed.atom", "/api/v1/status"):
            rendered = await client.get(path)  # no copy yet: the route renders it
            assert_protected(rendered, f"{path} rendered")
        assert app.state.status_cache.get(PAGE) is not None
        for path in ("/status", "/status/feed.atom", "/api/v1/status"):
            copy = await client.get(path)
            assert copy.status_code == 200, path
            assert_protected(copy, f"{path} from the copy")
            assert copy.headers["cache-control"] == "public, max-age=10", path
            not_modified = await client.get(path, headers={"If-None-Match": copy.headers["etag"]})
            assert not_modified.status_code == 304
            assert_protected(not_modified, f"{path} 304")


async def test_only_the_runbook_viewer_loads_remote_images_and_only_the_diagram_frame_styles_inline(
    app, client, session, responder
):
    await sync_runbooks(session, directory=app.state.settings.runbooks_dir)
    await sign_in(client, responder)
    viewer = await client.get("/runbooks/RB-000")
    assert viewer.status_code == 200
    assert viewer.headers["content-security-policy"] == STRICT_POLICY.replace(
        "img-src 'self' data:", "img-src 'self' data: https:"
    )
    frame = await client.get("/runbooks/diagram-renderer")
    assert frame.status_code == 200
    policy = frame.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in policy and "style-src 'self' 'unsafe-inline'" in policy
    assert "script-src 'self';" in policy and "default-src 'none'" in policy
    assert frame.headers["x-frame-options"] == "SAMEORIGIN"


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


async def test_hsts_only_when_the_site_is_served_over_https(secure_app, client):
    for path in ("/login", "/static/css/app.css", "/no-such-page", "/api/v1/incidents"):
        assert "strict-transport-security" not in (await client.get(path)).headers, path
    transport = httpx.ASGITransport(app=secure_app)
    async with httpx.AsyncClient(transport=transport, base_url="https://icc.example") as browser:
        for path in ("/login", "/static/css/app.css", "/no-such-page", "/api/v1/incidents"):
            response = await browser.get(path)
            assert response.headers["strict-transport-security"] == HSTS, path
            assert response.headers["content-security-policy"] == STRICT_POLICY, path
