"""Confirm-before-execute webhooks, against a real HTTP receiver on 127.0.0.1 (a random port):
what is previewed, who may confirm, what is sent (signed, once), and what the timeline says."""

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import select, text

from app.actions import service as actions
from app.actions.catalog import DEFAULT_ACTIONS, build_catalog, load_catalog
from app.actions.models import ActionRun
from app.config import ConfigError, Settings
from app.incidents import service as incidents
from app.outbound import SendRefused, address_problem, check_destination
from app.status import updates as status
from tests.conftest import sign_in

API = "/api/v1"
SECRET = "receiver-shared-secret"
TOKEN_ENV = "ICC_TEST_AUTOMATION_TOKEN"


# ---------------------------------------------------------------- the receiver


class Receiver:
    """A webhook receiver: records every request and checks its signature, as a real one would."""

    def __init__(self) -> None:
        self.hits: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    receiver.hits.append(
                        {
                            "path": self.path,
                            "body": body,
                            "headers": dict(self.headers),
                            "signature_valid": hmac.compare_digest(
                                self.headers.get("X-ICC-Signature", ""), expected
                            ),
                        }
                    )
                path = self.path
                if path == "/slow":
                    time.sleep(3)
                if path == "/busy":
                    time.sleep(0.3)
                if path in ("/404", "/503"):
                    return self._send(int(path[1:]), b'{"error": "nope"}')
                if path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{receiver.port}/ok")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(50 * 1024 * 1024))
                    self.end_headers()
                    try:
                        for _ in range(50 * 1024):
                            self.wfile.write(b"x" * 1024)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return None
                return self._send(200, json.dumps({"ok": True, "path": path}).encode())

            def _send(self, status: int, payload: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]

    def on(self, path: str) -> list[dict]:
        with self.lock:
            return [h for h in self.hits if h["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


def _hook(port: int, path: str, **extra) -> dict:
    return {"url": f"http://127.0.0.1:{port}{path}", "cooldown": "none", **extra}


@pytest.fixture
def catalog(receiver, monkeypatch):
    """The six defaults plus test hooks, all on the local receiver; loopback allowed explicitly."""
    monkeypatch.setenv("ICC_TEST_SIGNING_SECRET", SECRET)
    monkeypatch.setenv(TOKEN_ENV, "s3cr3t-automation-token")
    port = receiver.port
    data = {
        "actions": {
            "base_url": f"http://127.0.0.1:{port}",
            "allowlist": ["127.0.0.1:*"],
            "allow_private": ["127.0.0.1"],
            "signing_secret_env": "ICC_TEST_SIGNING_SECRET",
            "cache-purge": _hook(
                port,
                "/ok",
                headers={"Authorization": "Bearer ${env:" + TOKEN_ENV + "}", "X-Team": "sre"},
                body={"incident": "{ref}", "services": "{services}", "by": "{user_email}"},
            ),
            "hook-404": _hook(port, "/404", title="Fails with 404"),
            "hook-503": _hook(port, "/503", title="Fails with 503"),
            "hook-slow": _hook(port, "/slow", title="Slow", timeout="1s"),
            "hook-redirect": _hook(port, "/redirect", title="Redirects"),
            "hook-huge": _hook(port, "/huge", title="Huge answer"),
            "hook-busy": _hook(port, "/busy", title="Takes a moment"),
            "hook-cooldown": _hook(port, "/ok", title="With cooldown", cooldown="10m"),
            "hook-ic-only": _hook(port, "/ok", title="IC only", incident_roles=["incident_commander"]),
        }
    }
    return build_catalog(data, settings=Settings(environment="test"))


@pytest.fixture
def app_catalog(app, catalog):
    """The app under test uses the test catalog."""
    before = app.state.catalog
    app.state.catalog = catalog
    yield catalog
    app.state.catalog = before


@pytest.fixture
async def incident(session, responder):
    return await incidents.declare_incident(
        session, actor=responder, title="Checkout returns 502", severity="SEV1", services=["checkout", "edge"]
    )


async def prepare(api: httpx.AsyncClient, ref: str, name: str, status: int = 201) -> dict:
    response = await api.post(f"{API}/incidents/{ref}/actions/{name}/runs")
    assert response.status_code == status, response.text
    return response.json()


async def confirm(api: httpx.AsyncClient, prepared: dict, **fields) -> httpx.Response:
    body = {"confirm_token": prepared["confirm_token"], **fields}
    return await api.post(f"{API}/action-runs/{prepared['id']}/confirm", json=body)


async def run_row(session, run_id: int) -> ActionRun:
    return await session.scalar(
        select(ActionRun).where(ActionRun.id == run_id).execution_options(populate_existing=True)
    )


async def action_entries(session, ref: str) -> list[str]:
    entries, _ = await incidents.list_timeline(session, ref=ref)
    return [e.body for e in entries if e.kind == "action_run"]


# ---------------------------------------------------------------- the catalog


def test_the_default_catalog_has_the_six_webhooks_of_the_runbook(tmp_path):
    catalog = load_catalog(tmp_path / "none.toml", settings=Settings(environment="test"))
    assert list(catalog.actions) == list(DEFAULT_ACTIONS)
    no_confirmation = {n for n, a in catalog.actions.items() if not a.requires_confirmation}
    assert no_confirmation == {"dns-flush", "log-tail"}
    assert {n for n, a in catalog.actions.items() if a.dangerous} == {"disk-cleanup", "service-restart"}
    assert catalog.actions["log-tail"].url == "https://automation.example.com/hooks/log-tail"
    assert catalog.confirm_within == timedelta(minutes=2)


def test_demo_mode_points_the_catalog_at_the_built_in_receiver(tmp_path):
    settings = Settings(environment="test", demo=True, actions_base_url="http://127.0.0.1:8123/demo/webhooks")
    catalog = load_catalog(tmp_path / "none.toml", settings=settings)
    assert catalog.actions["dns-flush"].url == "http://127.0.0.1:8123/demo/webhooks/dns-flush"
    assert "127.0.0.1:8123" in catalog.allowlist and "127.0.0.1" in catalog.allow_private


@pytest.mark.parametrize(
    ("actions_table", "message"),
    [
        ({"x": {"method": "TRACE"}}, "actions.x.method: use one of GET, POST, PUT, PATCH, DELETE"),
        ({"x": {"url": "ftp://host/x"}}, "actions.x.url: give an http(s) URL"),
        ({"x": {"body": {"a": "{password}"}}}, "actions.x.body.a: unknown field {password}"),
        ({"x": {"roles": ["viewer"]}}, "actions.x.roles: 'viewer' cannot run actions"),
        ({"x": {"timeout": "soon"}}, "actions.x.timeout: invalid duration 'soon'"),
        ({"x": {"incident_roles": ["boss"]}}, "actions.x.incident_roles: unknown role 'boss'"),
        ({"allowlist": ["nohost"]}, "actions.allowlist: 'nohost' must be host:port or host:*"),
        ({"colour": "blue"}, "actions: unknown setting 'colour'"),
    ],
)
def test_a_broken_actions_table_stops_start_up_with_one_clear_line(actions_table, message):
    with pytest.raises(ConfigError) as error:
        build_catalog({"actions": actions_table}, settings=Settings(environment="test"))
    assert message in str(error.value)


def test_production_refuses_to_start_without_a_signing_secret(monkeypatch):
    monkeypatch.delenv("ICC_WEBHOOK_SECRET", raising=False)
    settings = Settings(environment="production", secret_key="k" * 40, secure_cookies=True)
    with pytest.raises(ConfigError, match="ICC_WEBHOOK_SECRET must be set"):
        build_catalog({}, settings=settings)


# ---------------------------------------------------------------- where a request may go


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("10.1.2.3", "private"),
        ("127.0.0.1", "loopback"),
    ],
)
def test_forbidden_addresses_are_refused(catalog, address, problem):
    assert problem in (address_problem(catalog, "some.host", address) or "")


