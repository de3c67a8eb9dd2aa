"""The deployment of docker-compose.yml, without Docker: two app replicas (ICC_RUN_SCHEDULER=false),
one `icc worker` and nginx running docs/deploy/nginx.conf, all on 127.0.0.1 against the test
database. What a load balancer in front of replicas must not break: sessions, live updates, the
cached status view, readiness, metrics, and acknowledged writes when a replica dies.

nginx comes from the system (`apt-get install nginx`; .ci/run installs it): the test is skipped
without it, or fails when the CI environment variable is set.
"""

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import PASSWORD, _libpq
from tests.deploy_nginx import render_nginx_conf
from tests.support import REPO, free_port, server_env, stop, uvicorn_command, wait_until_healthy

START_TIMEOUT = 30.0
EVENT_TIMEOUT = 10.0


def nginx_binary() -> str:
    found = shutil.which("nginx") or next(
        (str(p) for p in (Path("/usr/sbin/nginx"), Path("/usr/local/sbin/nginx")) if p.exists()), None
    )
    if found is None:
        message = "nginx is missing: install it with `apt-get install -y nginx`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@dataclass
class Topology:
    replica_a: str
    replica_b: str
    nginx: str
    processes: dict[str, subprocess.Popen]
    logs: Path

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


@pytest.fixture
def topology(database_url: str) -> Iterator[Topology]:
    nginx = nginx_binary()
    # nginx's workers drop root privileges: they must be able to reach the cache directory.
    directory = Path(tempfile.mkdtemp(prefix="icc-topology-"))
    directory.chmod(0o755)
    ports = {"app1": free_port(), "app2": free_port(), "nginx": free_port()}
    env = server_env(
        database_url, {"ICC_RUN_SCHEDULER": "false", "ICC_RUNBOOKS_DIR": str(directory / "runbooks")}
    )
    (directory / "runbooks").mkdir()
    icc = Path(sys.executable).with_name("icc")
    worker = (
        [str(icc), "worker"]
        if icc.exists()
        else [sys.executable, "-c", "from app.cli import main; main()", "worker"]
    )
    conf = render_nginx_conf(
        directory, upstreams=(f"127.0.0.1:{ports['app1']}", f"127.0.0.1:{ports['app2']}"), port=ports["nginx"]
    )
    commands = {
        "app1": uvicorn_command(ports["app1"], "--log-level", "warning"),
        "app2": uvicorn_command(ports["app2"], "--log-level", "warning"),
        "worker": worker,
        "nginx": [
            nginx,
            "-p",
            str(directory),
            "-c",
            str(conf),
            "-e",
            f"{directory}/logs/error.log",
            "-g",
            "daemon off;",
        ],
    }
    processes: dict[str, subprocess.Popen] = {}
    topology = Topology(
        replica_a=f"http://127.0.0.1:{ports['app1']}",
        replica_b=f"http://127.0.0.1:{ports['app2']}",
        nginx=f"http://127.0.0.1:{ports['nginx']}",
        processes=processes,
        logs=directory,
    )
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        for name, command in commands.items():
            log = cleanup.enter_context((directory / f"{name}.log").open("wb"))
            processes[name] = subprocess.Popen(
                command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            cleanup.callback(stop, processes[name])
        for name, base_url in (("app1", topology.replica_a), ("app2", topology.replica_b)):
            wait_until_healthy(
                base_url,
                processes[name],
                name=name,
                log=lambda n=name: topology.log(n),
                timeout=START_TIMEOUT,
            )
        wait_until_healthy(
            topology.nginx,
            processes["nginx"],
            name="nginx",
            log=lambda: (
                topology.log("nginx") + (directory / "logs" / "error.log").read_text(errors="replace")
            ),
            timeout=START_TIMEOUT,
        )
        assert processes["worker"].poll() is None, topology.log("worker")
        yield topology


async def sign_in(client: httpx.AsyncClient, email: str) -> None:
    """Through the login form, as a browser would (the login CSRF cookie and field)."""
    form = await client.get("/login")
    assert form.status_code == 200, form.text
    (token,) = re.findall(r'name="login_csrf" value="([^"]+)"', form.text)
    response = await client.post("/login", data={"email": email, "password": PASSWORD, "login_csrf": token})
    assert response.status_code == 303, response.text
    assert client.cookies.get("icc_session")


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs from a text/event-stream response (comments and pings skipped)."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if line == "":
            if data or event != "message":
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


async def next_event(events: AsyncIterator[tuple[str, str]], kind: str) -> str:
    async with asyncio.timeout(EVENT_TIMEOUT):
        async for event, data in events:
            if event == kind:
                return data
    raise AssertionError(f"the stream ended before a {kind!r} event")


def client(base_url: str, **kwargs) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10, **kwargs)


