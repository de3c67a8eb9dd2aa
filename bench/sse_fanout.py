"""SSE fan-out benchmark: how long a committed timeline write takes to reach every connected
incident-page stream, measured against the product running as uvicorn, with PostgreSQL's own
NOTIFY round trip (timed in the same run) as the baseline.

Run from the repository root:  .venv/bin/python bench/sse_fanout.py

It creates its own database (icc_bench_<random>) on the server named by ICC_BENCH_DATABASE_URL
(default: ICC_TEST_DATABASE_URL, then postgres@127.0.0.1:5432), migrates it to head, starts the
product on free 127.0.0.1 ports, and at the end stops every server and client process it started
and drops the database, also on error, Ctrl-C or SIGTERM. All traffic goes to 127.0.0.1.

Latencies are in milliseconds; a ratio is `baseline / ours` (higher is better). The fan-out
ratios are informational. The one target is absolute: commit → last client, p99 ≤ 50 ms for
1,000 clients over 2 server processes. See bench/README.md for what each figure means.
"""

import asyncio
import contextlib
import math
import multiprocessing
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import common
import psycopg
from common import Figure, progress
from sqlalchemy import event

from app.auth import service as accounts
from app.db import make_engine, make_sessionmaker
from app.incidents import service as incidents

RESULTS = common.RESULTS_DIR / "sse_fanout.json"

# (label, server processes, clients in all); the last one is the target configuration.
PHASES = [("1 process, 500 clients", 1, 500), ("2 processes, 500 clients", 2, 500)]
TARGET_PHASE = ("2 processes, 1,000 clients", 2, 1000)
TARGET_MS = 50.0  # commit → last client, p99 over commits (absolute: lower is better)
COMMITS, COMMIT_GAP_S = 40, 0.5
NOTIFY_TRIALS, NOTIFY_GAP_S = 200, 0.01  # half before the phases, half after
OPEN_LIMIT_S, SETTLE_LIMIT_S, QUIET_S = 90.0, 45.0, 1.0
DRAIN_LIMIT_S = 5.0  # after the last commit, waiting for the last arrivals
RUN_BUDGET_S = 200.0  # the informational phases are skipped once the run took this long
IDLE_SAMPLE_S = 2.0  # server CPU with the streams open and no commit (pings, presence)
MARKER_CHANGE, MARKER_RESYNC = b"event: change", b"event: resync"
BASELINE_CHANNEL = "icc_bench_rt"
ERROR_WORDS = ("Error", "Exception", "ERROR", "database unavailable")  # server log lines worth a note


def latency_figure(name: str, value: float, baseline_name: str, baseline: float) -> Figure:
    """common.latency_figure (informational here, no target), without a ratio when the value is
    not above 0: an arrival may come before this process has seen its COMMIT return."""
    if value > 0:
        return common.latency_figure(name, value, baseline_name, baseline)
    return Figure(name, round(value, 3), "ms", baseline_name, round(baseline, 3))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    low, high = math.floor(k), math.ceil(k)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def raise_open_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the clients (a process of their own) -------------------------------------------------------


class SseClient(asyncio.Protocol):
    """One incident-page stream over a raw socket. It only notes when each event arrives: the
    event names are found in the bytes as they come, without parsing the chunked framing (an
    event is one chunk; a marker split across two reads is found through the kept tail).
    `ready` resolves to None when the stream's first resync arrived, else to why it failed."""

    def __init__(self, request: bytes, ready: asyncio.Future) -> None:
        self.request = request
        self.ready = ready
        self.head = b""
        self.tail = b""
        self.headers_done = False
        self.changes: list[float] = []
        self.resyncs: list[float] = []
        self.last = 0.0
        self.lost = False
        self.transport: asyncio.Transport | None = None

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_result(reason)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if not self.headers_done:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head.split(b"\r\n", 1)[0].split(b" ")
            data, self.head, self.headers_done = self.head[end + 4 :], b"", True
            if len(status) < 2 or status[1] != b"200":
                self._fail(f"HTTP {status[1].decode() if len(status) > 1 else '?'}")
                return
        buf = self.tail + data
        changes, resyncs = buf.count(MARKER_CHANGE), buf.count(MARKER_RESYNC)
        if changes or resyncs:  # not the pings: a stream is quiet when no event comes
            self.last = now
        self.changes.extend([now] * changes)
        if resyncs:
            self.resyncs.extend([now] * resyncs)
            if not self.ready.done():
                self.ready.set_result(None)
        self.tail = buf[-(len(MARKER_CHANGE) - 1) :]  # shorter than a marker: never counted twice

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._fail(f"closed before its resync ({type(exc).__name__ if exc else 'EOF'})")