def test_metadata_is_refused_even_for_a_host_allowed_private_addresses(catalog):
    assert "link-local" in address_problem(catalog, "127.0.0.1", "169.254.169.254")
    assert address_problem(catalog, "127.0.0.1", "127.0.0.1") is None
    assert address_problem(catalog, "example.org", "93.184.215.14") is None


async def test_a_name_is_checked_by_the_address_it_resolves_to(catalog):
    strict = build_catalog(
        {"actions": {"allowlist": ["localhost:*", "169.254.169.254:80"]}},
        settings=Settings(environment="test"),
    )
    with pytest.raises(SendRefused, match=r"localhost resolves to .* loopback"):
        await check_destination(strict, "http://localhost:8080/hook")
    with pytest.raises(SendRefused, match="link-local"):
        await check_destination(strict, "http://169.254.169.254/latest/meta-data/")
    with pytest.raises(SendRefused, match="not on the actions allowlist"):
        await check_destination(strict, "http://example.org/hook")
    assert await check_destination(catalog, "http://127.0.0.1:9/x") == "127.0.0.1"


# ---------------------------------------------------------------- the two steps, through the API


async def test_a_confirmed_run_is_sent_once_signed_and_lands_on_the_timeline(
    api_as, session, responder, incident, receiver, app_catalog
):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "cache-purge")

    assert prepared["state"] == "awaiting_confirmation"
    assert prepared["confirm_token"]
    preview = prepared["preview"]
    assert preview["method"] == "POST"
    assert preview["url"] == f"http://127.0.0.1:{receiver.port}/ok"
    assert json.loads(preview["body"]) == {
        "incident": incident.ref,
        "services": ["checkout", "edge"],
        "by": responder.email,
    }
    assert preview["headers"]["Authorization"] == "Bearer ••••••"
    assert preview["headers"]["X-Team"] == "sre"
    assert preview["headers"]["X-ICC-Run-Id"] == str(prepared["id"])
    assert "s3cr3t" not in json.dumps(prepared)
    assert receiver.on("/ok") == []  # preparing sends nothing
    row = await run_row(session, prepared["id"])
    assert row.confirm_token_hash == hashlib.sha256(prepared["confirm_token"].encode()).hexdigest()
    assert prepared["confirm_token"] not in json.dumps(row.request_headers) + row.request_body

    response = await confirm(api, prepared)

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["state"] == "succeeded"
    assert result["http_status"] == 200
    assert result["duration_ms"] >= 0
    assert json.loads(result["response_excerpt"]) == {"ok": True, "path": "/ok"}
    [hit] = receiver.on("/ok")
    assert hit["signature_valid"]
    assert hit["headers"]["X-ICC-Run-Id"] == str(prepared["id"])
    assert hit["headers"]["Authorization"] == "Bearer s3cr3t-automation-token"
    assert hit["body"].decode() == preview["body"]
    [entry] = await action_entries(session, incident.ref)
    assert entry.startswith("Ran webhook `cache-purge` (Cache purge): succeeded, HTTP 200 in ")
    listed = (await api.get(f"{API}/incidents/{incident.ref}/action-runs")).json()["items"]
    assert [(r["id"], r["state"]) for r in listed] == [(prepared["id"], "succeeded")]
    catalog = (await api.get(f"{API}/actions")).json()
    assert "cache-purge" in [a["name"] for a in catalog]


