"""Status page and severity dashboard benchmarks: HTTP throughput of the running product (uvicorn,
2 workers) under wrk, as ratios against baselines measured in the same run.

Run from the repository root:  .venv/bin/python bench/status_dashboard.py

Needs `wrk` and `nginx` on the PATH (apt-get install -y wrk nginx); it installs nothing. It
creates its own database (icc_bench_<random>) on the server named by ICC_BENCH_DATABASE_URL
(default: ICC_TEST_DATABASE_URL, then postgres@127.0.0.1:5432), migrates it to head, starts the
product and an nginx on free 127.0.0.1 ports, and at the end stops both and drops the database,
also on error, Ctrl-C or SIGTERM. All traffic goes to 127.0.0.1.

Every figure with a target is a ratio `ours / baseline` of requests per second (for latencies,
`baseline / ours`), both the median of interleaved wrk runs in shuffled order. Higher is better.
See bench/README.md for what each figure means.
"""

import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NO_CONFIG = ROOT / "bench" / "no-such-icc.toml"
os.environ["ICC_ENVIRONMENT"] = "test"
os.environ["ICC_CONFIG"] = str(NO_CONFIG)
os.environ.pop("ICC_DATABASE_URL", None)

import httpx  # noqa: E402
import psycopg  # noqa: E402

from app.auth import service as accounts  # noqa: E402
from app.config import get_policy, get_settings  # noqa: E402
from app.db import make_engine, make_sessionmaker  # noqa: E402
from app.incidents import service as incidents  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from app.status import service as status  # noqa: E402