async def _clients(pipe, ports: list[int], path: str, token: str) -> None:
    loop = asyncio.get_running_loop()

    async def open_one(port: int) -> SseClient | str:
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()
        client = SseClient(request, loop.create_future())
        try:
            await loop.create_connection(lambda: client, "127.0.0.1", port)
            failure = await asyncio.wait_for(client.ready, OPEN_LIMIT_S)
        except (OSError, TimeoutError) as exc:
            failure = f"{type(exc).__name__}"
        if failure is not None:
            if client.transport is not None:
                client.transport.abort()
            return failure
        return client

    # All at once, as a crowd opening the incident page does: the product must cope, not the
    # benchmark pace it.
    started = time.perf_counter()
    outcomes = await asyncio.gather(*(open_one(p) for p in ports))
    clients = [c for c in outcomes if isinstance(c, SseClient)]
    failures: dict[str, int] = {}
    for outcome in outcomes:
        if isinstance(outcome, str):
            failures[outcome] = failures.get(outcome, 0) + 1
    pipe.send(("open", time.perf_counter() - started, len(clients), failures))
    if not clients:
        return
    mark, resync_mark, cpu_start = [0] * len(clients), [0] * len(clients), 0.0
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "status":
            pipe.send(
                (
                    "status",
                    max(c.last for c in clients),
                    sum(len(c.changes) for c in clients),
                    sum(len(c.changes) - m for c, m in zip(clients, mark, strict=True)),
                    sum(c.lost for c in clients),
                )
            )
        elif command == "mark":
            mark = [len(c.changes) for c in clients]
            resync_mark = [len(c.resyncs) for c in clients]
            cpu_start = time.process_time()
            pipe.send(("marked",))
        elif command == "collect":
            cpu = time.process_time() - cpu_start
            arrivals = [c.changes[m:] for c, m in zip(clients, mark, strict=True)]
            late_resyncs = sum(len(c.resyncs) - m for c, m in zip(clients, resync_mark, strict=True))
            pipe.send(("result", arrivals, cpu, late_resyncs, sum(c.lost for c in clients)))
            for client in clients:
                if client.transport is not None:
                    client.transport.close()
            await asyncio.sleep(0.2)
            return


def client_process(pipe, ports: list[int], path: str, token: str) -> None:
    """Entry point of the client process: opens one stream per entry of `ports`. It runs on
    uvloop, as the servers do: the clients share the 2 CPUs with what they measure, so the
    lighter they are, the less of their own time ends up in the figures."""
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us
    raise_open_file_limit(len(ports) + 256)
    uvloop.run(_clients(pipe, ports, path, token))


