"""Incident page and timeline write benchmarks: HTTP throughput of the running product (uvicorn,
2 workers) under wrk, as ratios against baselines measured in the same run.

Run from the repository root:  .venv/bin/python bench/incident_page.py

Needs `wrk` and `pgbench` (apt-get install -y wrk postgresql-client); it installs nothing. It
creates its own database (icc_bench_<random>) on the server named by ICC_BENCH_DATABASE_URL
(default: ICC_TEST_DATABASE_URL, then postgres@127.0.0.1:5432), migrates it to head, starts the
product and a baseline app on free 127.0.0.1 ports, and at the end stops both and drops the
database, also on error, Ctrl-C or SIGTERM. All traffic goes to 127.0.0.1.

Figures (see bench/README.md):
1. GET /incidents/{ref} with 200 timeline entries, signed in, against the same template rendered
   from a context held in memory by a separate uvicorn app (2 workers, no database access).
2. POST /api/v1/incidents/{ref}/timeline as a signed-in browser sends it (session cookie, CSRF
   header, JSON) against pgbench single-row INSERTs into a scratch table of the same database;
   and its p99.
3. Peak RSS (VmHWM) of each uvicorn worker (informational).
4. GET /incidents/{ref} with 10 vs 5,000 timeline entries (informational).

This module is also the baseline app: `uvicorn incident_page:baseline_app --factory` with
--app-dir bench (see start_baseline).
"""

import asyncio
import itertools
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import common
import psycopg
from common import PASSWORD, UPDATE_BODIES, Case, client, progress

from app.auth import service as accounts
from app.config import get_settings
from app.db import make_engine, make_sessionmaker
from app.incidents import service as incidents
from app.status import updates as status

RESULTS = common.RESULTS_DIR / "incident_page.json"
PAGE = "incidents/page.html"
PAGE_TARGET, WRITE_TARGET, WRITE_P99_TARGET_MS = 0.50, 0.20, 50.0
PAGE_ENTRIES, SCALE_SMALL, SCALE_LARGE = 200, 10, 5_000
EMAIL = "bench-ic@example.com"
ENTRY_MARK = re.compile(rb'<li class="entry kind-')
BASELINE_ENV = "ICC_BENCH_BASELINE_REF"
P99_NAME = "write: p99 latency of a timeline POST (target: at most 50 ms)"
# A timeline run sends for WRK_SECONDS, then waits for its last answers: wrk itself runs this
# much longer, so that it never closes a connection with a write in flight. Less than uvicorn's
# 5 s keep-alive timeout, which would otherwise close the idle connections under wrk (read errors).
WRITE_DRAIN_S = 4
PGBENCH_ATTEMPTS = 3

ENTRY_BODIES = [
    "Checked the **error rate** on the checkout dashboards: 4.2% 5xx, up from 0.1%.",
    "/d Roll back release 2026.11.23-1 of payments-api; the canary shows the same errors.",
    "/a @oncall-db look at replication lag on `orders-db-2`, see the [runbook](https://example.com/rb).",
    "Customers in eu-west report failed card payments; support has 37 tickets so far.",
    "Rollback done in 2 of 3 regions:\n\n- eu-west: healthy\n- us-east: healthy\n- ap-south: pending",
]


# --- seeding ------------------------------------------------------------------------------------


async def _fill(session, user, ref: str, total: int) -> None:
    """Notes, decisions and actions through the service layer until the timeline holds `total`."""
    entries, _ = await incidents.list_timeline(session, ref=ref)
    for n in range(len(entries), total):
        body = ENTRY_BODIES[n % len(ENTRY_BODIES)]
        kind = {"/d": "decision", "/a": "action"}.get(body[:2], "note")
        await incidents.add_timeline_entry(
            session,
            actor=user,
            ref=ref,
            kind=kind,
            body=body.removeprefix(body[:3] if kind != "note" else ""),
        )