@pytest.mark.parametrize(("name", "status"), [("hook-404", 404), ("hook-503", 503)])
async def test_an_error_from_the_receiver_is_a_failed_run(
    api_as, session, responder, incident, app_catalog, name, status
):
    api = await api_as(responder)
    result = (await confirm(api, await prepare(api, incident.ref, name))).json()
    assert (result["state"], result["http_status"]) == ("failed", status)
    assert result["response_excerpt"] == '{"error": "nope"}'
    [entry] = await action_entries(session, incident.ref)
    assert f"failed, HTTP {status}" in entry


async def test_a_slow_receiver_is_a_timed_out_run_not_a_hung_request(
    api_as, session, responder, incident, app_catalog
):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "hook-slow")
    started = time.monotonic()
    result = (await confirm(api, prepared)).json()
    assert time.monotonic() - started < 2.5
    assert result["state"] == "timed_out"
    assert result["http_status"] is None
    [entry] = await action_entries(session, incident.ref)
    assert "timed out after 1." in entry


async def test_a_redirect_is_not_followed(api_as, responder, incident, receiver, app_catalog):
    api = await api_as(responder)
    before = len(receiver.on("/ok"))
    result = (await confirm(api, await prepare(api, incident.ref, "hook-redirect"))).json()
    assert (result["state"], result["http_status"]) == ("failed", 302)
    assert result["error"] == "Redirect not followed."
    assert len(receiver.on("/ok")) == before