def baseline_listener(pipe, dsn: str) -> None:
    """Entry point of the baseline's LISTEN process: notes when each notification arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    arrivals: dict[str, float] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"LISTEN {BASELINE_CHANNEL}")
        pipe.send("ready")
        for notice in conn.notifies():
            if notice.payload == "stop":
                break
            arrivals[notice.payload] = time.perf_counter()
    pipe.send(arrivals)


def receive(pipe, proc: multiprocessing.Process, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not pipe.poll(0.2):
        if not proc.is_alive():
            raise RuntimeError(f"{what}: the process exited with {proc.exitcode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no answer within {timeout:.0f} s")
    return pipe.recv()


def tell_to_stop(proc: multiprocessing.Process, pipe) -> None:
    """Ask the client process to close its streams (on the way out, also after an error)."""
    if proc.is_alive():
        with contextlib.suppress(OSError):
            pipe.send("collect")


def start_child(stack: ExitStack, target, *args) -> tuple[multiprocessing.Process, object]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()

    def stop() -> None:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)

    stack.callback(stop)
    return proc, parent


# --- the baseline: PostgreSQL's NOTIFY round trip -----------------------------------------------


def notify_round_trips(dsn: str, trials: int) -> list[float]:
    """ms from the return of COMMIT (a transaction that ran pg_notify) to the arrival of the
    notification on another connection that LISTENs, in another process."""
    with ExitStack() as stack:
        proc, pipe = start_child(stack, baseline_listener, dsn)
        assert receive(pipe, proc, 30, "baseline listener") == "ready"
        committed: dict[str, float] = {}
        with psycopg.connect(dsn) as conn:
            for n in range(trials):
                conn.execute("SELECT pg_notify(%s, %s)", (BASELINE_CHANNEL, str(n)))
                conn.commit()
                committed[str(n)] = time.perf_counter()
                time.sleep(NOTIFY_GAP_S)
            conn.execute("SELECT pg_notify(%s, 'stop')", (BASELINE_CHANNEL,))
            conn.commit()
        arrivals = receive(pipe, proc, 30, "baseline listener")
    assert set(arrivals) == set(committed), "the baseline lost notifications"
    return [(arrivals[k] - committed[k]) * 1000 for k in committed]


# --- the product --------------------------------------------------------------------------------


def start_server(stack: ExitStack, url: str, workdir: Path, name: str) -> tuple[int, subprocess.Popen]:
    """One replica: uvicorn with one worker process, which holds the app itself; its runbooks
    directory and log in workdir/<name>."""
    home = workdir / name
    home.mkdir()
    base, proc = common.start_product(stack, url, home, {"ICC_RUN_SCHEDULER": "false"}, name=name, workers=1)
    return urlsplit(base).port, proc


@dataclass
class Seed:
    email: str
    token: str
    ref: str
    incident_id: int


async def seed(url: str) -> Seed:
    """A responder with an API token and one incident, through the service layer."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await accounts.create_user(
                session, email="bench-sse@example.com", name="Bench SSE", role="responder"
            )
            incident = await incidents.declare_incident(
                session, actor=user, title="Fan-out benchmark", severity="SEV2", services=["checkout"]
            )
            token = await accounts.create_api_token(session, email=user.email, name="bench")
            return Seed(user.email, token, incident.ref, incident.id)
    finally:
        await engine.dispose()


@dataclass
class Phase:
    label: str
    processes: int
    clients: int
    latencies: list[float] = field(default_factory=list)  # ms, one per (client, commit) pair
    last_client: list[float] = field(default_factory=list)  # ms, one per commit
    missing: int = 0
    extra: int = 0
    late_resyncs: int = 0
    open_s: float = 0.0
    settle_s: float = 0.0
    storm_events: int = 0
    client_cpu_ms_per_commit: float = 0.0
    server_cpu_ms_per_commit: list[float] = field(default_factory=list)
    server_idle_ms_per_gap: list[float] = field(default_factory=list)
    commit_ms: list[float] = field(default_factory=list)
    opened: int = 0
    failed_opens: dict[str, int] = field(default_factory=dict)  # why -> how many streams
    server_log: str = ""  # the servers' error lines, when there were any
    lost: int = 0  # streams closed before the end of the commits
    exited: list[str] = field(default_factory=list)  # servers that were gone before the end


def match(arrivals: list[list[float]], commits: list[float], starts: list[float], phase: Phase) -> None:
    """Each commit owns the arrivals from the moment its COMMIT was sent to the next commit's; a
    client's first arrival in that window, less the moment COMMIT returned, is its latency (it
    can be slightly negative: PostgreSQL may deliver before our event loop resumes)."""
    bounds = [*starts, math.inf]
    per_commit: list[list[float]] = [[] for _ in commits]
    for times in arrivals:
        for i, commit in enumerate(commits):
            inside = [t for t in times if bounds[i] <= t < bounds[i + 1]]
            if not inside:
                phase.missing += 1
                continue
            phase.extra += len(inside) - 1
            per_commit[i].append((inside[0] - commit) * 1000)
    for got in per_commit:
        phase.latencies += got
        if len(got) == len(arrivals):  # the last client is only known when every client heard it
            phase.last_client.append(max(got))


