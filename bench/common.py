"""What the bench/*.py scripts share: the throwaway database, the product server, nginx, wrk,
figures and their output. Import it before `app`: it puts the repository on sys.path and points
the app's settings at the test defaults (no icc.toml, no ICC_DATABASE_URL of the shell).
"""

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
import time
import uuid
from collections.abc import Callable
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

from app.config import get_policy, get_settings  # noqa: E402
from app.migrate import upgrade_to_head  # noqa: E402
from tests.deploy_nginx import render_nginx_conf  # noqa: E402

SERVER_URL = os.environ.get(
    "ICC_BENCH_DATABASE_URL",
    os.environ.get("ICC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
)
RESULTS_DIR = ROOT / "bench" / "results"
PASSWORD = "bench-password-not-secret"  # noqa: S105 - a throwaway account in a throwaway database
DIAGNOSTIC = "diagnostic: "  # figures printed in a second table

# wrk: 2 threads, 50 connections, 10 s a run, the median of 3 runs; one short warm-up run of
# every case (not counted) before the rounds of a phase.
WRK_THREADS, WRK_CONNECTIONS, WRK_SECONDS, WRK_ROUNDS, WRK_WARMUP_SECONDS = 2, 50, 10, 3, 2
WRK_TIMEOUT = "30s"
SETTLE_LIMIT_S = 60.0  # waiting for the requests wrk abandoned at the end of a run

# (tool, the apt package that provides it)
TOOLS = {"wrk": "wrk", "nginx": "nginx", "pgbench": "postgresql-client"}

# Public status updates, in the order they are posted (bodies with the markdown a responder uses).
UPDATE_BODIES = [
    "We are investigating reports of **errors** affecting this service. Next update within 30 minutes.",
    "We have identified a faulty configuration change in one data centre and are rolling it back.",
    "The rollback is complete in 2 of 3 regions; error rates are falling. See the [FAQ](https://example.com/faq).",
    "A fix has been applied everywhere. We are monitoring:\n\n- error rate back to normal\n- queue draining",
    "Error rates have been normal for 20 minutes. We keep monitoring before we close this incident.",
]


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- figures ------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    value: float | None  # None: the run could not measure it
    unit: str
    baseline_name: str | None = None
    baseline_value: float | None = None
    ratio: float | None = None
    target: float | None = None
    met: bool | None = None


def _compared(
    name: str,
    value: float,
    unit: str,
    baseline_name: str,
    baseline: float,
    ratio: float,
    target: float | None,
) -> Figure:
    return Figure(
        name=name,
        value=round(value, 3),
        unit=unit,
        baseline_name=baseline_name,
        baseline_value=round(baseline, 3),
        ratio=round(ratio, 3),
        target=target,
        met=None if target is None else ratio >= target,
    )


def throughput_figure(
    name: str, value: float, baseline_name: str, baseline: float, target: float | None
) -> Figure:
    """Operations per second: higher is better, ratio = ours / baseline."""
    return _compared(name, value, "req/s", baseline_name, baseline, value / baseline, target)


def latency_figure(
    name: str, value: float, baseline_name: str, baseline: float, target: float | None = None
) -> Figure:
    """Milliseconds: lower is better, ratio = baseline / ours."""
    return _compared(name, value, "ms", baseline_name, baseline, baseline / value, target)


def limit_figure(
    name: str, value: float, unit: str, baseline_name: str, baseline: float, limit: float
) -> Figure:
    """A fixed upper limit on the value itself (no ratio); the baseline is shown beside it."""
    return Figure(name, round(value, 3), unit, baseline_name, round(baseline, 3), None, limit, value <= limit)


def markdown_table(rows: list[dict], limits: frozenset[str] = frozenset()) -> str:
    """Figures (as dicts) as a markdown table. A target is a floor on the ratio, except for a
    figure without a ratio or named in `limits`: there it is an upper limit on the value."""

    def num(value: float | None) -> str:
        return "" if value is None else f"{value:,.3f}"

    lines = [
        "| figure | value | unit | baseline | baseline value | ratio | target | met |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        met = "" if r["met"] is None else ("yes" if r["met"] else "**NO**")
        if r["target"] is None:
            target = ""
        elif r["ratio"] is None or r["name"] in limits:
            target = f"≤ {r['target']:g} {r['unit']}"
        else:
            target = f"≥ {r['target']:g}"
        lines.append(
            f"| {r['name']} | {num(r['value'])} | {r['unit']} | {r['baseline_name'] or ''} "
            f"| {num(r['baseline_value'])} | {num(r['ratio'])} | {target} | {met} |"
        )
    return "\n".join(lines)


def report(
    title: str,
    results: Path,
    figures: list[Figure],
    notes: list[str],
    *,
    started: float,
    diagnostics: str = "",
    footer: tuple[str, ...] = (),
    limits: frozenset[str] = frozenset(),
) -> None:
    """Write `results` (a JSON list of figures) and print the tables, the notes and `footer`.
    Figures named DIAGNOSTIC... go to a second table under the caption `diagnostics`; the targets
    of the figures named in `limits` are upper limits on the value (see markdown_table)."""
    rows = [asdict(f) for f in figures]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print()
    print(f"## {title}")
    print()
    print(markdown_table([r for r in rows if not r["name"].startswith(DIAGNOSTIC)], limits))
    extra = [r for r in rows if r["name"].startswith(DIAGNOSTIC)]
    if extra:
        print()
        print(diagnostics)
        print()
        print(markdown_table(extra))
    print()
    for line in [*notes, *footer]:
        print(f"- {line}")
    print(f"- Written to {results.relative_to(ROOT)}; took {time.perf_counter() - started:.0f} s.")


def load_line(load_before: float, shared_by: str) -> str:
    return (
        f"Load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
        f"on {os.cpu_count()} CPUs shared by {shared_by}."
    )


# --- the benchmark database ---------------------------------------------------------------------


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _with_database(url: str, name: str) -> str:
    base, _, query = url.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + ("?" + query if query else "")


def create_database() -> tuple[str, str]:
    name = f"icc_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(SERVER_URL, name).replace("postgresql://", "postgresql+psycopg://", 1)
    return name, url


def drop_database(name: str) -> None:
    with psycopg.connect(libpq(SERVER_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def with_database(measure: Callable[[str, str, list[str]], list[Figure]]) -> tuple[list[Figure], list[str]]:
    """`measure(url, database name, notes)` on a new database migrated to head; the database is
    dropped afterwards, also on an error, Ctrl-C or SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` drops the database
    name, url = create_database()
    notes: list[str] = []
    try:
        upgrade_to_head(url)
        get_settings.cache_clear()
        get_policy.cache_clear()
        return measure(url, name, notes), notes
    finally:
        drop_database(name)


def settle(conn: psycopg.Connection, limit: float = SETTLE_LIMIT_S) -> float:
    """Wait until the product has finished the requests a run left behind (the server still runs
    them): no query of the benchmark database active but ours. Otherwise the tail of a slow run
    would eat into the next one. Returns the seconds waited."""
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < limit:
        (active,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state NOT IN ('idle')"
        ).fetchone()
        quiet = quiet + 1 if active == 0 else 0
        if quiet >= 3:
            break
        time.sleep(0.1)
    return time.monotonic() - started


# --- tools, ports and processes -----------------------------------------------------------------


def tool_path(tool: str) -> str | None:
    """A tool on the PATH, or where Debian puts nginx (/usr/sbin) and pgbench (PostgreSQL's bin)."""
    search = os.pathsep.join(
        [
            os.environ.get("PATH", ""),
            "/usr/sbin",
            "/usr/local/sbin",
            "/sbin",
            *map(str, sorted(Path("/usr/lib/postgresql").glob("*/bin"))),
        ]
    )
    return shutil.which(tool, path=search)


def find_tools(*tools: str) -> dict[str, str] | None:
    found = {tool: tool_path(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        packages = " ".join(TOOLS[tool] for tool in tools)
        hint = f"apt-get update && apt-get install -y {packages}"
        print(f"Missing: {', '.join(missing)}. Install with:\n  {hint}", file=sys.stderr)
        return None
    return {tool: str(path) for tool, path in found.items()}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(base: str) -> httpx.Client:
    # trust_env=False: never a proxy from the environment, the traffic stays on 127.0.0.1.
    return httpx.Client(base_url=base, trust_env=False, follow_redirects=False, timeout=30.0)


def stop_process(proc: subprocess.Popen, name: str, grace: float = 20.0) -> None:
    """Stop a process this script started (and its own process group, nothing else)."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        progress(f"{name} did not stop within {grace:.0f} s: killing its process group {proc.pid}")
        os.killpg(proc.pid, signal.SIGKILL)  # start_new_session=True: the group is ours alone
        proc.wait(timeout=10)


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


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


def spawn(stack: ExitStack, command: list[str], *, name: str, log: Path, grace: float = 20.0, **kwargs):
    """Start a server in its own process group, its output in `log`; stopped when `stack` closes."""
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter or a tool found by tool_path
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
        )
    stack.callback(stop_process, proc, name, grace)
    stack.push(_log_on_error(proc, name, log))  # runs first: the log as it was when things failed
    return proc


def _log_on_error(proc: subprocess.Popen, name: str, log: Path):
    """An exit hook that shows how a server was doing when the run failed (it suppresses nothing)."""

    def show(exc_type, _exc, _tb) -> None:
        if exc_type is not None:
            state = "running" if proc.poll() is None else f"exited with {proc.returncode}"
            progress(f"{name} (pid {proc.pid}) is {state}; the end of its log:\n{tail(log)}")

    return show


def start_uvicorn(
    stack: ExitStack,
    app: list[str],
    env: dict[str, str],
    log: Path,
    *,
    name: str,
    warm_path: str = "/healthz",
    workers: int = 2,
) -> tuple[str, subprocess.Popen]:
    """`python -m uvicorn <app> --workers <workers>` on a free 127.0.0.1 port, from the repository
    root, with `env` as its only ICC_* variables. Returns its base URL and process once every
    worker answers. No access log, as the compose replicas run (ICC_ACCESS_LOG=false: nginx logs every
    request), for the product and its baselines alike."""
    port = free_port()
    command = [
        sys.executable, "-m", "uvicorn", *app,
        "--workers", str(workers), "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ICC_")} | env
    proc = spawn(stack, command, name=name, log=log, cwd=ROOT, env=full_env)
    base = f"http://127.0.0.1:{port}"
    with client(base) as c:
        wait_until(lambda: c.get("/healthz").status_code == 200, what=name, proc=proc, log=log)
    # The workers answer on the one socket: a few fresh connections so that each has started.
    for _ in range(10):
        with client(base) as fresh:
            assert fresh.get(warm_path).status_code == 200
    return base, proc


def start_product(
    stack: ExitStack,
    url: str,
    workdir: Path,
    env: dict[str, str] | None = None,
    *,
    name: str = "uvicorn",
    workers: int = 2,
) -> tuple[str, subprocess.Popen]:
    """The product as deployed (uvicorn, 2 workers unless `workers` says otherwise) on the
    benchmark database, the default configuration and an empty runbooks directory; `env` adds or
    overrides ICC_* variables. Its log is workdir/uvicorn.log, `name` what messages call it."""
    runbooks = workdir / "runbooks"
    runbooks.mkdir()
    settings = {
        "ICC_DATABASE_URL": url,
        "ICC_ENVIRONMENT": "test",
        "ICC_CONFIG": str(NO_CONFIG),
        "ICC_RUNBOOKS_DIR": str(runbooks),
    } | (env or {})
    app = ["app.main:create_app", "--factory"]
    return start_uvicorn(stack, app, settings, workdir / "uvicorn.log", name=name, workers=workers)


def worker_peaks(server_pid: int) -> list[tuple[int, int]]:
    """(pid, VmHWM in KiB) of every child of the server process that is a uvicorn worker."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmdline = (proc / "cmdline").read_bytes()
            fields = dict(
                line.split(":", 1) for line in (proc / "status").read_text().splitlines() if ":" in line
            )
        except (OSError, ValueError):
            continue
        if ppid == server_pid and b"spawn_main" in cmdline and "VmHWM" in fields:
            found.append((int(proc.name), int(fields["VmHWM"].split()[0])))
    return sorted(found)


def memory_figures(server: subprocess.Popen, after: str, notes: list[str]) -> list[Figure]:
    """Peak RSS (VmHWM) of each product worker, read `after` the runs named."""
    peaks = worker_peaks(server.pid)
    notes.append(
        f"Peak RSS (VmHWM) of the product workers after {after}: "
        + ", ".join(f"pid {pid} {kib / 1024:,.1f} MiB" for pid, kib in peaks)
        + "."
    )
    return [
        Figure(
            name=f"memory: peak RSS (VmHWM) of product worker {n} of {len(peaks)}, after {after} "
            "(informational)",
            value=round(kib / 1024, 1),
            unit="MiB",
        )
        for n, (_pid, kib) in enumerate(peaks, start=1)
    ]


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


# --- nginx --------------------------------------------------------------------------------------

STATIC_NGINX_CONF = """\
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
        location = {path} {{ default_type "text/html; charset=utf-8"; }}
    }}
}}
"""


def start_static_nginx(stack: ExitStack, nginx: str, path: str, body: bytes, workdir: Path) -> str:
    """nginx on a free port serving `body` as `path`, from a static file."""
    port = free_port()
    tmp = workdir / "nginx-static"
    (tmp / "www").mkdir(parents=True)
    (tmp / "www" / path.lstrip("/")).write_bytes(body)
    # Run as root, nginx's workers drop to `nobody`: they must be able to read the file.
    for directory in (workdir, tmp, tmp / "www"):
        directory.chmod(0o755)
    (tmp / "www" / path.lstrip("/")).chmod(0o644)
    conf = tmp / "nginx.conf"
    conf.write_text(STATIC_NGINX_CONF.format(tmp=tmp, port=port, path=path), encoding="utf-8")
    log = tmp / "stderr.log"
    command = [nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "error.log")]
    proc = spawn(stack, command, name="nginx", log=log, grace=10.0)
    base = f"http://127.0.0.1:{port}"
    with client(base) as c:
        wait_until(lambda: c.get(path).status_code == 200, what="nginx", proc=proc, log=log)
        served = c.get(path)
    assert served.content == body, "nginx does not serve the same bytes"
    return base


def start_deploy_nginx(stack: ExitStack, nginx: str, product: str, workdir: Path) -> str:
    """docs/deploy/nginx.conf itself on a free 127.0.0.1 port, in front of the product, made
    loopback the way tests/test_topology.py does it: the upstream addresses, `listen 80` and the
    /var/... paths replaced, nothing else. Both upstream entries name the one product server, so
    nginx spreads over the same two uvicorn workers that are measured directly."""
    port = free_port()
    upstream = product.removeprefix("http://")
    tmp = workdir / "nginx-deploy"
    conf = render_nginx_conf(tmp, upstreams=(upstream, upstream), port=port)
    # nginx's workers drop root privileges: they must be able to reach the cache directory.
    for directory in (workdir, tmp):
        directory.chmod(0o755)
    log = tmp / "stderr.log"
    command = [nginx, "-p", str(tmp), "-c", str(conf), "-e", f"{tmp}/logs/error.log", "-g", "daemon off;"]
    proc = spawn(stack, command, name="nginx (deployment)", log=log, grace=10.0)
    base = f"http://127.0.0.1:{port}"
    with client(base) as c:
        wait_until(
            lambda: c.get("/healthz").status_code == 200, what="nginx (deployment)", proc=proc, log=log
        )
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
    output: str  # wrk's whole report, with what a Lua script's done() printed


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


def wrk(tool: str, case: Case, seconds: int, script: tuple[Path, ...] = ()) -> Run:
    """One wrk run; `script` is a Lua script followed by its arguments."""
    # --timeout: wrk leaves a response slower than its timeout (default 2 s) out of the latency
    # histogram, which would hide the slow pages' p99; 30 s records them all.
    command = [tool, f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT}"]
    command.append("--latency")
    for header in case.headers:
        command += ["-H", header]
    if script:
        command += ["-s", str(script[0])]
    command.append(case.url)
    if script:
        command += ["--", *map(str, script[1:])]
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
        output=out,
    )


@dataclass
class Summary:
    rps: float
    p99_ms: float
    runs: list[Run]

    @property
    def spread(self) -> str:
        return "/".join(f"{r.rps:,.0f}" for r in self.runs)


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


def wrk_line() -> str:
    return (
        f"wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{WRK_SECONDS}s --timeout {WRK_TIMEOUT} --latency, "
        f"median of {WRK_ROUNDS} interleaved runs in shuffled order after a warm-up"
    )