async def test_a_huge_response_is_read_only_up_to_the_cap(api_as, responder, incident, app_catalog):
    api = await api_as(responder)
    started = time.monotonic()
    result = (await confirm(api, await prepare(api, incident.ref, "hook-huge"))).json()
    assert result["state"] == "succeeded"
    assert 0 < len(result["response_excerpt"]) <= 4096
    assert set(result["response_excerpt"]) == {"x"}
    assert time.monotonic() - started < 5


async def test_a_refused_destination_is_recorded_as_a_failed_run(
    api_as, session, responder, incident, app, catalog
):
    metadata = build_catalog(
        {
            "actions": {
                "allowlist": ["169.254.169.254:80"],
                "allow_private": ["169.254.169.254"],
                "steal": {"url": "http://169.254.169.254/latest/meta-data/", "cooldown": "none"},
            }
        },
        settings=Settings(environment="test"),
    )
    app.state.catalog, before = metadata, app.state.catalog
    try:
        api = await api_as(responder)
        result = (await confirm(api, await prepare(api, incident.ref, "steal"))).json()
    finally:
        app.state.catalog = before
    assert result["state"] == "failed"
    assert "link-local" in result["error"]
    [entry] = await action_entries(session, incident.ref)
    assert "failed: Refused: 169.254.169.254 resolves to 169.254.169.254, a link-local address" in entry


async def test_an_action_whose_host_is_not_allowlisted_cannot_be_prepared(api_as, responder, incident, app):
    outside = build_catalog(
        {"actions": {"allowlist": ["hooks.internal:443"], "x": {"url": "https://elsewhere.example/x"}}},
        settings=Settings(environment="test"),
    )
    app.state.catalog, before = outside, app.state.catalog
    try:
        api = await api_as(responder)
        response = await api.post(f"{API}/incidents/{incident.ref}/actions/x/runs")
    finally:
        app.state.catalog = before
    assert response.status_code == 409
    assert "elsewhere.example:443, which is not on the actions allowlist" in response.json()["detail"]


# ---------------------------------------------------------------- who, when, how often


async def test_two_concurrent_confirmations_execute_the_run_exactly_once(
    api_as, session, responder, incident, receiver, app_catalog
):
    api = await api_as(responder)
    second = await api_as(responder)
    prepared = await prepare(api, incident.ref, "hook-busy")

    first_response, second_response = await asyncio.gather(confirm(api, prepared), confirm(second, prepared))

    assert sorted([first_response.status_code, second_response.status_code]) == [200, 409]
    loser = first_response if first_response.status_code == 409 else second_response
    assert "already confirmed" in loser.json()["detail"]
    assert len([h for h in receiver.on("/busy") if h["headers"]["X-ICC-Run-Id"] == str(prepared["id"])]) == 1
    assert len(await action_entries(session, incident.ref)) == 1
    assert (await run_row(session, prepared["id"])).state == "succeeded"