async def run_phase(url: str, seed_: Seed, workdir: Path, label: str, processes: int, clients: int) -> Phase:
    phase = Phase(label, processes, clients)
    with ExitStack() as stack, psycopg.connect(common.libpq(url), autocommit=True) as db:
        db.execute("DELETE FROM viewers")
        servers = [start_server(stack, url, workdir, f"uvicorn-{processes}p-{n}") for n in range(processes)]
        ports = [servers[n % processes][0] for n in range(clients)]  # interleaved over the replicas
        proc, pipe = start_child(stack, client_process, ports, f"/incidents/{seed_.ref}/events", seed_.token)
        stack.callback(tell_to_stop, proc, pipe)
        _, phase.open_s, phase.opened, phase.failed_opens = await asyncio.to_thread(
            receive, pipe, proc, OPEN_LIMIT_S + 30, "clients"
        )
        failed = sum(phase.failed_opens.values())
        progress(
            f"{phase.opened} of {clients} streams open in {phase.open_s:.1f} s"
            + (f" ({failed} failed: {phase.failed_opens})" if failed else "")
            + "; waiting for them to go quiet"
        )
        if not phase.opened:
            return phase

        # Every stream that opens announces its viewer on icc_changes (a presence event for the
        # incident's streams, coalesced): wait until all viewers are recorded and the streams went
        # quiet, so the commits are timed against a settled crowd.
        started = time.perf_counter()
        while True:
            (viewers,) = db.execute(
                "SELECT count(*) FROM viewers WHERE incident_id = %s", (seed_.incident_id,)
            ).fetchone()
            pipe.send("status")
            _, last, total, _, lost = await asyncio.to_thread(receive, pipe, proc, 30, "clients")
            if lost:
                raise RuntimeError(f"{label}: {lost} streams closed while opening")
            if viewers >= phase.opened and time.perf_counter() - last >= QUIET_S:
                break
            if time.perf_counter() - started > SETTLE_LIMIT_S:
                progress(f"not quiet: last event {time.perf_counter() - last:.2f} s ago, {total:,} events")
                raise RuntimeError(f"{label}: not settled within {SETTLE_LIMIT_S:.0f} s ({viewers} viewers)")
            await asyncio.sleep(0.25)
        phase.settle_s, phase.storm_events = time.perf_counter() - started, total
        progress(f"quiet after {phase.settle_s:.1f} s ({total:,} change events); {COMMITS} commits")

        idle = [cpu_seconds(p.pid) for _, p in servers]
        await asyncio.sleep(IDLE_SAMPLE_S)
        phase.server_idle_ms_per_gap = [
            (cpu_seconds(p.pid) - before) * 1000 * COMMIT_GAP_S / IDLE_SAMPLE_S
            for (_, p), before in zip(servers, idle, strict=True)
        ]
        pipe.send("mark")
        await asyncio.to_thread(receive, pipe, proc, 30, "clients")
        server_cpu = [cpu_seconds(p.pid) for _, p in servers]
        commits: list[float] = []
        starts: list[float] = []
        engine = make_engine(url)
        try:
            async with make_sessionmaker(engine)() as session:
                actor = await accounts.get_user_by_email(session, email=seed_.email)
                event.listen(
                    session.sync_session, "before_commit", lambda _s: starts.append(time.perf_counter())
                )
                event.listen(
                    session.sync_session, "after_commit", lambda _s: commits.append(time.perf_counter())
                )
                for n in range(COMMITS):
                    before = len(commits)
                    start = time.perf_counter()
                    await incidents.add_timeline_entry(
                        session, actor=actor, ref=seed_.ref, kind="note", body=f"Fan-out benchmark note {n}"
                    )
                    assert len(commits) == before + 1, "add_timeline_entry did not commit exactly once"
                    phase.commit_ms.append((commits[-1] - start) * 1000)
                    await asyncio.sleep(max(0.0, commits[-1] + COMMIT_GAP_S - time.perf_counter()))
        finally:
            await engine.dispose()
        deadline = time.perf_counter() + DRAIN_LIMIT_S
        while time.perf_counter() < deadline:
            pipe.send("status")
            _, _, _, since_mark, _ = await asyncio.to_thread(receive, pipe, proc, 30, "clients")
            if since_mark >= phase.opened * COMMITS:
                break
            await asyncio.sleep(0.1)
        phase.server_cpu_ms_per_commit = [
            (cpu_seconds(p.pid) - before) * 1000 / COMMITS
            for (_, p), before in zip(servers, server_cpu, strict=True)
        ]
        pipe.send("collect")
        phase.exited = [
            f"server pid {p.pid} exited with {p.returncode}" for _, p in servers if p.poll() is not None
        ]
        _, arrivals, cpu, phase.late_resyncs, phase.lost = await asyncio.to_thread(
            receive, pipe, proc, 60, "clients"
        )
        phase.client_cpu_ms_per_commit = cpu * 1000 / COMMITS
        match(arrivals, commits, starts, phase)
    phase.server_log = server_errors(workdir)
    return phase