async def test_two_replicas_a_worker_and_nginx_behave_as_one_service(
    topology: Topology, database_url: str, make_user, session
):
    from app.auth import service as accounts

    user = await make_user("responder")
    token = await accounts.create_api_token(session, email=user.email, name="topology")
    bearer = {"Authorization": f"Bearer {token}"}

    # Ready and observable: /readyz through nginx and on each replica; /metrics on a replica only.
    async with client(topology.nginx) as via_nginx:
        ready = await via_nginx.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        assert (await via_nginx.get("/metrics")).status_code == 404, "nginx keeps per-process numbers inside"
    for base_url in (topology.replica_a, topology.replica_b):
        async with client(base_url) as replica:
            assert (await replica.get("/readyz")).status_code == 200

    # A session made through one replica works on the other: it lives in the database.
    async with client(topology.replica_a) as on_a:
        await sign_in(on_a, user.email)
        cookies = dict(on_a.cookies)
        declared = await on_a.post(
            "/api/v1/incidents", json={"title": "Checkout down", "severity": "SEV2"}, headers=bearer
        )
        assert declared.status_code == 201, declared.text
        ref = declared.json()["ref"]
    async with client(topology.replica_b, cookies=cookies) as on_b:
        page = await on_b.get("/incidents")
        assert page.status_code == 200, page.text
        assert user.name in page.text
        assert (await on_b.get("/login")).status_code == 303, "already signed in"

    # An event crosses replicas: written on A, heard on a stream opened through nginx and on one
    # opened on B directly (nginx may have sent its stream to either replica).
    async with (
        client(topology.nginx, cookies=cookies) as via_nginx,
        client(topology.replica_b, cookies=cookies) as on_b,
        client(topology.replica_a) as on_a,
        via_nginx.stream("GET", f"/incidents/{ref}/events") as through_nginx,
        on_b.stream("GET", f"/incidents/{ref}/events") as direct_b,
    ):
        for stream in (through_nginx, direct_b):
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
        nginx_events, b_events = sse_events(through_nginx), sse_events(direct_b)
        await next_event(nginx_events, "resync")
        await next_event(b_events, "resync")
        posted = await on_a.post(
            f"/api/v1/incidents/{ref}/timeline", json={"body": "Rolled back"}, headers=bearer
        )
        assert posted.status_code == 201, posted.text
        change_nginx, change_b = await asyncio.gather(
            next_event(nginx_events, "change"), next_event(b_events, "change")
        )
        assert change_nginx == change_b and change_nginx.isdigit()

    # The public status view goes through nginx's micro-cache: the second request is a hit.
    async with client(topology.nginx) as public:
        first = await public.get("/status")
        second = await public.get("/status")
        assert first.status_code == second.status_code == 200
        assert first.headers["x-cache-status"] in {"MISS", "EXPIRED"}, first.headers
        assert second.headers["x-cache-status"] == "HIT", second.headers
        assert second.content == first.content
        assert "public" in second.headers["cache-control"]
    async with client(topology.nginx, cookies=cookies) as signed_in:
        # A signed-in request is never answered from (or stored in) the cache.
        response = await signed_in.get("/status")
        assert response.status_code == 200
        assert response.headers["x-cache-status"] == "BYPASS"

    async with client(topology.replica_a) as on_a:
        metrics = (await on_a.get("/metrics")).text
    for name in (
        "icc_http_request_duration_seconds_bucket",
        'route="/api/v1/incidents/{ref}/timeline"',
        'icc_open_incidents{severity="SEV2"} 1.0',
        'icc_sla_breached_incidents{timer="ack"}',
        "icc_sse_clients",
        "icc_action_runs_total",
        "icc_alerts_stored_total",
        "icc_metrics_database_up 1.0",
    ):
        assert name in metrics, name
    assert f"/incidents/{ref}" not in metrics, "raw paths would make the label unbounded"

    # Kill one replica in the middle of a stream of writes through nginx: every write that was
    # acknowledged (201) is in the timeline, and writes go on through the survivor.
    acknowledged: list[str] = []
    failed: list[str] = []
    killed = asyncio.Event()
    after_kill = 0

    async def post_entries(poster: int) -> None:
        nonlocal after_kill
        async with client(topology.nginx, headers=bearer) as api:
            for n in range(400):
                if after_kill >= 40:
                    return
                body = f"entry {poster}-{n}"
                try:
                    response = await api.post(f"/api/v1/incidents/{ref}/timeline", json={"body": body})
                except httpx.HTTPError as exc:
                    failed.append(f"{body}: {exc!r}")
                    continue
                if response.status_code == 201:
                    acknowledged.append(body)
                    if len(acknowledged) >= 20:
                        enough_before.set()
                    after_kill += killed.is_set()
                else:
                    failed.append(f"{body}: {response.status_code}")

    enough_before = asyncio.Event()

    async def kill_replica_b() -> None:
        async with asyncio.timeout(20):
            await enough_before.wait()
        topology.processes["app2"].send_signal(signal.SIGKILL)
        killed.set()

    async with asyncio.timeout(60):
        await asyncio.gather(post_entries(1), post_entries(2), post_entries(3), kill_replica_b())
    assert topology.processes["app2"].wait(timeout=5) == -signal.SIGKILL
    assert after_kill >= 40, f"only {after_kill} writes succeeded after the kill; failures: {failed}"
    assert len(failed) <= 10, failed  # only the requests in flight on the killed replica
    with psycopg.connect(_libpq(database_url)) as conn:
        stored = {
            body
            for (body,) in conn.execute(
                "SELECT e.body FROM timeline_entries e JOIN incidents i ON i.id = e.incident_id"
                " WHERE i.ref = %s",
                (ref,),
            )
        }
    assert set(acknowledged) - stored == set(), "an acknowledged write was lost"
    print(f"{len(acknowledged)} writes acknowledged, {after_kill} after the kill; failed: {failed}")

    # The survivor is still ready, and the worker ran all along.
    async with client(topology.nginx) as via_nginx:
        assert (await via_nginx.get("/readyz")).status_code == 200
    assert topology.processes["worker"].poll() is None, topology.log("worker")
    assert "Scheduler running" in topology.log("worker")


async def readyz_of(database_url: str) -> httpx.Response:
    from app.main import create_app

    transport = httpx.ASGITransport(app=create_app(database_url))
    async with httpx.AsyncClient(transport=transport, base_url="http://icc") as api:
        return await api.get("/readyz")


async def test_readyz_is_503_until_the_migrations_have_run(database_url: str):
    name = f"icc_unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        empty = database_url.rsplit("/", 1)[0] + "/" + name
        response = await readyz_of(empty)
        assert response.status_code == 503
        assert response.json()["reason"] == "migrations_pending"
        assert "icc migrate" in response.json()["detail"]
    finally:
        with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert (await readyz_of(database_url)).status_code == 200


async def test_readyz_is_503_when_the_database_is_unreachable():
    response = await readyz_of(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none")
    assert response.status_code == 503
    assert response.json()["reason"] in {"database_unreachable", "database_timeout"}