async def test_the_claim_is_a_compare_and_set_two_sessions_cannot_both_win(
    app, session, responder, incident, app_catalog
):
    view, _token = await actions.prepare_action_run(
        session, catalog=app_catalog, actor=responder, ref=incident.ref, name="hook-busy"
    )
    claim = text(
        "UPDATE action_runs SET state = 'running', started_at = now() "
        "WHERE id = :id AND state = 'awaiting_confirmation'"
    )

    async def try_claim() -> int:
        async with app.state.sessionmaker() as s:
            result = await s.execute(claim, {"id": view.run.id})
            await asyncio.sleep(0.05)
            await s.commit()
            return result.rowcount

    assert sorted(await asyncio.gather(try_claim(), try_claim())) == [0, 1]


async def test_a_confirmation_is_single_use(api_as, responder, incident, app_catalog):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "hook-404")
    assert (await confirm(api, prepared)).status_code == 200
    replay = await confirm(api, prepared)
    assert replay.status_code == 409
    assert replay.json()["code"] == "conflict"
    assert "a confirmation works once" in replay.json()["detail"]


async def test_an_expired_confirmation_is_gone_and_nothing_is_sent(
    api_as, session, responder, incident, receiver, app_catalog, frozen_clock
):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "cache-purge")
    before = len(receiver.on("/ok"))
    frozen_clock.advance(minutes=2, seconds=1)
    response = await confirm(api, prepared)
    assert response.status_code == 410
    assert response.json()["code"] == "gone"
    assert "expired" in response.json()["detail"]
    assert len(receiver.on("/ok")) == before
    run = (await api.get(f"{API}/action-runs/{prepared['id']}")).json()
    assert run["state"] == "expired"


async def test_only_the_person_who_prepared_a_run_can_confirm_it(
    api_as, make_user, responder, incident, app_catalog
):
    api = await api_as(responder)
    other = await api_as(await make_user("admin", name="Other Admin"))
    prepared = await prepare(api, incident.ref, "cache-purge")
    response = await confirm(other, prepared)
    assert response.status_code == 403
    assert response.json()["detail"] == "Only the person who prepared this run can confirm it."
    wrong_token = await api.post(
        f"{API}/action-runs/{prepared['id']}/confirm", json={"confirm_token": "guess"}
    )
    assert wrong_token.status_code == 403
    assert (await confirm(api, prepared)).status_code == 200  # still usable by its owner


async def test_a_dangerous_action_needs_its_name_typed(
    api_as, session, responder, incident, receiver, app_catalog
):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "service-restart")
    wrong = await confirm(api, prepared, typed_name="service-restar")
    assert wrong.status_code == 422
    assert (
        wrong.json()["detail"] == "Service restart is dangerous: type its name, service-restart, to confirm."
    )
    assert (await run_row(session, prepared["id"])).state == "awaiting_confirmation"
    right = await confirm(api, prepared, typed_name="service-restart")
    assert right.status_code == 200 and right.json()["state"] == "succeeded"


async def test_a_viewer_can_neither_prepare_nor_confirm(api_as, viewer, responder, incident, app_catalog):
    api = await api_as(viewer)
    response = await api.post(f"{API}/incidents/{incident.ref}/actions/cache-purge/runs")
    assert response.status_code == 403
    prepared = await prepare(await api_as(responder), incident.ref, "cache-purge")
    assert (await confirm(api, prepared)).status_code == 403


async def test_an_action_limited_to_the_ic_refuses_anyone_else(
    api_as, session, responder, incident, app_catalog
):
    api = await api_as(responder)
    refused = await api.post(f"{API}/incidents/{incident.ref}/actions/hook-ic-only/runs")
    assert refused.status_code == 403
    assert "only by the Incident Commander" in refused.json()["detail"]
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    await prepare(api, incident.ref, "hook-ic-only")


async def test_a_resolved_incident_runs_no_actions(api_as, session, responder, incident, app_catalog):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "cache-purge")
    await incidents.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    await status.change_status(
        session, actor=responder, ref=incident.ref, status="resolved", public_update="Checkout works again."
    )
    for response in (
        await api.post(f"{API}/incidents/{incident.ref}/actions/cache-purge/runs"),
        await confirm(api, prepared),
    ):
        assert response.status_code == 409
        assert "is resolved: reopen it" in response.json()["detail"]