SERVER_URL = os.environ.get(
    "ICC_BENCH_DATABASE_URL",
    os.environ.get("ICC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
RESULTS = ROOT / "bench" / "results" / "status_dashboard.json"
APT_HINT = "apt-get update && apt-get install -y wrk nginx"

# wrk: 2 threads, 50 connections, 10 s a run, the median of 3 runs; one short warm-up run of
# every URL (not counted) before the rounds of a phase.
WRK_THREADS, WRK_CONNECTIONS, WRK_SECONDS, WRK_ROUNDS, WRK_WARMUP_SECONDS = 2, 50, 10, 3, 2
WRK_TIMEOUT = "30s"
SETTLE_LIMIT_S = 60.0  # waiting for the requests wrk abandoned at the end of a run
REBUILD_ROUNDS, REBUILD_BUDGET_S = 7, 10.0  # cold/warm status pairs; at least 3, fewer if slow
STATUS_TARGET, DASHBOARD_TARGET = 0.40, 0.50
HISTORY_SMALL, HISTORY_LARGE = 1_000, 100_000
HISTORY_ACTIVE = 6  # still-open incidents among the history (all in the first 1,000)
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway account in a throwaway database
NOTIFY_CHANNEL = "icc_changes"
DIAGNOSTIC = "diagnostic: "  # figures printed in a second table


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: float | None = None
    met: bool | None = None


def throughput_figure(
    name: str, value: float, baseline_name: str, baseline: float, target: float | None
) -> Figure:
    """Requests per second: higher is better, ratio = ours / baseline."""
    ratio = value / baseline
    return Figure(
        name=name,
        value=round(value, 3),
        unit="req/s",
        baseline_name=baseline_name,
        baseline_value=round(baseline, 3),
        ratio=round(ratio, 3),
        target=target,
        met=None if target is None else ratio >= target,
    )


def latency_figure(
    name: str, value: float, baseline_name: str, baseline: float, target: float | None = None
) -> Figure:
    """Milliseconds: lower is better, ratio = baseline / ours (as in bench/runbooks.py)."""
    ratio = baseline / value
    return Figure(
        name=name,
        value=round(value, 3),
        unit="ms",
        baseline_name=baseline_name,
        baseline_value=round(baseline, 3),
        ratio=round(ratio, 3),
        target=target,
        met=None if target is None else ratio >= target,
    )


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- tools, ports and processes -----------------------------------------------------------------


def find_tools() -> dict[str, str] | None:
    """Paths of wrk and nginx (nginx lives in /usr/sbin, often not on a user's PATH)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
    found = {tool: shutil.which(tool, path=search) for tool in ("wrk", "nginx")}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        print(f"Missing: {', '.join(missing)}. Install with:\n  {APT_HINT}", file=sys.stderr)
        return None
    return {tool: str(path) for tool, path in found.items()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(base: str) -> httpx.Client:
    # trust_env=False: never a proxy from the environment, the traffic stays on 127.0.0.1.
    return httpx.Client(base_url=base, trust_env=False, follow_redirects=False, timeout=30.0)


def stop_process(proc: subprocess.Popen, name: str, sig: int = signal.SIGTERM, grace: float = 20.0) -> None:
    """Stop a process this script started (and its own process group, nothing else)."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        progress(f"{name} did not stop within {grace:.0f} s: killing its process group {proc.pid}")
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group is ours alone
        proc.wait(timeout=10)


def wait_until(check, *, what: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} was not ready within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def start_product(stack: ExitStack, url: str, workdir: Path) -> str:
    port = free_port()
    runbooks = workdir / "runbooks"
    runbooks.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICC_")}
    env |= {
        "ICC_DATABASE_URL": url,
        "ICC_ENVIRONMENT": "test",
        "ICC_CONFIG": str(NO_CONFIG),
        "ICC_RUNBOOKS_DIR": str(runbooks),
    }
    log = workdir / "uvicorn.log"
    command = [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--workers", "2", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    stack.callback(stop_process, proc, "uvicorn")
    base = f"http://127.0.0.1:{port}"
    with client(base) as c:
        wait_until(lambda: c.get("/healthz").status_code == 200, what="uvicorn", proc=proc, log=log)
        # Both workers answer on the one socket: a few more requests so that each has started.
        for _ in range(10):
            with client(base) as fresh:
                assert fresh.get("/healthz").status_code == 200
    return base


NGINX_CONF = """\
worker_processes 2;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    keepalive_requests 1000000;  # like uvicorn: never close a keep-alive connection by count
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location = /status {{ default_type "text/html; charset=utf-8"; }}
    }}
}}
"""


def start_nginx(stack: ExitStack, nginx: str, body: bytes, workdir: Path) -> str:
    """nginx on a free port serving `body` as /status, from a static file."""
    port = free_port()
    tmp = workdir / "nginx"
    (tmp / "www").mkdir(parents=True)
    (tmp / "www" / "status").write_bytes(body)
    # Run as root, nginx's workers drop to `nobody`: they must be able to read the file.
    for path in (workdir, tmp, tmp / "www"):
        path.chmod(0o755)
    (tmp / "www" / "status").chmod(0o644)
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, port=port), encoding="utf-8")
    log = tmp / "error.log"
    with (tmp / "stderr.log").open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - the nginx found on the PATH, our own config
            [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(log)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stack.callback(stop_process, proc, "nginx", signal.SIGTERM, 10.0)
    base = f"http://127.0.0.1:{port}"
    with client(base) as c:
        wait_until(
            lambda: c.get("/status").status_code == 200, what="nginx", proc=proc, log=tmp / "stderr.log"
        )
        served = c.get("/status")
    assert served.content == body, "nginx does not serve the same bytes"
    return base


# --- wrk ----------------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p99_ms: float
    requests: int
    bytes_per_request: float
    non_2xx: int
    socket_errors: dict[str, int]


@dataclass
class Case:
    url: str
    expected_bytes: int  # status line, headers and body, as wrk counts what it read
    headers: tuple[str, ...] = ()


def wire_size(response: httpx.Response) -> int:
    head = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n") + 2
    return head + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + len(response.content)


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
UNITS_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def wrk(tool: str, case: Case, seconds: int) -> Run:
    # --timeout: wrk leaves a response slower than its timeout (default 2 s) out of the latency
    # histogram, which would hide the slow pages' p99; 30 s records them all.
    command = [tool, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}"]
    command.append("--latency")
    for header in case.headers:
        command += ["-H", header]
    command.append(case.url)
    done = subprocess.run(  # noqa: S603 - wrk against 127.0.0.1 only
        command, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    out = done.stdout
    if done.returncode != 0 or "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed ({done.returncode}): {out}\n{done.stderr}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    total = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB) read", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests = int(total.group(1))
    return Run(
        rps=rps,
        p99_ms=float(p99.group(1)) * UNITS_MS[p99.group(2)],
        requests=requests,
        bytes_per_request=float(total.group(2)) * UNITS_BYTES[total.group(3)] / max(requests, 1),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=dict(
            zip(("connect", "read", "write", "timeout"), map(int, errors.groups()), strict=True)
        )
        if errors
        else {},
    )


@dataclass
class Summary:
    rps: float
    p99_ms: float
    runs: list[Run]

    @property
    def spread(self) -> str:
        return "/".join(f"{r.rps:,.0f}" for r in self.runs)


def settle(conn: psycopg.Connection) -> float:
    """Wait until the product has finished the requests wrk abandoned when its run ended (the
    server still runs them): no query of the benchmark database active but ours. Otherwise the
    tail of a slow page would eat into the next run, and the next case would pay for it.
    Returns the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < SETTLE_LIMIT_S:
        (active,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state NOT IN ('idle')"
        ).fetchone()
        quiet = quiet + 1 if active == 0 else 0
        if quiet >= 3:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def measure(
    tool: str, conn: psycopg.Connection, cases: dict[str, Case], phase: str, notes: list[str]
) -> dict[str, Summary]:
    """Median rps and p99 of WRK_ROUNDS runs of every case. Each round runs every case once, in
    a shuffled order, so a slow spell on the shared machine hits the baseline and the product
    alike. Every run must answer with responses of the size checked beforehand (a login
    redirect or an error page would be counted by wrk as fast successes)."""
    order = list(cases)
    shuffle = random.Random(1234)  # noqa: S311 - ordering only
    shuffle.shuffle(order)
    for name in order:
        progress(f"{phase}: warm-up {name}")
        wrk(tool, cases[name], WRK_WARMUP_SECONDS)
        settle(conn)
    runs: dict[str, list[Run]] = {name: [] for name in cases}
    waited: list[float] = []
    for i in range(WRK_ROUNDS):
        shuffle.shuffle(order)
        for name in order:
            progress(f"{phase}: round {i + 1}/{WRK_ROUNDS} {name}")
            run = wrk(tool, cases[name], WRK_SECONDS)
            expected = cases[name].expected_bytes
            if run.non_2xx or not 0.8 * expected <= run.bytes_per_request <= 1.2 * expected:
                raise RuntimeError(
                    f"{name}: {run.non_2xx} non-2xx responses, {run.bytes_per_request:,.0f} bytes per "
                    f"response (expected about {expected:,}): the run did not measure the page"
                )
            if any(run.socket_errors.values()):
                notes.append(f"{phase}, {name}, round {i + 1}: wrk socket errors {run.socket_errors}.")
            runs[name].append(run)
            waited.append(settle(conn))
    if max(waited) >= 1.0:
        notes.append(
            f"{phase}: after a run, the product took up to {max(waited):.1f} s to finish the requests "
            "wrk had left in flight; the next run started only then."
        )
    return {
        name: Summary(
            rps=statistics.median(r.rps for r in found),
            p99_ms=statistics.median(r.p99_ms for r in found),
            runs=found,
        )
        for name, found in runs.items()
    }


# --- the benchmark database ---------------------------------------------------------------------


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def create_database() -> tuple[str, str]:
    name = f"icc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(SERVER_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    return name, url


def drop_database(name: str) -> None:
    with psycopg.connect(_libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- seeding ------------------------------------------------------------------------------------

# (services, severity, public status moves of the 5 updates: None keeps the status)
LIVE_INCIDENTS = [
    (["checkout"], "SEV1", "Checkout fails for card payments"),
    (["payments-api"], "SEV2", "Payment confirmations delayed"),
    (["search"], "SEV3", "Search results slow"),
    (["webhooks"], "SEV2", "Webhook deliveries queued"),
    (["orders-api"], "SEV2", "Order history times out"),
    (["auth"], "SEV1", "Sign-in errors for some accounts"),
    (["edge"], "SEV3", "Static assets slow in one region"),
    (["checkout", "payments-api"], "SEV2", "Refunds not processed"),
    (["search", "orders-api"], "SEV3", "Stale stock counts in search and orders"),
    (["auth", "edge"], "SEV2", "Intermittent 502s on login"),
]
UPDATE_BODIES = [
    "We are investigating reports of **errors** affecting this service. Next update within 30 minutes.",
    "We have identified a faulty configuration change in one data centre and are rolling it back.",
    "The rollback is complete in 2 of 3 regions; error rates are falling. See the [FAQ](https://example.com/faq).",
    "A fix has been applied everywhere. We are monitoring:\n\n- error rate back to normal\n- queue draining",
    "Error rates have been normal for 20 minutes. We keep monitoring before we close this incident.",
]
STATUS_MOVES = [
    ["investigating", None, "identified", None, "monitoring"],
    ["investigating", "identified", None, None, None],
    ["investigating", None, None, None, None],
]


async def seed_live_incidents(url: str) -> str:
    """10 active incidents that affect status components, each with 5 public updates, through the
    service layer as a responder would. Returns the email of the IC (who signs in later)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            ic = await accounts.create_user(
                session, email="bench-ic@example.com", name="Bench IC", role="responder", password=PASSWORD
            )
            for n, (services, severity, title) in enumerate(LIVE_INCIDENTS):
                incident = await incidents.declare_incident(
                    session,
                    actor=ic,
                    title=title,
                    severity=severity,
                    services=services,
                    summary=f"Customers report problems with {', '.join(services)}.",
                )
                await incidents.assign_role(
                    session, actor=ic, ref=incident.ref, role="incident_commander", email=ic.email
                )
                for body, move in zip(UPDATE_BODIES, STATUS_MOVES[n % len(STATUS_MOVES)], strict=True):
                    await status.post_update(
                        session, actor=ic, ref=incident.ref, body=body, public=True, status=move
                    )
            return ic.email
    finally:
        await engine.dispose()


# Incidents of the past year, generated by PostgreSQL: declared from 365 days ago up to the end
# of yesterday (UTC), so their references never meet today's live ones. Severity mix 3/12/45/40%;
# 97% acknowledged; times to acknowledge and to resolve drawn from exponential distributions
# whose means grow with the severity; resolution capped at now. Row i belongs to the first
# 1,000 when i % 100 = 0; the handful of open incidents are among those, declared in the two
# days before today. Deterministic: setseed() before the random() calls.
HISTORY_SQL = """
CREATE TEMP TABLE bench_history AS
WITH base AS (
    SELECT i, random() AS r_sev, random() AS r_ack, random() AS r_res, random() AS r_mit,
           random() AS r_svc, random() AS r_svc2, random() AS r_kind, random() AS r_day,
           random() AS r_noack
    FROM generate_series(1, %(total)s) AS i
), timed AS (
    SELECT *,
        CASE WHEN i %% 100 = 0 AND i / 100 <= %(active)s
             THEN today - (i / 100) * interval '7 hours'
             ELSE today - interval '365 days' + r_day * (interval '365 days' - interval '1 second')
        END AS declared_at,
        i %% 100 = 0 AND i / 100 <= %(active)s AS open,
        CASE WHEN r_sev < 0.03 THEN 'SEV1' WHEN r_sev < 0.15 THEN 'SEV2'
             WHEN r_sev < 0.60 THEN 'SEV3' ELSE 'SEV4' END AS severity
    FROM base, (SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS today) AS midnight
), spans AS (
    SELECT *,
        -ln(1 - r_ack) * CASE severity WHEN 'SEV1' THEN 180 WHEN 'SEV2' THEN 420
                                       WHEN 'SEV3' THEN 1200 ELSE 14400 END AS ack_s,
        60 - ln(1 - r_res) * CASE severity WHEN 'SEV1' THEN 5400 WHEN 'SEV2' THEN 10800
                                           WHEN 'SEV3' THEN 36000 ELSE 172800 END AS work_s
    FROM timed
), capped AS (
    SELECT *, GREATEST(LEAST(ack_s + work_s, extract(epoch FROM now() - declared_at) - 60), 1) AS total_s
    FROM spans
)
SELECT i, open, severity, declared_at,
    (declared_at AT TIME ZONE 'UTC')::date AS day,
    row_number() OVER (PARTITION BY (declared_at AT TIME ZONE 'UTC')::date ORDER BY declared_at, i) AS n,
    (ARRAY['checkout', 'payments-api', 'search', 'webhooks', 'orders-api', 'orders-db', 'auth', 'edge',
           'api', 'billing', 'inventory', 'notifications', 'kafka', 'redis', 'ledger', 'scheduler',
           'metrics', 'logging', 'vault', 'ci-runners', 'mobile-api', 'gateway', 'cdn-config', 'reporting'
    ])[1 + floor(r_svc * 24)::int] AS service,
    (ARRAY['kafka', 'redis', 'gateway', 'vault', 'orders-db', 'metrics'])[1 + floor(r_svc2 * 6)::int] AS also,
    r_svc2 < 0.3 AS two_services,
    (ARRAY['elevated 5xx errors', 'latency regression', 'partial outage', 'failed deploy',
           'certificate expiry', 'queue backlog', 'replication lag', 'disk pressure'
    ])[1 + floor(r_kind * 8)::int] AS kind,
    CASE WHEN open OR r_noack >= 0.03
         THEN declared_at + LEAST(ack_s, total_s) * interval '1 second' END AS acknowledged_at,
    CASE WHEN open THEN NULL
         ELSE declared_at + (LEAST(ack_s, total_s) + (total_s - LEAST(ack_s, total_s)) * (0.5 + 0.4 * r_mit))
                            * interval '1 second' END AS mitigated_at,
    CASE WHEN open THEN NULL ELSE declared_at + total_s * interval '1 second' END AS resolved_at
FROM capped
"""

INSERT_SQL = """
INSERT INTO incidents (
    ref, title, public_title, summary, severity, status, services, declared_at, declared_by_id,
    severity_changed_at, acknowledged_at, acknowledged_by_id, mitigated_at, resolved_at,
    last_update_at, ack_due_at, mitigation_due_at, update_due_at, client_key
)
SELECT
    'INC-' || to_char(day, 'YYYYMMDD') || '-' || CASE WHEN n < 10 THEN '0' || n ELSE n::text END,
    service || ': ' || kind,
    NULL,
    'Generated history: ' || kind || ' on ' || service || '.',
    severity,
    CASE WHEN NOT open THEN 'resolved'
         ELSE (ARRAY['investigating', 'identified', 'investigating', 'monitoring'])[1 + i / 100 %% 4] END,
    CASE WHEN two_services AND also <> service THEN ARRAY[service, also] ELSE ARRAY[service] END,
    declared_at,
    %(user)s,
    declared_at,
    acknowledged_at,
    CASE WHEN acknowledged_at IS NOT NULL THEN %(user)s END,
    CASE WHEN open AND i / 100 %% 4 = 3 THEN declared_at + interval '2 hours' ELSE mitigated_at END,
    resolved_at,
    CASE WHEN severity <> 'SEV4' THEN COALESCE(mitigated_at, declared_at + interval '1 hour') END,
    CASE severity WHEN 'SEV1' THEN declared_at + interval '5 minutes'
                  WHEN 'SEV2' THEN declared_at + interval '10 minutes'
                  WHEN 'SEV3' THEN declared_at + interval '30 minutes'
                  ELSE declared_at + CASE extract(isodow FROM declared_at AT TIME ZONE 'UTC')
                                         WHEN 5 THEN interval '3 days' WHEN 6 THEN interval '2 days'
                                         ELSE interval '1 day' END END,
    CASE severity WHEN 'SEV1' THEN declared_at + interval '1 hour'
                  WHEN 'SEV2' THEN declared_at + interval '2 hours'
                  WHEN 'SEV3' THEN declared_at + interval '8 hours' END,
    COALESCE(mitigated_at, declared_at + interval '1 hour')
        + CASE severity WHEN 'SEV1' THEN interval '15 minutes' WHEN 'SEV2' THEN interval '30 minutes'
                        WHEN 'SEV3' THEN interval '2 hours' END,
    NULL
FROM bench_history
WHERE {where}
"""


def prepare_history(conn: psycopg.Connection) -> None:
    """The 100,000 rows in a temporary table of this connection; inserted in two steps later."""
    conn.execute("SELECT setseed(0.20261123)")
    conn.execute(HISTORY_SQL, {"total": HISTORY_LARGE, "active": HISTORY_ACTIVE})


def insert_history(conn: psycopg.Connection, user_id: int, *, first: bool) -> int:
    where = "i % 100 = 0" if first else "i % 100 <> 0"
    cursor = conn.execute(INSERT_SQL.format(where=where.replace("%", "%%")), {"user": user_id})
    inserted = cursor.rowcount
    if first:  # the per-day reference counters, as declaring them one by one would have left them
        conn.execute(
            "INSERT INTO incident_ref_counters (day, last_number) "
            "SELECT day, max(n) FROM bench_history GROUP BY day "
            "ON CONFLICT (day) DO UPDATE SET last_number = "
            "GREATEST(incident_ref_counters.last_number, EXCLUDED.last_number)"
        )
    conn.execute("VACUUM ANALYZE incidents")  # the steady state autovacuum reaches on its own
    return inserted


# --- diagnostics --------------------------------------------------------------------------------

TRENDS_SQL = (
    "SELECT severity, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM "
    "resolved_at - declared_at)) FROM incidents WHERE declared_at >= now() - interval '30 days' "
    "AND resolved_at IS NOT NULL GROUP BY severity"
)
SNAPSHOT_ROWS_SQL = (
    "SELECT count(*) FROM incidents WHERE resolved_at IS NULL OR resolved_at >= now() - interval '90 days'"
)


def plan_nodes(plan: dict) -> list[str]:
    found = [plan["Node Type"] + (f" on {plan['Relation Name']}" if "Relation Name" in plan else "")]
    for child in plan.get("Plans", []):
        found += plan_nodes(child)
    return found


def explain_trends(conn: psycopg.Connection, label: str) -> str:
    """How PostgreSQL runs one of the dashboard's window queries (the MTTR one), and how long."""
    (result,) = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {TRENDS_SQL}").fetchone()
    top = result[0]
    scans = [n for n in plan_nodes(top["Plan"]) if "Scan" in n]
    return (
        f"{label}: the dashboard's MTTR query (30-day window) runs as {', '.join(scans)} in "
        f"{top['Execution Time']:.1f} ms; /dashboard runs four such window queries per view "
        "(per week, MTTA, MTTR, total)."
    )


# --- 1. the status page -------------------------------------------------------------------------


def time_rebuild(base: str, conn: psycopg.Connection) -> tuple[float, float, int]:
    """Median ms of GET /status just after a NOTIFY on icc_changes (what every timeline write
    sends: both workers drop their rendered copy), and of the next GET (served from the copy),
    on one keep-alive connection (so one worker)."""
    cold: list[float] = []
    warm: list[float] = []
    started = time.monotonic()
    with client(base) as c:
        assert c.get("/status").status_code == 200
        for _ in range(REBUILD_ROUNDS):
            conn.execute(f"NOTIFY {NOTIFY_CHANNEL}, 'bench'")
            time.sleep(0.3)  # the listeners get it
            pair = []
            for _ in range(2):
                start = time.perf_counter()
                response = c.get("/status")
                pair.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, response.status_code
            cold.append(pair[0])
            warm.append(pair[1])
            if len(cold) >= 3 and time.monotonic() - started > REBUILD_BUDGET_S:
                break
    return statistics.median(cold), statistics.median(warm), len(cold)


def bench_status(tools: dict[str, str], base: str, conn, stack: ExitStack, workdir: Path, notes: list[str]):
    with client(base) as c:
        page = c.get("/status")  # renders the page (on one worker) and gives us its bytes
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), page.status_code
    body = page.content
    shown = body.count(b'class="status-incident impact-')
    assert shown == len(LIVE_INCIDENTS), f"the status page shows {shown} active incidents"
    nginx_base = start_nginx(stack, tools["nginx"], body, workdir)
    with client(nginx_base) as c:
        static = c.get("/status")
    with client(base) as c:
        health = c.get("/healthz")
    assert health.status_code == 200, health.status_code
    notes.append(
        f"Status page: {len(LIVE_INCIDENTS)} active incidents with 5 public updates each, "
        f"{len(body):,} bytes; nginx serves a static copy of exactly those bytes."
    )
    cases = {
        "product GET /status": Case(f"{base}/status", wire_size(page)),
        "nginx GET /status": Case(f"{nginx_base}/status", wire_size(static)),
        "product GET /healthz": Case(f"{base}/healthz", wire_size(health)),
    }
    got = measure(tools["wrk"], conn, cases, "status page", notes)
    ours, theirs, floor = got["product GET /status"], got["nginx GET /status"], got["product GET /healthz"]
    notes.append(
        f"Status page req/s per round: product {ours.spread}; nginx {theirs.spread}; "
        f"product /healthz {floor.spread}. GET /status served from the rendered copy reaches "
        f"{ours.rps / floor.rps:.2f}x the req/s of /healthz, the cheapest route of the same server."
    )
    cold, warm, pairs = time_rebuild(base, conn)
    return [
        throughput_figure(
            "status: GET /status, product (uvicorn, 2 workers)",
            ours.rps,
            "nginx serving the same bytes as a static file",
            theirs.rps,
            STATUS_TARGET,
        ),
        latency_figure(
            "status: GET /status p99 latency (informational)",
            ours.p99_ms,
            "nginx p99, same bytes",
            theirs.p99_ms,
        ),
        latency_figure(
            f"status: first GET /status after a change, {len(LIVE_INCIDENTS)} live incidents (informational)",
            cold,
            "the next GET /status (rendered copy)",
            warm,
        ),
        throughput_figure(
            f"{DIAGNOSTIC}GET /healthz, product (no database, no template: the floor of any route)",
            floor.rps,
            "nginx serving the status page's bytes as a static file",
            theirs.rps,
            None,
        ),
    ], pairs


# --- 2 and 3. the dashboard ---------------------------------------------------------------------


def sign_in(base: str, email: str) -> str:
    """The icc_session cookie, through the login form and its double-submit CSRF cookie."""
    with client(base) as c:
        form = c.get("/login")
        assert form.status_code == 200, form.status_code
        token = re.search(r'name="login_csrf" value="([^"]+)"', form.text).group(1)
        done = c.post(
            "/login",
            data={"email": email, "password": PASSWORD, "login_csrf": token, "next": "/dashboard"},
            headers={"Cookie": f"icc_login_csrf={form.cookies['icc_login_csrf']}"},
        )
        assert done.status_code == 303, (done.status_code, done.text[:300])
        return done.cookies["icc_session"]


PAGE_MARKERS = {
    "/dashboard": 'id="icc-dashboard"',
    "/dashboard?days=90": "last 90 days",
    "/incidents": "</table>",
}


def page_cases(base: str, cookie: str, paths: list[str], label: str, notes: list[str]) -> dict[str, Case]:
    """Each page once as the signed-in user: it must answer 200 with its content."""
    header = f"Cookie: icc_session={cookie}"
    cases = {}
    with client(base) as c:
        for path in paths:
            page = c.get(path, headers={"Cookie": f"icc_session={cookie}"})
            assert page.status_code == 200, (path, page.status_code, page.text[:300])
            assert PAGE_MARKERS[path] in page.text, (path, page.text[:300])
            total = re.search(r"\((\d+) in all\)", page.text)
            if total:
                notes.append(f"{label}: GET {path} shows {int(total.group(1)):,} incidents in its window.")
            cases[f"GET {path}"] = Case(f"{base}{path}", wire_size(page), (header,))
    return cases


def bench_dashboard(tools: dict[str, str], base: str, conn, email: str, notes: list[str]):
    wrk_tool = tools["wrk"]
    user_id = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0]
    progress("generating 100,000 incidents of history")
    prepare_history(conn)
    small_n = insert_history(conn, user_id, first=True)
    assert small_n == HISTORY_SMALL, small_n
    cookie = sign_in(base, email)

    small_label = f"{HISTORY_SMALL:,} incidents of history"
    small_cases = page_cases(base, cookie, ["/dashboard", "/incidents"], small_label, notes)
    small = measure(wrk_tool, conn, small_cases, small_label, notes)
    notes.append(explain_trends(conn, small_label))

    large_n = small_n + insert_history(conn, user_id, first=False)
    assert large_n == HISTORY_LARGE, large_n
    large_label = f"{HISTORY_LARGE:,} incidents of history"
    paths = ["/dashboard", "/dashboard?days=90", "/incidents"]
    large_cases = page_cases(base, cookie, paths, large_label, notes)
    large = measure(wrk_tool, conn, large_cases, large_label, notes)
    notes.append(explain_trends(conn, large_label))

    for label, got in ((small_label, small), (large_label, large)):
        notes.append(
            f"{label}, req/s per round: "
            + "; ".join(f"{name} {s.spread}" for name, s in got.items())
            + ". p99: "
            + ", ".join(f"{name} {s.p99_ms:,.0f} ms" for name, s in got.items())
            + "."
        )
    dash_small, list_small = small["GET /dashboard"].rps, small["GET /incidents"].rps
    dash_large, list_large = large["GET /dashboard"].rps, large["GET /incidents"].rps
    scaling = dash_large / dash_small
    normalised = (dash_large / list_large) / (dash_small / list_small)
    grows = "grows" if normalised < 0.8 else "does not grow appreciably"
    notes.append(
        f"Scaling: 100x the history gives the dashboard {scaling:.2f}x its req/s "
        f"({normalised:.2f}x after dividing each by GET /incidents of the same phase, which corrects "
        f"for drift of the machine between the two phases): its cost {grows} with the history."
    )
    baseline_name = "GET /incidents (active incident list), same history"
    return [
        throughput_figure(
            f"dashboard: GET /dashboard (30 days), {large_label}",
            dash_large,
            baseline_name,
            list_large,
            DASHBOARD_TARGET,
        ),
        throughput_figure(
            f"dashboard: GET /dashboard?days=90, {large_label} (informational)",
            large["GET /dashboard?days=90"].rps,
            baseline_name,
            list_large,
            None,
        ),
        throughput_figure(
            f"dashboard: GET /dashboard (30 days), {small_label} (informational)",
            dash_small,
            baseline_name,
            list_small,
            None,
        ),
        throughput_figure(
            f"scaling: GET /dashboard at {HISTORY_LARGE:,} vs {HISTORY_SMALL:,} incidents of history "
            "(informational)",
            dash_large,
            f"GET /dashboard at {HISTORY_SMALL:,} incidents, earlier in this run",
            dash_small,
            None,
        ),
    ]


# --- output -------------------------------------------------------------------------------------


def markdown_table(figures: list[Figure]) -> str:
    def num(value: float | None) -> str:
        return "" if value is None else f"{value:,.3f}"

    lines = [
        "| figure | value | unit | baseline | baseline value | ratio | target | met |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "**NO**")
        target = "" if f.target is None else f"≥ {f.target:g}"
        lines.append(
            f"| {f.name} | {num(f.value)} | {f.unit} | {f.baseline_name or ''} | {num(f.baseline_value)} "
            f"| {num(f.ratio)} | {target} | {met} |"
        )
    return "\n".join(lines)


def run(tools: dict[str, str], url: str, notes: list[str]) -> list[Figure]:
    with ExitStack() as stack:  # on the way out: nginx, then uvicorn, then the connection, the files
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icc-bench-")))
        progress("seeding 10 live incidents through the service layer")
        email = asyncio.run(seed_live_incidents(url))
        conn = stack.enter_context(psycopg.connect(_libpq(url), autocommit=True))
        progress("starting uvicorn")
        base = start_product(stack, url, workdir)
        figures, pairs = bench_status(tools, base, conn, stack, workdir, notes)
        figures += bench_dashboard(tools, base, conn, email, notes)

        cold, warm, pairs_large = time_rebuild(base, conn)
        (rows,) = conn.execute(SNAPSHOT_ROWS_SQL).fetchone()
        with client(base) as c:
            size = len(c.get("/status").content)
        figures.append(
            latency_figure(
                f"status: first GET /status after a change, {HISTORY_LARGE:,} incidents of history "
                "(informational)",
                cold,
                "the next GET /status (rendered copy)",
                warm,
            )
        )
        notes.append(
            f"'First GET /status after a change': a NOTIFY on {NOTIFY_CHANNEL} (what every timeline "
            f"write sends) then GET /status, median of {pairs} and {pairs_large} pairs. With "
            f"{HISTORY_LARGE:,} incidents of history the snapshot loads {rows:,} incident rows (open, or "
            f"resolved in the last 90 days) and the page is {size:,} bytes."
        )
        return figures


def main() -> int:
    tools = find_tools()
    if tools is None:
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` drops the database
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    name, url = create_database()
    notes: list[str] = []
    try:
        upgrade_to_head(url)
        get_settings.cache_clear()
        get_policy.cache_clear()
        figures = run(tools, url, notes)
    finally:
        drop_database(name)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n", encoding="utf-8")
    print()
    print("## Status page and dashboard benchmarks")
    print()
    print(markdown_table([f for f in figures if not f.name.startswith(DIAGNOSTIC)]))
    diagnostics = [f for f in figures if f.name.startswith(DIAGNOSTIC)]
    if diagnostics:
        print()
        print("Where the status page's ceiling comes from (no target; same baseline, same rounds):")
        print()
        print(markdown_table(diagnostics))
    print()
    for note in notes:
        print(f"- {note}")
    print(
        f"- wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --timeout {WRK_TIMEOUT} --latency, "
        f"median of {WRK_ROUNDS} "
        "interleaved runs in shuffled order after a warm-up; req/s ratio = ours / baseline, latency "
        "ratio = baseline / ours; higher is better."
    )
    print(
        f"- Load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
        f"on {os.cpu_count()} CPUs shared by wrk, nginx, uvicorn and PostgreSQL."
    )
    print(f"- Written to {RESULTS.relative_to(ROOT)}; took {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