# --- output -------------------------------------------------------------------------------------


def phase_figures(phase: Phase, base_p50: float, base_p99: float) -> list[Figure]:
    name = f"fan-out, {phase.label}"
    failed = sum(phase.failed_opens.values())
    figures = [
        Figure(
            f"{name}: streams that failed to open (of {phase.clients:,} opened at once)",
            failed,
            "streams",
            target=0,
            met=failed == 0,
        )
    ]
    if not phase.latencies:
        return figures
    figures += [
        latency_figure(
            f"{name}: commit → client p50",
            percentile(phase.latencies, 0.5),
            "NOTIFY round trip p50",
            base_p50,
        ),
        latency_figure(
            f"{name}: commit → client p99",
            percentile(phase.latencies, 0.99),
            "NOTIFY round trip p99",
            base_p99,
        ),
    ]
    if phase.last_client:
        figures.append(
            latency_figure(
                f"{name}: commit → last client, p99 over commits",
                percentile(phase.last_client, 0.99),
                "NOTIFY round trip p99",
                base_p99,
            )
        )
    return figures


def phase_note(phase: Phase) -> str:
    pairs = phase.opened * COMMITS
    if not pairs:
        return f"{phase.label}: no stream opened ({phase.failed_opens})."
    spread = ", ".join(f"{v:.0f}" for v in phase.server_cpu_ms_per_commit)
    idle = ", ".join(f"{v:.0f}" for v in phase.server_idle_ms_per_gap)
    last = (
        f"last client per commit: median {statistics.median(phase.last_client):.1f} ms, "
        f"max {max(phase.last_client):.1f} ms"
        if phase.last_client
        else "no commit reached every client"
    )
    failed = (
        f"{sum(phase.failed_opens.values())} of {phase.clients:,} streams failed to open "
        f"({', '.join(f'{n} {why}' for why, n in phase.failed_opens.items())}); "
        if phase.failed_opens
        else f"all {phase.clients:,} streams opened; "
    )
    return (
        f"{phase.label}: {failed}{len(phase.latencies):,} of {pairs:,} (client, commit) pairs arrived "
        f"({phase.missing} missing, {phase.extra} extra events, "
        f"{phase.late_resyncs} resyncs during the commits); "
        f"{last}. Opening them all at once took {phase.open_s:.1f} s, "
        f"then {phase.settle_s:.1f} s until the viewers' own "
        f"announcements stopped ({phase.storm_events:,} change events reached the clients while they "
        f"connected). CPU per commit ({COMMIT_GAP_S} s): server process(es) {spread} ms "
        f"(with no commit: {idle} ms), client process "
        f"{phase.client_cpu_ms_per_commit:.0f} ms. Commit call (add_timeline_entry up to COMMIT) median "
        f"{statistics.median(phase.commit_ms):.1f} ms."
        + (f" {phase.lost} streams were closed by the server side before the end." if phase.lost else "")
        + (f" {'; '.join(phase.exited)} before the end of the phase." if phase.exited else "")
        + phase.server_log
    )


def client_bound_note(phase: Phase) -> str | None:
    """The clients share the 2 CPUs with the servers and PostgreSQL; say when they weigh."""
    if not phase.last_client:
        return None
    share = phase.client_cpu_ms_per_commit / statistics.median(phase.last_client)
    server = max(phase.server_cpu_ms_per_commit, default=0.0)
    verdict = (
        "the client side is a significant part of the measured time, "
        "so the figure overstates the product's latency"
        if share >= 0.3
        else "the client side is a minor part of it; the time is mostly the server's"
    )
    return (
        f"{phase.label}: the client process spends {phase.client_cpu_ms_per_commit:.0f} ms of CPU per commit "
        f"(reading {phase.clients:,} events), {share:.0%} of the median commit → last client time, while "
        f"the busiest server process spends {server:.0f} ms: {verdict}."
    )