async def seed(url: str) -> tuple[str, dict[str, str]]:
    """The IC (who signs in) and four incidents: the page one (200 entries, 3 public updates),
    the write target, and the two scaling ones (10 entries each; one gets 4,990 more by SQL)."""
    engine = make_engine(url)
    refs: dict[str, str] = {}
    try:
        async with make_sessionmaker(engine)() as session:
            ic = await accounts.create_user(
                session, email=EMAIL, name="Bench IC", role="responder", password=PASSWORD
            )
            for key, title, services in (
                ("page", "Checkout fails for card payments", ["checkout", "payments-api"]),
                ("write", "Timeline write benchmark", ["search"]),
                ("small", "Scaling benchmark, short history", ["orders-api"]),
                ("large", "Scaling benchmark, long history", ["orders-api"]),
            ):
                incident = await incidents.declare_incident(
                    session, actor=ic, title=title, severity="SEV2", services=services,
                    summary=f"Customers report problems with {', '.join(services)}.",
                )  # fmt: skip
                await incidents.assign_role(
                    session, actor=ic, ref=incident.ref, role="incident_commander", email=ic.email
                )
                refs[key] = incident.ref
            for body, move in zip(UPDATE_BODIES[:3], ["investigating", "identified", None], strict=True):
                await status.post_update(
                    session, actor=ic, ref=refs["page"], body=body, public=True, status=move
                )
            await _fill(session, ic, refs["page"], PAGE_ENTRIES)
            for key in ("small", "large"):
                await _fill(session, ic, refs[key], SCALE_SMALL)
            return ic.email, refs
    finally:
        await engine.dispose()


EXTRA_ENTRIES_SQL = """
INSERT INTO timeline_entries (incident_id, kind, body, author_id, occurred_at, recorded_at, revision,
                              client_key, redacted_at, redacted_by_id, redaction_reason)
SELECT i.id,
       (ARRAY['note', 'decision', 'action'])[1 + n %% 3],
       'Generated entry ' || n || ': checked the **error rate** on `orders-db-' || n %% 7 || '`.',
       %(user)s,
       i.declared_at + n * interval '1 second',
       i.declared_at + n * interval '1 second',
       1, NULL, NULL, NULL, NULL
FROM incidents AS i, generate_series(1, %(extra)s) AS n
WHERE i.ref = %(ref)s
"""


# --- the baseline app: the same template, the context loaded once -----------------------------


async def load_context(url: str, ref: str, email: str, csrf_token: str) -> dict:
    """The exact context dict the product's incident page renders with, built once by the
    product's own route function `_incident_page` (all its service calls), for the same user."""
    from sqlalchemy import select
    from starlette.requests import Request

    from app.actions.catalog import get_catalog
    from app.auth.deps import Principal
    from app.auth.models import User
    from app.incidents import routes

    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await session.scalar(select(User).where(User.email == email))
            state = SimpleNamespace(settings=get_settings(), catalog=get_catalog())
            scope = {
                "type": "http", "method": "GET", "path": f"/incidents/{ref}", "query_string": b"",
                "headers": [], "app": SimpleNamespace(state=state),
                "state": {"principal": Principal(user=user, csrf_token=csrf_token)},
            }  # fmt: skip
            response = await routes._incident_page(Request(scope), session, ref)
            return dict(response.context)
    finally:
        await engine.dispose()