async def test_the_cooldown_refuses_a_second_run_inside_its_window(
    api_as, responder, incident, app_catalog, frozen_clock
):
    api = await api_as(responder)
    assert (await confirm(api, await prepare(api, incident.ref, "hook-cooldown"))).status_code == 200
    frozen_clock.advance(minutes=9)
    refused = await api.post(f"{API}/incidents/{incident.ref}/actions/hook-cooldown/runs")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"With cooldown already ran on {incident.ref} at 14:00:00 UTC; its cooldown is 10 min. "
        "It can run again from 14:10:00 UTC."
    )
    frozen_clock.advance(minutes=1, seconds=1)
    await prepare(api, incident.ref, "hook-cooldown")


async def test_the_cooldown_holds_for_runs_prepared_before_the_first_one_ran(
    api_as, responder, incident, app_catalog
):
    api = await api_as(responder)
    first = await prepare(api, incident.ref, "hook-cooldown")
    second = await prepare(api, incident.ref, "hook-cooldown")
    assert (await confirm(api, first)).status_code == 200
    assert (await confirm(api, second)).status_code == 409


async def test_a_run_left_running_past_its_timeout_shows_as_unknown(
    api_as, session, responder, incident, app_catalog, frozen_clock
):
    api = await api_as(responder)
    prepared = await prepare(api, incident.ref, "cache-purge")
    # What a crash between the claim and the result leaves behind.
    await session.execute(
        text("UPDATE action_runs SET state = 'running', started_at = :at WHERE id = :id"),
        {"at": frozen_clock.now, "id": prepared["id"]},
    )
    await session.commit()
    assert (await api.get(f"{API}/action-runs/{prepared['id']}")).json()["state"] == "running"
    frozen_clock.advance(minutes=1)
    assert (await api.get(f"{API}/action-runs/{prepared['id']}")).json()["state"] == "unknown"
    unknown = (await api.get(f"{API}/action-runs", params={"state": "unknown"})).json()["items"]
    assert [r["id"] for r in unknown] == [prepared["id"]]
    assert (await confirm(api, prepared)).status_code == 409  # never re-sent by a confirmation


async def test_bad_input_is_a_clear_4xx(api_as, responder, incident, app_catalog):
    api = await api_as(responder)
    assert (await api.post(f"{API}/incidents/{incident.ref}/actions/nope/runs")).status_code == 404
    assert (await api.post(f"{API}/incidents/INC-1/actions/cache-purge/runs")).status_code == 404
    assert (await api.post(f"{API}/action-runs/0/confirm", json={"confirm_token": "x"})).status_code == 422
    assert (
        await api.post(f"{API}/action-runs/99999/confirm", json={"confirm_token": "x"})
    ).status_code == 404
    assert (await api.post(f"{API}/action-runs/1/confirm", json={})).status_code == 422
    assert (await api.get(f"{API}/action-runs", params={"state": "exploded"})).status_code == 422


# ---------------------------------------------------------------- pages


