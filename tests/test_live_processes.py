"""Live updates, presence and escalations across real processes.

Two uvicorn replicas (separate processes and ports, one test database, each with its LISTEN
connection and its scheduler) are what a load balancer would have behind it. The tests talk to
them over HTTP as a browser or a script would: SSE streams read line by line (an EventSource
written in Python that records when each event arrived and, like the browser, reconnects with
`Last-Event-ID`), the JSON API with a bearer token, pages with a session cookie. A webhook
receiver is a real `http.server` on 127.0.0.1 in a thread. Replica logs go to pytest's
temporary directory (`replicas*/`) and are shown when a replica fails to start. Both replicas run
the scheduler throughout; the policy written for them escalates only SEV1 and SEV2, so the
SEV3 incidents of the other tests never escalate. A replica a test kills is started again for
the next test.

Events are invalidations: a `change` carries an incident id and the client fetches the state;
every stream starts with `resync`, so a reconnect to any replica repairs whatever it missed.
"""

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth import service as accounts
from app.auth.models import User
from app.escalation import service as escalation
from app.escalation.scheduler import INTERVAL_SECONDS
from app.incidents import service as incidents
from app.live.presence import PRESENCE_TTL
from app.live.routes import HEARTBEAT_SECONDS
from tests import support
from tests.conftest import sign_in

SCHEDULER_TICK = INTERVAL_SECONDS
HEARTBEAT = HEARTBEAT_SECONDS


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


# --- the webhook receiver ------------------------------------------------------------------

RECEIVER_500 = "The receiver answered 500."  # a failed delivery as the banner shows it


class Receiver:
    """Counts the POSTs it gets with their JSON bodies; answers 500 under /fail, else 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, object]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body: object = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver._lock:
                    receiver.posts.append((self.path, body))
                self.send_response(500 if self.path.startswith("/fail") else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def received(self, path: str) -> list[object]:
        with self._lock:
            return [body for p, body in self.posts if p == path]

    def reset(self) -> None:
        with self._lock:
            self.posts.clear()

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the replicas --------------------------------------------------------------------------


class Replica:
    """`python -m uvicorn app.main:create_app --factory` in its own process."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.log_path = log_dir / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def launch(self) -> None:
        self.port = support.free_port()
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}-{self.starts}.log"
        command = support.uvicorn_command(self.port, "--timeout-graceful-shutdown", "2")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=support.REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.process is not None
        support.wait_until_healthy(
            self.url, self.process, name=f"replica {self.name}", log=self.log, timeout=timeout
        )

    def kill(self) -> None:
        """kill -9: no shutdown code runs, the streams just break."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)

    def stop(self) -> None:
        if self.process is not None:
            support.stop(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


@dataclass
class Cluster:
    a: Replica
    b: Replica
    database_url: str

    def listen_backends(self) -> list[tuple[int, str]]:
        """The LISTEN connections of this database as pg_stat_activity shows them: (pid, query)."""
        with psycopg.connect(_libpq(self.database_url), autocommit=True) as conn:
            return conn.execute(
                "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND query ILIKE 'LISTEN%%' "
                "AND pid <> pg_backend_pid() ORDER BY pid",
                (_database_name(self.database_url),),
            ).fetchall()

    def wait_listening(self, expected: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.listen_backends()) != expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {expected} LISTEN connections, have {self.listen_backends()}")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Path:
    """Escalation policy of the replicas: SEV1 two steps to a good hook, SEV2 one to a failing one.
    SEV3 and SEV4 have no steps, so the other tests' incidents never escalate."""
    path = tmp_path_factory.mktemp("policy") / "icc.toml"
    path.write_text(
        f"""
[escalation]
allow_private = ["127.0.0.1"]

[[escalation.SEV1]]
name = "Manager"
after = "1m"
when = "unacknowledged"
notify = ["role:admin", "webhook:{receiver.url}/hook"]

[[escalation.SEV1]]
name = "Director"
after = "2m"
when = "unacknowledged"
notify = ["role:admin", "webhook:{receiver.url}/hook"]

[[escalation.SEV2]]
name = "Flaky pager"
after = "1m"
when = "unacknowledged"
notify = ["webhook:{receiver.url}/fail"]
"""
    )
    return path