def server_errors(workdir: Path) -> str:
    """The last exception line of the server logs of a phase (its workdir), if any."""
    found = []
    for log in sorted(workdir.glob("*/uvicorn.log")):
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        errors = [line for line in lines if any(word in line for word in ERROR_WORDS)]
        if errors:
            found.append(f"{log.parent.name}: {len(errors)} error lines, last: {errors[-1].strip()[:300]}")
    return (" Server log: " + "; ".join(found)) if found else ""


async def run(url: str, notes: list[str], started: float) -> list[Figure]:
    dsn = common.libpq(url)
    seed_ = await seed(url)
    progress(f"baseline: {NOTIFY_TRIALS // 2} NOTIFY round trips")
    baseline = await asyncio.to_thread(notify_round_trips, dsn, NOTIFY_TRIALS // 2)
    phases: list[Phase] = []
    failed: dict[str, str] = {}
    async with AsyncExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icc-bench-")))
        # The target phase first, so a slow machine can only cost the informational ones.
        for label, processes, clients in [TARGET_PHASE, *PHASES]:
            if (label, processes, clients) != TARGET_PHASE and time.perf_counter() - started > RUN_BUDGET_S:
                failed[label] = "skipped: the run was already too long"
                continue
            progress(f"phase: {label}")
            phase_dir = workdir / f"{processes}p-{clients}c"
            phase_dir.mkdir()
            try:
                phases.append(await run_phase(url, seed_, phase_dir, label, processes, clients))
            except RuntimeError as exc:  # the client side or the product could not cope: say so
                failed[label] = str(exc).splitlines()[0] + server_errors(phase_dir)
                progress(f"{label} failed: {failed[label]}")
    progress(f"baseline: {NOTIFY_TRIALS - NOTIFY_TRIALS // 2} more NOTIFY round trips")
    baseline += await asyncio.to_thread(notify_round_trips, dsn, NOTIFY_TRIALS - NOTIFY_TRIALS // 2)

    base_p50, base_p99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    figures = [
        Figure("baseline: PostgreSQL NOTIFY round trip p50", round(base_p50, 3), "ms"),
        Figure("baseline: PostgreSQL NOTIFY round trip p99", round(base_p99, 3), "ms"),
    ]
    for phase in phases:
        figures += phase_figures(phase, base_p50, base_p99)
    target = next((p for p in phases if (p.label, p.processes, p.clients) == TARGET_PHASE), None)
    value = percentile(target.last_client, 0.99) if target and target.last_client else None
    # Met only when every stream opened and every commit reached every one of them: a commit that
    # some client never heard has no "last client", and leaving it out would flatter the p99.
    complete = (
        target is not None
        and not target.failed_opens
        and len(target.last_client) == COMMITS
        and target.opened == target.clients
    )
    figures.append(
        Figure(
            name="target: SSE fan-out to 1,000 clients over 2 processes, commit → last client, p99",
            value=None if value is None else round(value, 3),
            unit="ms",
            baseline_name="NOTIFY round trip p99",
            baseline_value=round(base_p99, 3),
            ratio=round(base_p99 / value, 3) if value else None,
            target=TARGET_MS,
            met=complete and value is not None and value <= TARGET_MS,
        )
    )
    notes.append(
        f"Baseline: {len(baseline)} NOTIFY round trips (half before the phases, half after), "
        f"min {min(baseline):.2f} ms, max {max(baseline):.2f} ms."
    )
    for phase in phases:
        notes.append(phase_note(phase))
        if (bound := client_bound_note(phase)) is not None:
            notes.append(bound)
    for label, reason in failed.items():
        notes.append(f"{label}: no figure. {reason}")
    return figures


def main() -> int:
    raise_open_file_limit(4096)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    figures, notes = common.with_database(lambda url, _name, notes: asyncio.run(run(url, notes, started)))
    common.report(
        "SSE fan-out benchmark",
        RESULTS,
        figures,
        notes,
        started=started,
        footer=(
            f"{COMMITS} commits {COMMIT_GAP_S} s apart per phase, each a timeline note through "
            "add_timeline_entry in this process, timed when its COMMIT returned (SQLAlchemy's after_commit). "
            "Arrival = when the client process read the `change` event. "
            "Ratio = baseline / ours (informational).",
            common.load_line(load_before, "the clients, uvicorn and PostgreSQL"),
        ),
        limits=frozenset(f.name for f in figures),  # every target here is an upper limit on the value
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