async def test_the_incident_page_offers_the_actions_and_the_dialog_confirms_one(
    client, session, responder, incident, receiver, app_catalog
):
    csrf = await sign_in(client, responder)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert 'aria-labelledby="icc-actions-h"' in page
    assert f'hx-post="/incidents/{incident.ref}/actions/cache-purge"' in page

    dialog = await client.post(
        f"/incidents/{incident.ref}/actions/cache-purge",
        data={"csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert dialog.status_code == 200
    assert "<html" not in dialog.text
    assert "Confirm and run" in dialog.text
    assert f"POST http://127.0.0.1:{receiver.port}/ok" in dialog.text
    assert "Bearer ••••••" in dialog.text and "s3cr3t" not in dialog.text
    assert f"as {responder.name}" in dialog.text
    token = dialog.text.split('name="confirm_token" value="')[1].split('"')[0]
    run_id = dialog.text.split('data-run="')[1].split('"')[0]

    result = await client.post(
        f"/action-runs/{run_id}/confirm",
        data={"csrf_token": csrf, "confirm_token": token},
        headers={"HX-Request": "true"},
    )
    assert result.status_code == 200
    assert result.headers["HX-Trigger"] == "icc-incident-changed"
    assert "Succeeded" in result.text and "HTTP <strong>200</strong>" in result.text
    assert "Confirm and run" not in result.text
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "Ran webhook `cache-purge`" in page or "Ran webhook <code>cache-purge</code>" in page


async def test_the_dialog_without_htmx_is_a_page_and_confirming_redirects_to_the_result(
    client, responder, incident, app_catalog
):
    csrf = await sign_in(client, responder)
    page = await client.post(f"/incidents/{incident.ref}/actions/service-restart", data={"csrf_token": csrf})
    assert page.status_code == 200 and "<html" in page.text
    assert "Type <code>service-restart</code> to confirm" in page.text
    token = page.text.split('name="confirm_token" value="')[1].split('"')[0]
    run_id = page.text.split('data-run="')[1].split('"')[0]
    wrong = await client.post(
        f"/action-runs/{run_id}/confirm", data={"csrf_token": csrf, "confirm_token": token, "typed_name": "x"}
    )
    assert wrong.status_code == 422
    assert "type its name, service-restart, to confirm" in wrong.text
    assert 'value="x"' in wrong.text and "Confirm and run" in wrong.text  # the form is kept
    done = await client.post(
        f"/action-runs/{run_id}/confirm",
        data={"csrf_token": csrf, "confirm_token": token, "typed_name": "service-restart"},
    )
    assert done.status_code == 303 and done.headers["location"] == f"/action-runs/{run_id}"
    assert "Succeeded" in (await client.get(f"/action-runs/{run_id}")).text


async def test_a_confirmation_without_the_csrf_token_is_refused(client, responder, incident, app_catalog):
    await sign_in(client, responder)
    response = await client.post(f"/incidents/{incident.ref}/actions/cache-purge", data={})
    assert response.status_code == 403


async def test_an_action_without_a_review_step_runs_on_its_click(
    client, session, responder, incident, receiver, app_catalog
):
    csrf = await sign_in(client, responder)
    result = await client.post(
        f"/incidents/{incident.ref}/actions/dns-flush",
        data={"csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert result.status_code == 200 and "Succeeded" in result.text
    assert receiver.on("/dns-flush")[-1]["signature_valid"]
    assert len(await action_entries(session, incident.ref)) == 1


async def test_a_refused_prepare_shows_its_reason_in_the_dialog(client, viewer, incident, app_catalog):
    csrf = await sign_in(client, viewer)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "/actions/cache-purge" not in page  # a viewer gets no buttons
    refused = await client.post(
        f"/incidents/{incident.ref}/actions/cache-purge",
        data={"csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 403
    assert "Viewers can read incidents but cannot change them." in refused.text


async def test_the_history_page_filters_runs(client, session, responder, incident, app_catalog):
    await actions.prepare_action_run(
        session, catalog=app_catalog, actor=responder, ref=incident.ref, name="cache-purge"
    )
    await actions.prepare_action_run(
        session, catalog=app_catalog, actor=responder, ref=incident.ref, name="hook-404"
    )
    await sign_in(client, responder)
    page = await client.get("/actions/runs")
    assert page.status_code == 200 and "<html" in page.text and 'href="/actions/runs"' in page.text
    assert "cache-purge" in page.text and "hook-404" in page.text
    only = await client.get("/actions/runs", params={"action": "hook-404"}, headers={"HX-Request": "true"})
    assert "<html" not in only.text and "<code>hook-404</code>" in only.text
    assert "<code>cache-purge</code>" not in only.text
    awaiting = await client.get(
        "/actions/runs", params={"state": "awaiting_confirmation", "incident": incident.ref}
    )
    assert awaiting.text.count("Awaiting confirmation</span>") == 2
    bad = await client.get("/actions/runs", params={"state": "exploded"})
    assert bad.status_code == 200 and "Unknown state &#39;exploded&#39;" in bad.text