def baseline_app():
    """Starlette app serving incidents/page.html rendered per request from a context loaded once
    at start-up (per worker); no database access while serving."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from app.web import templates

    held: dict = {}

    @asynccontextmanager
    async def lifespan(_app):
        held.update(
            await load_context(
                os.environ["ICC_BENCH_BASELINE_URL"],
                os.environ[BASELINE_ENV],
                os.environ["ICC_BENCH_BASELINE_EMAIL"],
                os.environ["ICC_BENCH_BASELINE_CSRF"],
            )
        )
        yield

    template = templates.get_template(PAGE)

    async def page(_request):
        return HTMLResponse(template.render(held), headers={"Vary": "HX-Request"})

    async def healthz(_request):
        return HTMLResponse("ok")

    return Starlette(routes=[Route("/incidents/{ref}", page), Route("/healthz", healthz)], lifespan=lifespan)


def start_baseline(
    stack: ExitStack, url: str, workdir: Path, ref: str, csrf: str
) -> tuple[str, subprocess.Popen]:
    env = {
        "ICC_DATABASE_URL": url,
        "ICC_ENVIRONMENT": "test",
        "ICC_CONFIG": str(common.NO_CONFIG),
        "ICC_RUN_SCHEDULER": "false",
        "ICC_RUNBOOKS_DIR": str(workdir / "runbooks"),
        "ICC_BENCH_BASELINE_URL": url,  # importing common drops ICC_DATABASE_URL
        BASELINE_ENV: ref,
        "ICC_BENCH_BASELINE_EMAIL": EMAIL,
        "ICC_BENCH_BASELINE_CSRF": csrf,
    }
    app = ["incident_page:baseline_app", "--factory", "--app-dir", str(common.ROOT / "bench")]
    log = workdir / "baseline.log"
    return common.start_uvicorn(stack, app, env, log, name="baseline uvicorn", warm_path=f"/incidents/{ref}")


# --- timeline POSTs (wrk with a Lua script) and pgbench -----------------------------------------

# Timeline notes, a unique body each (run, thread, counter); wrk's -H options add the session
# cookie, the CSRF header and the JSON content type. After the first argument's seconds no new
# request is sent (an empty one writes nothing and the connection idles), so that when wrk stops
# no write is in flight: every row written is then one whose 201 wrk saw. done() prints the
# answers counted and the time from the start to the last answer, over all threads.
POST_LUA = """\
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } icc_timespec;
int clock_gettime(int clock, icc_timespec *now);
]]
local clock = ffi.new("icc_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

wrk.method = "POST"
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

created, other, started, last = 0, 0, 0, 0
local stop_at, run, counter = 0, "", 0
function init(args)
  started = now()
  stop_at = started + tonumber(args[1])
  run = args[2]
end

function request()
  if now() >= stop_at then
    return ""
  end
  counter = counter + 1
  local body = '{"kind": "note", "body": "wrk note ' .. run .. '-' .. id .. '-' .. counter
    .. ': disk on host-' .. (counter % 1000) .. ' checked."}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
  last = now()
end

function done(summary, latency, requests)
  local c, o, first, final = 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    c = c + t:get("created")
    o = o + t:get("other")
    first = math.min(first, t:get("started"))
    final = math.max(final, t:get("last"))
  end
  io.write(string.format("icc-writes created=%d other=%d seconds=%.6f\\n", c, o, final - first))
end
"""


def pgbench(tool: str, dbname: str, script: Path, seconds: int) -> tuple[float, float]:
    """(tps, p99 ms) of pgbench -c 50 -j 2 running the one-INSERT script; latencies from its
    per-transaction log (-l) in a temporary directory. The PostgreSQL server is shared: when its
    connection slots are taken for a moment (other people's benchmarks), it tries again."""
    info = psycopg.conninfo.conninfo_to_dict(common.libpq(common.SERVER_URL))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if info.get("password"):
        env["PGPASSWORD"] = info["password"]
    for attempt in itertools.count(1):
        with tempfile.TemporaryDirectory(prefix="icc-pgbench-") as logs:
            command = [
                tool, "-n", "-c", str(common.WRK_CONNECTIONS), "-j", str(common.WRK_THREADS),
                "-T", str(seconds), "-f", str(script), "-h", info.get("host", "127.0.0.1"),
                "-p", str(info.get("port", 5432)), "-U", info.get("user", "postgres"),
                "-l", "--log-prefix", f"{logs}/tx", dbname,
            ]  # fmt: skip
            done = subprocess.run(  # noqa: S603 - pgbench against 127.0.0.1 only
                command, capture_output=True, text=True, timeout=seconds + 60, check=False, env=env
            )
            found = re.search(r"tps = ([\d.]+)", done.stdout)
            if done.returncode == 0 and found:
                latencies = sorted(
                    int(line.split()[2])
                    for path in Path(logs).iterdir()
                    for line in path.read_text().splitlines()
                )
                p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] / 1000
                return float(found.group(1)), p99
        if "too many clients" not in done.stderr or attempt == PGBENCH_ATTEMPTS:
            raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        progress(f"pgbench: the server has no {common.WRK_CONNECTIONS} free connections; again in 10 s")
        time.sleep(10)


# --- the run ------------------------------------------------------------------------------------


def page_case(base: str, ref: str, cookie: str | None, entries: int) -> Case:
    headers = {"Cookie": f"icc_session={cookie}"} if cookie else {}
    with client(base) as c:
        page = c.get(f"/incidents/{ref}", headers=headers)
    assert page.status_code == 200, (base, page.status_code, page.text[:300])
    shown = len(ENTRY_MARK.findall(page.content))
    assert shown == entries, f"{base}/incidents/{ref} shows {shown} timeline entries, expected {entries}"
    return Case(
        f"{base}/incidents/{ref}", common.wire_size(page), tuple(f"{k}: {v}" for k, v in headers.items())
    )


def csrf_of(base: str, ref: str, cookie: str) -> str:
    """The session's CSRF token as the page hands it to htmx, which sends it as X-CSRF-Token."""
    with client(base) as c:
        page = c.get(f"/incidents/{ref}", headers={"Cookie": f"icc_session={cookie}"})
    return re.search(r"hx-headers='\{\"X-CSRF-Token\": \"([^\"]+)\"\}'", page.text).group(1)


def bench_writes(tools, base, conn, dbname, ref, cookie, csrf, workdir, notes):
    """Timeline POSTs (wrk + Lua) and pgbench INSERTs, interleaved rounds in shuffled order."""
    lua = workdir / "post.lua"
    lua.write_text(POST_LUA, encoding="utf-8")
    sql = workdir / "insert.sql"
    sql.write_text("INSERT INTO bench_rows (body) VALUES ('pgbench row: disk on host-0042 checked.');\n")
    conn.execute(
        "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, body text, at timestamptz DEFAULT now())"
    )
    case = Case(
        f"{base}/api/v1/incidents/{ref}/timeline",
        0,
        (f"Cookie: icc_session={cookie}", f"X-CSRF-Token: {csrf}", "Content-Type: application/json"),
    )
    count_sql = (
        "SELECT count(*) FROM timeline_entries e JOIN incidents i ON i.id = e.incident_id WHERE i.ref = %s"
    )
    written: list[int] = []

    def product(seconds: int) -> tuple[float, float]:
        (before,) = conn.execute(count_sql, (ref,)).fetchone()
        run = common.wrk(tools["wrk"], case, seconds + WRITE_DRAIN_S, script=(lua, seconds, len(written)))
        created, other, elapsed = re.search(
            r"icc-writes created=(\d+) other=(\d+) seconds=([\d.]+)", run.output
        ).groups()
        created, other = int(created), int(other)
        (after,) = conn.execute(count_sql, (ref,)).fetchone()
        if run.non_2xx or other or any(run.socket_errors.values()) or created != run.requests:
            raise RuntimeError(
                f"timeline POST: {created} answers 201 and {other} others of {run.requests}, "
                f"{run.non_2xx} non-2xx, socket errors {run.socket_errors}"
            )
        if after - before != created:
            raise RuntimeError(
                f"timeline POST: {after - before} timeline entries written, but wrk counted {created} "
                f"answers 201 (a write still in flight after {WRITE_DRAIN_S} s, or one lost)"
            )
        written.append(created)
        return created / float(elapsed), run.p99_ms

    def baseline(seconds: int) -> tuple[float, float]:
        return pgbench(tools["pgbench"], dbname, sql, seconds)

    sides = {"product": product, "pgbench": baseline}
    order = list(sides)
    shuffle = random.Random(4321)  # noqa: S311 - ordering only
    for name in order:
        progress(f"writes: warm-up {name}")
        sides[name](common.WRK_WARMUP_SECONDS)
        common.settle(conn)
    got: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for i in range(common.WRK_ROUNDS):
        shuffle.shuffle(order)
        for name in order:
            progress(f"writes: round {i + 1}/{common.WRK_ROUNDS} {name}")
            got[name].append(sides[name](common.WRK_SECONDS))
            common.settle(conn)
    (rows,) = conn.execute("SELECT count(*) FROM bench_rows").fetchone()
    ours = statistics.median(r for r, _ in got["product"])
    ours_p99 = statistics.median(p for _, p in got["product"])
    theirs = statistics.median(r for r, _ in got["pgbench"])
    theirs_p99 = statistics.median(p for _, p in got["pgbench"])
    notes.append(
        "Timeline POST (session cookie + X-CSRF-Token, JSON) req/s per round: "
        + "/".join(f"{r:,.0f}" for r, _ in got["product"])
        + "; pgbench tps "
        + "/".join(f"{r:,.0f}" for r, _ in got["pgbench"])
        + f". p99: product {ours_p99:,.1f} ms, pgbench {theirs_p99:,.1f} ms (from its -l log). "
        f"Timeline entries written = answers 201 counted by wrk, in every run: {sum(written):,} in all "
        f"({'/'.join(f'{n:,}' for n in written)}, the first being the warm-up); "
        f"{rows:,} bench_rows inserted. "
        f"A timeline run sends for {common.WRK_SECONDS} s, then lets its last requests finish; its req/s "
        "is the 201s divided by the time from its start to its last answer."
    )
    return [
        common.throughput_figure(
            "write: POST /api/v1/incidents/{ref}/timeline (signed in: session cookie, CSRF header, JSON)",
            ours,
            "pgbench single-row INSERT, -c 50 -j 2, same database",
            theirs,
            WRITE_TARGET,
        ),
        common.limit_figure(
            P99_NAME,
            ours_p99,
            "ms",
            "fixed limit 50 ms (pgbench INSERT p99 shown)",
            theirs_p99,
            WRITE_P99_TARGET_MS,
        ),
    ]


def run(tools: dict[str, str], url: str, dbname: str, notes: list[str]) -> list[common.Figure]:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icc-bench-")))
        progress("seeding 4 incidents through the service layer (one with 200 timeline entries)")
        email, refs = asyncio.run(seed(url))
        conn = stack.enter_context(psycopg.connect(common.libpq(url), autocommit=True))
        user_id = conn.execute("SELECT id FROM users WHERE email = %s", (email,)).fetchone()[0]
        conn.execute(
            EXTRA_ENTRIES_SQL, {"user": user_id, "extra": SCALE_LARGE - SCALE_SMALL, "ref": refs["large"]}
        )
        conn.execute("VACUUM ANALYZE timeline_entries")
        progress("starting uvicorn (product)")
        base, product_proc = common.start_product(stack, url, workdir, {"ICC_RUN_SCHEDULER": "false"})
        cookie = common.sign_in(base, email)
        csrf = csrf_of(base, refs["page"], cookie)
        progress("starting uvicorn (baseline: the template from an in-memory context)")
        baseline_base, baseline_proc = start_baseline(stack, url, workdir, refs["page"], csrf)

        # 1. the incident page
        cases = {
            "product GET /incidents/{ref}": page_case(base, refs["page"], cookie, PAGE_ENTRIES),
            "baseline: template from memory": page_case(baseline_base, refs["page"], None, PAGE_ENTRIES),
        }
        sizes = {name: case.expected_bytes for name, case in cases.items()}
        got = common.measure(tools["wrk"], conn, cases, "incident page", notes)
        ours, theirs = got["product GET /incidents/{ref}"], got["baseline: template from memory"]
        notes.append(
            f"Incident page ({PAGE_ENTRIES} timeline entries) req/s per round: product {ours.spread}; "
            f"baseline {theirs.spread}. p99: product {ours.p99_ms:,.0f} ms, "
            f"baseline {theirs.p99_ms:,.0f} ms. "
            "Response sizes: " + ", ".join(f"{n} {s:,} B" for n, s in sizes.items()) + "."
        )
        figures = [
            common.throughput_figure(
                f"page: GET /incidents/{{ref}}, {PAGE_ENTRIES} timeline entries, signed in",
                ours.rps,
                "incidents/page.html rendered from a context held in memory (uvicorn, 2 workers, no DB)",
                theirs.rps,
                PAGE_TARGET,
            )
        ]

        # 2. timeline writes
        figures += bench_writes(tools, base, conn, dbname, refs["write"], cookie, csrf, workdir, notes)

        # 4. scaling (before the memory reading, so the peak covers the 5,000-entry page too)
        with client(base) as c:
            large_page = c.get(f"/incidents/{refs['large']}", headers={"Cookie": f"icc_session={cookie}"})
        large_shown = len(ENTRY_MARK.findall(large_page.content))
        cases = {
            f"GET /incidents/{{ref}}, {SCALE_SMALL} entries": page_case(
                base, refs["small"], cookie, SCALE_SMALL
            ),
            f"GET /incidents/{{ref}}, {SCALE_LARGE:,} entries": page_case(
                base, refs["large"], cookie, large_shown
            ),
        }
        sizes = {name: case.expected_bytes for name, case in cases.items()}
        got = common.measure(tools["wrk"], conn, cases, "scaling", notes)
        small, large = (
            got[f"GET /incidents/{{ref}}, {SCALE_SMALL} entries"],
            got[f"GET /incidents/{{ref}}, {SCALE_LARGE:,} entries"],
        )
        notes.append(
            f"Scaling req/s per round: {SCALE_SMALL} entries {small.spread}; "
            f"{SCALE_LARGE:,} entries {large.spread}. "
            f"p99: {small.p99_ms:,.0f} ms vs {large.p99_ms:,.0f} ms. Sizes: "
            + ", ".join(f"{n} {s:,} B" for n, s in sizes.items())
            + f". With {SCALE_LARGE:,} entries the page shows {large_shown:,} of them. "
            f"{small.rps / large.rps:.1f}x fewer req/s at {SCALE_LARGE:,} entries than at {SCALE_SMALL}."
        )
        figures.append(
            common.throughput_figure(
                f"scaling: GET /incidents/{{ref}} with {SCALE_LARGE:,} vs {SCALE_SMALL} timeline entries "
                "(informational)",
                large.rps,
                f"the same page with {SCALE_SMALL} entries, same rounds",
                small.rps,
                None,
            )
        )

        # 3. peak memory per worker
        figures += common.memory_figures(product_proc, "the incident page and timeline runs", notes)
        notes.append(
            "Peak RSS (VmHWM) of the baseline workers: "
            + ", ".join(
                f"pid {pid} {kib / 1024:,.1f} MiB" for pid, kib in common.worker_peaks(baseline_proc.pid)
            )
            + "."
        )
        return figures


def main() -> int:
    tools = common.find_tools("wrk", "pgbench")
    if tools is None:
        return 2
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    figures, notes = common.with_database(lambda url, name, notes: run(tools, url, name, notes))
    common.report(
        "Incident page and timeline write benchmarks",
        RESULTS,
        figures,
        notes,
        started=started,
        footer=(
            f"{common.wrk_line()}; pgbench -n -c {common.WRK_CONNECTIONS} -j {common.WRK_THREADS} "
            f"-T {common.WRK_SECONDS}; ratio = ours / baseline.",
            common.load_line(load_before, "wrk, pgbench, uvicorn and PostgreSQL"),
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