@pytest.fixture
def replicas_policy(policy_file: Path, icc_toml) -> None:
    """This process delivers escalations too (a test moves its clock): under the replicas' policy."""
    icc_toml(policy_file.read_text())


@pytest.fixture(scope="module")
def _replicas(
    database_url: str, policy_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    env = support.server_env(database_url, {"ICC_CONFIG": str(policy_file), "ICC_RUN_SCHEDULER": "true"})
    log_dir = tmp_path_factory.mktemp("replicas")
    replicas = (Replica("a", env, log_dir), Replica("b", env, log_dir))
    try:
        for r in replicas:
            r.launch()
        for r in replicas:
            r.wait_ready()
        yield replicas
    finally:
        for r in replicas:
            r.stop()


@pytest.fixture
def cluster(_replicas: tuple[Replica, Replica], database_url: str) -> Cluster:
    """Both replicas up and LISTENing (one a previous test killed is started again)."""
    for r in _replicas:
        if not r.running:
            r.launch()
            r.wait_ready()
    c = Cluster(*_replicas, database_url=database_url)
    c.wait_listening(2)
    return c


# --- an EventSource ------------------------------------------------------------------------


@dataclass
class Event:
    kind: str
    id: str | None
    data: str
    at: float  # time.monotonic() when it arrived
    server: str


class LiveStream:
    """Reads an SSE endpoint like the browser's EventSource. `servers` are tried in turn: after
    a connection ends the next one is used (what a load balancer does when a replica is gone),
    sending `Last-Event-ID`. With `refetch`, every event fetches that JSON path from the replica
    that sent it, as the page does, and keeps it in `view`."""

    def __init__(
        self,
        servers: list[str],
        path: str,
        token: str,
        *,
        reconnect: bool = False,
        refetch: str | None = None,
    ) -> None:
        self.servers = servers
        self.path = path
        self.token = token
        self.reconnect = reconnect
        self.refetch = refetch
        self.events: list[Event] = []
        self.connects: list[tuple[str, str | None]] = []  # (server, Last-Event-ID sent)
        self.errors: list[str] = []
        self.view: object = None
        self.view_at = 0.0
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "LiveStream":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        auth = {"Authorization": f"Bearer {self.token}"}
        timeout = httpx.Timeout(5.0, read=HEARTBEAT * 3)
        last_id: str | None = None
        index = 0
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            while True:
                server = self.servers[min(index, len(self.servers) - 1)]
                headers = {**auth, "Accept": "text/event-stream", "Cache-Control": "no-cache"}
                if last_id is not None:
                    headers["Last-Event-ID"] = last_id
                self.connects.append((server, last_id))
                try:
                    async with client.stream("GET", server + self.path, headers=headers) as response:
                        if response.status_code != 200:
                            self.errors.append(f"{server}: HTTP {response.status_code}")
                        else:
                            fields: dict[str, str] = {}
                            async for line in response.aiter_lines():
                                if line == "":
                                    if "event" in fields or "data" in fields:
                                        event = Event(
                                            fields.get("event", "message"),
                                            fields.get("id"),
                                            fields.get("data", ""),
                                            time.monotonic(),
                                            server,
                                        )
                                        if event.id is not None:
                                            last_id = event.id
                                        self.events.append(event)
                                        self._arrived.set()
                                        if self.refetch:
                                            fetched = await client.get(server + self.refetch, headers=auth)
                                            self.view, self.view_at = fetched.json(), time.monotonic()
                                    fields = {}
                                elif not line.startswith(":"):
                                    name, _, value = line.partition(":")
                                    value = value.removeprefix(" ")
                                    if name == "data" and "data" in fields:
                                        value = fields["data"] + "\n" + value
                                    fields[name] = value
                except httpx.TransportError as exc:
                    self.errors.append(f"{server}: {type(exc).__name__}: {exc}")
                if not self.reconnect:
                    return
                index += 1
                await asyncio.sleep(0.3)

    async def next_event(
        self, after: int, within: float, match: Callable[[Event], bool] = lambda e: True
    ) -> tuple[int, Event]:
        """The first event at position >= `after` that matches, waiting up to `within` s."""
        deadline = time.monotonic() + within
        while True:
            for i in range(after, len(self.events)):
                if match(self.events[i]):
                    return i, self.events[i]
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [(e.kind, e.data, e.server) for e in self.events[after:]]
                raise AssertionError(
                    f"no such event within {within} s; after #{after}: {seen}; {self.errors}"
                )
            self._arrived.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)

    async def settle(self, quiet: float = 0.4, within: float = 5.0) -> None:
        """Wait until no event arrived for `quiet` seconds (the presence announcements die down)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            count = len(self.events)
            await asyncio.sleep(quiet)
            if len(self.events) == count:
                return


def changed(incident_id: int) -> Callable[[Event], bool]:
    return lambda e: e.kind == "change" and e.data == str(incident_id)


# --- people, tokens, incidents ---------------------------------------------------------------


@dataclass
class Person:
    user: User
    token: str


@pytest.fixture
def person(make_user, session: AsyncSession):
    async def make(name: str, role: str = "responder") -> Person:
        user = await make_user(role, name=name)
        token = await accounts.create_api_token(session, email=user.email, name="live tests")
        return Person(user, token)

    return make


async def declare(
    session: AsyncSession, actor: User, severity: str = "SEV3", title: str = "Checkout errors"
) -> tuple[str, int]:
    incident = await incidents.declare_incident(
        session, actor=actor, title=title, severity=severity, services="checkout"
    )
    return incident.ref, incident.id


def api(base_url: str, person: Person) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {person.token}"}, trust_env=False, timeout=10
    )


@asynccontextmanager
async def signed_in(base_url: str, user: User) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client signed in through the login form."""
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=10) as client:
        await sign_in(client, user)
        yield client


PRESENCE = re.compile(r'<p class="presence"[^>]*>(.*?)</p>', re.S)


async def here_now(client: httpx.AsyncClient, ref: str) -> str:
    page = await client.get(f"/incidents/{ref}")
    assert page.status_code == 200, page.text[:500]
    found = PRESENCE.search(page.text)
    assert found is not None, "the incident page has no presence line"
    return " ".join(found.group(1).split())


async def wait_until(
    check: Callable[[], Awaitable[object]], within: float, what: str, every: float = 0.2
) -> object:
    """Poll an async `check` until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        await asyncio.sleep(every)


async def sql(database_url: str, query: str, *params: object) -> list[tuple]:
    async with await psycopg.AsyncConnection.connect(_libpq(database_url), autocommit=True) as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


# --- one entry, two replicas -------------------------------------------------------------------


async def test_an_entry_posted_on_one_replica_reaches_a_stream_on_the_other_within_a_second(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    scribe = await person("Sam Scribe")
    watcher = await person("Wes Watcher")
    ref, incident_id = await declare(session, scribe.user)
    path = f"/incidents/{ref}/events"
    async with (
        LiveStream([cluster.b.url], path, watcher.token) as stream,
        LiveStream([cluster.b.url], "/events", watcher.token) as board,
        api(cluster.a.url, scribe) as a,
    ):
        _, first = await stream.next_event(0, 5)
        assert first.kind == "resync"
        _, first_on_board = await board.next_event(0, 5)
        assert first_on_board.kind == "resync"
        # Opening the page is itself news for the other viewers: a presence event, coalesced.
        await stream.next_event(1, 3, lambda e: e.kind == "presence" and e.data == str(incident_id))
        await stream.settle()
        await board.settle()

        latencies, from_start = [], []
        for n in range(5):
            mark, board_mark = len(stream.events), len(board.events)
            started = time.monotonic()
            response = await a.post(
                f"/api/v1/incidents/{ref}/timeline", json={"body": f"Step {n}: rolled back"}
            )
            returned = time.monotonic()
            assert response.status_code == 201, response.text
            _, event = await stream.next_event(mark, 2, changed(incident_id))
            _, on_board = await board.next_event(board_mark, 2, changed(incident_id))
            assert event.server == cluster.b.url
            latencies.append(event.at - returned)
            from_start.append(event.at - started)
            assert on_board.at - returned < 1.0
            await asyncio.sleep(0.1)

    print(
        f"\ncross-replica change latency after the POST returned: max {max(latencies) * 1000:.1f} ms, "
        f"median {statistics.median(latencies) * 1000:.1f} ms; from the POST's start: "
        f"max {max(from_start) * 1000:.1f} ms, median {statistics.median(from_start) * 1000:.1f} ms"
    )
    assert max(latencies) < 1.0, latencies


# --- presence ----------------------------------------------------------------------------------


async def test_presence_is_shared_by_the_replicas_and_a_closed_page_leaves(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    xena = await person("Xena Example")
    yuri = await person("Yuri Sample")
    ref, _ = await declare(session, xena.user)
    path = f"/incidents/{ref}/events"
    async with (
        signed_in(cluster.a.url, yuri.user) as page_a,
        signed_in(cluster.b.url, xena.user) as page_b,
        LiveStream([cluster.b.url], path, yuri.token) as on_b,
    ):
        async with LiveStream([cluster.a.url], path, xena.token) as on_a:
            await on_a.next_event(0, 5)
            await on_b.next_event(0, 5)

            async def both_shown() -> bool:
                a, b = await here_now(page_a, ref), await here_now(page_b, ref)
                return all("Xena Example" in t and "Yuri Sample" in t for t in (a, b))

            await wait_until(both_shown, 5, "both viewers on both replicas")
            assert await here_now(page_b, ref) == "Here now: Xena Example (you), Yuri Sample"
            assert await here_now(page_a, ref) == "Here now: Xena Example, Yuri Sample (you)"
            mark = len(on_b.events)
        # Xena closed her page on replica A: Yuri hears of it and she is gone from his page (a
        # page always counts the person fetching it, so Xena's own fetch would still show her).
        left = time.monotonic()

        async def xena_gone() -> bool:
            return "Xena" not in await here_now(page_a, ref)

        await wait_until(xena_gone, 5, "Xena leaves the presence line")
        gone_after = time.monotonic() - left
        await on_b.next_event(mark, 3, lambda e: e.kind == "presence")
        assert await here_now(page_a, ref) == "Here now: Yuri Sample (you)"
    print(f"\npresence: a closed stream left the page after {gone_after * 1000:.0f} ms")


async def test_a_crowd_opening_an_incident_at_once_all_get_their_stream_and_leave_together(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    # More streams than the replica's pool has connections (10 + 10 overflow), opened at the
    # same moment: a link to a SEV1 pasted in a busy channel.
    crowd = 200
    scribe = await person("Sam Scribe")
    ref, incident_id = await declare(session, scribe.user)
    path = f"/incidents/{ref}/events"
    streams = [LiveStream([cluster.a.url], path, scribe.token) for _ in range(crowd)]
    async with api(cluster.b.url, scribe) as b:
        try:
            await asyncio.gather(*(stream.__aenter__() for stream in streams))
            opened = await asyncio.gather(
                *(stream.next_event(0, 30, lambda e: e.kind == "resync") for stream in streams)
            )
            assert len(opened) == crowd
            assert [e for s in streams for e in s.errors] == []
            assert await sql(
                cluster.database_url, "SELECT count(*) FROM viewers WHERE incident_id = %s", incident_id
            ) == [(crowd,)]
            # An open stream holds no database connection: both replicas together (pools and
            # LISTEN connections) stay far below one connection per stream.
            [(connections,)] = await sql(
                cluster.database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()",
            )
            assert connections < 50, connections

            marks = [len(stream.events) for stream in streams]
            response = await b.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "Crowd check"})
            assert response.status_code == 201
            await asyncio.gather(
                *(s.next_event(m, 10, changed(incident_id)) for s, m in zip(streams, marks, strict=True))
            )
        finally:
            await asyncio.gather(*(stream.close() for stream in streams))

        async def all_left() -> bool:
            rows = await sql(
                cluster.database_url, "SELECT count(*) FROM viewers WHERE incident_id = %s", incident_id
            )
            return rows == [(0,)]

        await wait_until(all_left, 10, "the crowd's viewer rows are gone")


async def test_a_viewer_of_a_busy_incident_stays_present(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    viewer = await person("Vera Viewer", role="viewer")
    scribe = await person("Sam Scribe")
    ref, incident_id = await declare(session, scribe.user)
    async with (
        LiveStream([cluster.a.url], f"/incidents/{ref}/events", viewer.token) as stream,
        api(cluster.b.url, scribe) as b,
        signed_in(cluster.b.url, scribe.user) as page,
    ):
        await stream.next_event(0, 5, lambda e: e.kind == "presence")  # she arrived
        # Time is data: as if she had had the page open for a while, with 10 s of the TTL left.
        await sql(
            cluster.database_url,
            "UPDATE viewers SET seen_at = seen_at - %s WHERE incident_id = %s",
            PRESENCE_TTL - timedelta(seconds=10),
            incident_id,
        )
        # The scribe logs an entry every 2 s, for longer than one heartbeat.
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < HEARTBEAT + 2:
            response = await b.post(f"/api/v1/incidents/{ref}/timeline", json={"body": f"Reading {n}"})
            assert response.status_code == 201
            n += 1
            await asyncio.sleep(2)
        assert stream.errors == []
        assert "Vera Viewer" in await here_now(page, ref)


# --- the LISTEN connection ---------------------------------------------------------------------


async def test_a_terminated_listen_connection_reconnects_and_streams_resync(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    scribe = await person("Sam Scribe")
    ref, incident_id = await declare(session, scribe.user)
    before = cluster.listen_backends()
    # One LISTEN connection per replica, idle in its LISTEN statement.
    assert [q for _, q in before] == ['LISTEN "icc_changes"'] * 2, before
    path = f"/incidents/{ref}/events"
    async with (
        LiveStream([cluster.a.url], path, scribe.token) as on_a,
        LiveStream([cluster.b.url], path, scribe.token) as on_b,
        api(cluster.a.url, scribe) as a,
    ):
        for s in (on_a, on_b):
            await s.next_event(0, 5)
        await on_a.settle()
        await on_b.settle()
        marks = len(on_a.events), len(on_b.events)
        terminated = await sql(
            cluster.database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()",
            _database_name(cluster.database_url),
        )
        assert terminated == [(True,), (True,)]
        cut = time.monotonic()
        # Logged while the replicas may still be deaf: the resync after the reconnect covers it.
        response = await a.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "During the gap"})
        assert response.status_code == 201
        resyncs = []
        for s, mark in zip((on_a, on_b), marks, strict=True):
            _, event = await s.next_event(mark, 5, lambda e: e.kind == "resync")
            resyncs.append(event.at - cut)
        assert on_a.errors == on_b.errors == []  # the streams themselves never broke
        await asyncio.to_thread(cluster.wait_listening, 2)
        after = cluster.listen_backends()
        assert {pid for pid, _ in after}.isdisjoint(pid for pid, _ in before)

        timeline = (await a.get(f"/api/v1/incidents/{ref}/timeline")).json()["items"]
        assert [e["body"] for e in timeline].count("During the gap") == 1

        marks = len(on_a.events), len(on_b.events)
        response = await a.post(f"/api/v1/incidents/{ref}/timeline", json={"body": "After the reconnect"})
        assert response.status_code == 201
        for s, mark in zip((on_a, on_b), marks, strict=True):
            await s.next_event(mark, 2, changed(incident_id))
    print(f"\nresync after pg_terminate_backend: {', '.join(f'{t * 1000:.0f} ms' for t in resyncs)}")


# --- escalations with two schedulers -----------------------------------------------------------


async def declared_in_the_past(
    session: AsyncSession, actor: User, severity: str, ago: timedelta
) -> tuple[str, int]:
    """Declared `ago` before now (the test process's clock moved back, then restored)."""
    past = datetime.now(UTC) - ago
    clock.set_source(lambda: past)
    try:
        return await declare(session, actor, severity=severity, title="Payments down")
    finally:
        clock.set_source(None)


async def test_each_escalation_step_fires_once_with_two_schedulers_running(
    cluster: Cluster, receiver: Receiver, person, session: AsyncSession
) -> None:
    receiver.reset()
    commander = await person("Ivy Commander")
    ref, incident_id = await declared_in_the_past(session, commander.user, "SEV1", timedelta(minutes=3))

    async def both_fired() -> bool:
        rows = await sql(
            cluster.database_url, "SELECT count(*) FROM escalations WHERE incident_id = %s", incident_id
        )
        return rows[0][0] == 2

    started = time.monotonic()
    await wait_until(both_fired, 4 * SCHEDULER_TICK, "both SEV1 steps fire", every=0.25)
    fired_after = time.monotonic() - started
    # Both schedulers tick at least twice more with the steps long due.
    await asyncio.sleep(2 * SCHEDULER_TICK + 1)

    escalations = await sql(
        cluster.database_url,
        "SELECT step_key, name, count(*) OVER (PARTITION BY step_key) FROM escalations "
        "WHERE incident_id = %s ORDER BY step_key",
        incident_id,
    )
    assert escalations == [("SEV1:0", "Manager", 1), ("SEV1:1", "Director", 1)]
    entries = await sql(
        cluster.database_url,
        "SELECT body FROM timeline_entries WHERE incident_id = %s AND kind = 'escalation' ORDER BY id",
        incident_id,
    )
    assert len(entries) == 2, entries
    for name, minutes in (("Manager", 1), ("Director", 2)):
        assert [b for (b,) in entries if b.startswith(f"Escalated to {name} (after {minutes} min ")] != [], (
            entries
        )
    hooks = receiver.received("/hook")
    assert len(hooks) == 2, hooks
    for body in hooks:
        assert isinstance(body, dict) and set(body) == {"text"}, body
        assert body["text"].startswith(f"[SEV1] {ref} Payments down: Escalated to ")
    assert sorted(b["text"].split("Escalated to ")[1].split(" ")[0] for b in hooks) == ["Director", "Manager"]
    states = await sql(
        cluster.database_url,
        "SELECT n.state, n.attempts FROM escalation_notifications n "
        "JOIN escalations e ON e.id = n.escalation_id WHERE e.incident_id = %s",
        incident_id,
    )
    assert states == [("sent", 1), ("sent", 1)]
    print(f"\nescalation: both steps fired {fired_after:.1f} s after the declaration was committed")


async def test_a_failing_webhook_is_retried_with_backoff_then_shown_as_failed(
    cluster: Cluster, receiver: Receiver, person, session: AsyncSession, app, replicas_policy: None
) -> None:
    receiver.reset()
    commander = await person("Ivy Commander")
    ref, incident_id = await declared_in_the_past(session, commander.user, "SEV2", timedelta(minutes=2))

    async def notification() -> tuple | None:
        rows = await sql(
            cluster.database_url,
            "SELECT n.state, n.attempts, n.next_attempt_at, n.last_error "
            "FROM escalation_notifications n JOIN escalations e ON e.id = n.escalation_id "
            "WHERE e.incident_id = %s",
            incident_id,
        )
        assert len(rows) <= 1
        return rows[0] if rows and rows[0][1] >= 1 else None

    # A replica's scheduler fires the step and makes the first attempt, in real time.
    state, attempts, next_at, error = await wait_until(notification, 4 * SCHEDULER_TICK, "first attempt")
    first_attempt_at = datetime.now(UTC)
    assert (state, attempts, error) == ("pending", 1, RECEIVER_500)
    assert timedelta(seconds=25) < next_at - first_attempt_at <= timedelta(seconds=30)
    assert len(receiver.received("/fail")) == 1

    # The later attempts, with this process's clock moved to each retry time. Every retry time
    # lies in the future for the replicas, so their schedulers leave the row alone meanwhile.
    waits = []
    try:
        for attempt in range(2, escalation.MAX_ATTEMPTS + 1):
            due = next_at
            clock.set_source(lambda due=due: due - timedelta(seconds=1))
            async with app.state.sessionmaker() as s:
                assert await escalation.deliver_notifications(s) == 0  # not yet: backing off
            clock.set_source(lambda due=due: due)
            async with app.state.sessionmaker() as s:
                assert await escalation.deliver_notifications(s) == 1
            state, attempts, next_at, error = await notification()
            assert attempts == attempt and error == RECEIVER_500
            if attempt < escalation.MAX_ATTEMPTS:
                assert state == "pending"
                waits.append(next_at - due)
            else:
                assert state == "failed"
        clock.set_source(lambda: next_at + timedelta(hours=1))
        async with app.state.sessionmaker() as s:
            assert await escalation.deliver_notifications(s) == 0  # it gave up for good
    finally:
        clock.set_source(None)
    assert waits == [timedelta(seconds=60), timedelta(seconds=120), timedelta(seconds=240)]
    assert len(receiver.received("/fail")) == escalation.MAX_ATTEMPTS
    assert all(body == receiver.received("/fail")[0] for body in receiver.received("/fail"))

    async with app.state.sessionmaker() as s:
        views = await escalation.escalations_of(s, incident_id=incident_id)
    assert [(v.name, v.failed_deliveries) for v in views] == [("Flaky pager", [RECEIVER_500])]
    for replica in (cluster.a, cluster.b):
        async with signed_in(replica.url, commander.user) as browser:
            page = (await browser.get(f"/incidents/{ref}")).text
        assert "Escalated to Flaky pager" in page
        assert f"Notifying Flaky pager failed: {RECEIVER_500}" in page


# --- two people in the browser -----------------------------------------------------------------


browser = support.browser  # Chromium for one test; ask for it last (see tests/support.py)


@pytest.fixture
async def war_room(make_user, session: AsyncSession) -> tuple[str, User, User]:
    """A SEV3 incident and the two responders who will open it."""
    scribe = await make_user("responder", name="Sam Scribe")
    lead = await make_user("responder", name="Lee Lead")
    ref, _ = await declare(session, scribe, title="Search is slow")
    return ref, scribe, lead


def open_incident(browser: Browser, base_url: str, user: User, ref: str) -> Page:
    page = support.open_page(browser, base_url)
    support.sign_in(page, user)
    page.goto(f"/incidents/{ref}")
    return page


def test_what_one_person_types_appears_on_the_other_persons_page(
    war_room: tuple[str, User, User], cluster: Cluster, browser_output_dir: Path, browser: Browser
) -> None:
    ref, scribe, lead = war_room
    typing = open_incident(browser, cluster.a.url, scribe, ref)
    watching = open_incident(browser, cluster.b.url, lead, ref)
    # Each sees the other arrive, though they are served by different replicas.
    expect(typing.locator(".presence")).to_have_text(f"Here now: {lead.name}, {scribe.name} (you)")
    expect(watching.locator(".presence")).to_have_text(f"Here now: {lead.name} (you), {scribe.name}")
    watching.evaluate("window.iccNotReloaded = true")

    text = f"Rolled back search-api to v41 ({uuid.uuid4().hex[:6]})"
    typing.keyboard.press("n")
    expect(typing.locator("#icc-entry-body")).to_be_focused()
    typing.keyboard.type(text)
    typing.keyboard.press("Enter")
    posted = time.monotonic()
    expect(watching.locator("#icc-timeline li.entry").last).to_contain_text(text, timeout=2_000)
    seen_after = time.monotonic() - posted
    assert watching.evaluate("window.iccNotReloaded === true")
    expect(typing.locator("#icc-timeline li.entry").last).to_contain_text(text)
    assert watching.locator("#icc-timeline li.entry", has_text=text).count() == 1
    watching.screenshot(path=browser_output_dir / "live-two-viewers.png", full_page=True)
    print(f"\nbrowser: typed on replica A, on replica B's page {seen_after * 1000:.0f} ms after Enter")


# --- a replica dies ----------------------------------------------------------------------------


async def test_a_stream_on_a_killed_replica_reconnects_to_the_other_and_ends_with_every_entry(
    cluster: Cluster, person, session: AsyncSession
) -> None:
    scribe = await person("Sam Scribe")
    watcher = await person("Wes Watcher")
    ref, incident_id = await declare(session, scribe.user)
    timeline = f"/api/v1/incidents/{ref}/timeline"
    stream = LiveStream(
        [cluster.a.url, cluster.b.url],
        f"/incidents/{ref}/events",
        watcher.token,
        reconnect=True,
        refetch=timeline,
    )
    bodies = [f"Entry {n:02d}" for n in range(24)]
    posted: list[tuple[str, float, float]] = []  # (body, started, returned)

    async with stream, api(cluster.b.url, scribe) as b:
        await stream.next_event(0, 5, lambda e: e.kind == "presence")
        await stream.settle()
        killed_at = 0.0
        for n, body in enumerate(bodies):
            started = time.monotonic()
            response = await b.post(timeline, json={"body": body})
            assert response.status_code == 201, response.text
            posted.append((body, started, time.monotonic()))
            if n == 7:
                await asyncio.to_thread(cluster.a.kill)
                killed_at = time.monotonic()
            await asyncio.sleep(0.1)
        last_started = posted[-1][1]
        # The page ends with a refetch made after the last entry was announced.
        _, last = await stream.next_event(0, 5, lambda e: e.server == cluster.b.url and e.at > last_started)

        async def refetched() -> bool:
            return stream.view_at > last.at

        await wait_until(refetched, 5, "the page refetches after the last change", every=0.05)
        final = (await b.get(timeline)).json()["items"]

    # Before the kill it was A's stream; after it, one reconnect to B, with Last-Event-ID.
    assert [server for server, _ in stream.connects] == [cluster.a.url, cluster.b.url], stream.connects
    a_events = [e for e in stream.events if e.server == cluster.a.url]
    b_events = [e for e in stream.events if e.server == cluster.b.url]
    assert stream.connects[1][1] == a_events[-1].id
    assert b_events[0].kind == "resync"
    reconnected = b_events[0].at
    # Every entry committed after the client was back produced a change on the survivor.
    later = [(body, started) for body, started, _ in posted if started > reconnected]
    assert len(later) >= 5, (later, reconnected - killed_at)
    for body, started in later:
        assert any(e.kind == "change" and e.data == str(incident_id) and e.at > started for e in b_events), (
            body
        )
    changes_after = [e for e in b_events[1:] if e.kind == "change"]
    assert len(changes_after) >= len(later)

    # What the page shows at the end, and what the API says: every entry once, in order.
    view = [e["body"] for e in stream.view["items"] if e["kind"] == "note"]
    assert view == bodies
    assert [e["body"] for e in final if e["kind"] == "note"] == bodies
    print(f"\nkill -9: the stream was back on the survivor {(reconnected - killed_at) * 1000:.0f} ms later")
