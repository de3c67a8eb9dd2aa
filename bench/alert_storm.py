"""Alert storm benchmark: 10,000 Alertmanager deliveries over 1,000 distinct alerts, 50 at a time,
against the running product (uvicorn, 2 workers), as a ratio against the same stack's plainest
authenticated single-row write timed in the same run.

Run from the repository root:  .venv/bin/python bench/alert_storm.py

It creates its own database (icc_bench_<random>) on the server named by ICC_BENCH_DATABASE_URL
(default: ICC_TEST_DATABASE_URL, then postgres@127.0.0.1:5432), migrates it to head, starts the
product on a free 127.0.0.1 port with a temporary icc.toml, and at the end stops it and drops the
database, also on error, Ctrl-C or SIGTERM. All traffic goes to 127.0.0.1. It needs nothing
outside the dev venv (the load comes from asyncio and one pooled httpx client). Bounded: every
run has its share of a fixed budget, and the whole script stays under 4 minutes.

Figures (see bench/README.md, "bench/alert_storm.py"):
- storm throughput, alerts (deliveries) per second; baseline: the same number of
  POST /api/v1/incidents/{ref}/timeline at the same concurrency; ratio ours / baseline, target 0.50;
- stored alerts after the storm, which must be exactly the 1,000 distinct alerts;
- p99 latency of a storm delivery against the baseline's (informational).
"""

import asyncio
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import common
import httpx
import psycopg
from common import Figure, progress

from app.auth import service as accounts
from app.db import make_engine, make_sessionmaker
from app.incidents import service as incidents

RESULTS = common.RESULTS_DIR / "alert_storm.json"

DELIVERIES, DISTINCT, CONCURRENCY = 10_000, 1_000, 50
WARMUP = 200  # requests of each kind before the timed runs (not counted)
HALVES = 2  # each side runs in 2 halves, interleaved storm / timeline / timeline / storm
BUDGET_S = 175.0  # all timed runs together (a run past its share sends no new request)
STORM_SOURCE = "storm"
STORM_TOKEN_ENV = "ICC_BENCH_STORM_TOKEN"  # noqa: S105 - the name of a variable
STORM_WEIGHT = 2.0  # of the budget, a storm run gets twice a timeline run's share
THROUGHPUT_TARGET = 0.50
SETTLE_LIMIT_S = 20.0

ICC_TOML = f"""\
# Written by bench/alert_storm.py: one Alertmanager source with a token, and a rate limit far
# above what the storm sends, so that the limiter counts every delivery but refuses none.
[alerts]
rate_limit = "1000000/s"

[alerts.sources.{STORM_SOURCE}]
kind = "alertmanager"
token_env = "{STORM_TOKEN_ENV}"
rate_limit = "1000000/s"

# Every storm alert waits in the unrouted queue: the figure is ingestion, not incident creation.
[[alerts.routes]]
match = []
action = "triage"
"""


def start_product(stack: ExitStack, url: str, workdir: Path, token: str) -> str:
    config = workdir / "icc.toml"
    config.write_text(ICC_TOML, encoding="utf-8")
    env = {"ICC_CONFIG": str(config), "ICC_RUN_SCHEDULER": "false", STORM_TOKEN_ENV: token}
    return common.start_product(stack, url, workdir, env)[0]


async def seed(url: str) -> tuple[str, str]:
    """A responder with an API token and one open incident to write notes on: (token, ref)."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            user = await accounts.create_user(
                session,
                email="bench-responder@example.com",
                name="Bench Responder",
                role="responder",
                password=secrets.token_urlsafe(16),
            )
            incident = await incidents.declare_incident(
                session,
                actor=user,
                title="Alert storm benchmark",
                severity="SEV3",
                services=["checkout"],
                summary="Notes written by bench/alert_storm.py.",
            )
            token = await accounts.create_api_token(session, email=user.email, name="bench")
            return token, incident.ref
    finally:
        await engine.dispose()


# --- the requests -------------------------------------------------------------------------------


def storm_bodies(count: int, distinct: int, *, prefix: str, seed: int) -> tuple[list[bytes], list[int]]:
    """`count` Alertmanager deliveries, one alert each, every one of `distinct` alerts sent
    count/distinct times: first each alert once, then the repeats in a shuffled order (so repeats
    of one alert arrive concurrently, as in a real storm). 20 services, one alert group per
    service. Returns the bodies and the alert number of each."""
    shuffle = random.Random(seed)  # noqa: S311 - ordering only
    first = list(range(distinct))
    repeats = [n % distinct for n in range(count - distinct)]
    shuffle.shuffle(first)
    shuffle.shuffle(repeats)
    order = first + repeats
    bodies = []
    for n in order:
        service = f"svc-{n % 20:02d}"
        group_key = f'{{}}:{{alertname="{prefix}", service="{service}"}}'
        alert = {
            "status": "firing",
            "labels": {
                "alertname": prefix,
                "instance": f"host-{n:04d}.example.com:9100",
                "service": service,
                "severity": "warning",
                "job": "node",
            },
            "annotations": {
                "summary": f"{prefix} on host-{n:04d}",
                "description": "Filesystem has less than 10% space left; predicted full within 4 hours.",
            },
            "startsAt": "2026-11-23T14:02:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": f"http://prometheus.example.com/graph?g0.expr=node_filesystem&n={n}",
            "fingerprint": f"{n:016x}",
        }
        payload = {
            "version": "4",
            "status": "firing",
            "receiver": "incident-command-center",
            "groupKey": group_key,
            "truncatedAlerts": 0,
            "groupLabels": {"alertname": prefix, "service": service},
            "commonLabels": {"alertname": prefix, "service": service, "severity": "warning"},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.example.com",
            "alerts": [alert],
        }
        bodies.append(json.dumps(payload).encode())
    return bodies, order


def timeline_bodies(count: int, *, tag: str) -> list[bytes]:
    return [
        json.dumps({"kind": "note", "body": f"{tag} note {n}: disk on host-{n % 1000:04d} checked."}).encode()
        for n in range(count)
    ]


@dataclass
class Run:
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]
    succeeded: list[int]  # positions (in the bodies given) answered with a 2xx
    capped: bool  # the time limit came before the last body was sent


async def blast(base: str, path: str, headers: dict[str, str], bodies: list[bytes], limit_s: float) -> Run:
    """POST every body to `path`, CONCURRENCY at a time over one pooled keep-alive client. After
    `limit_s` no new request is sent (those in flight finish): the run is then `capped`."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    succeeded: list[int] = []
    position = iter(range(len(bodies)))
    stop_at = time.perf_counter() + limit_s
    # trust_env=False: never a proxy from the environment, the traffic stays on 127.0.0.1.
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, trust_env=False, timeout=30.0
    ) as client:

        async def worker() -> None:
            for n in position:
                began = time.perf_counter()
                if began >= stop_at:
                    return
                try:
                    response = await client.post(path, content=bodies[n])
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0  # a transport error or a timeout
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    succeeded.append(n)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds = time.perf_counter() - started
    capped = len(latencies) < len(bodies)
    return Run(seconds, latencies, statuses, succeeded, capped)


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# --- the benchmark ------------------------------------------------------------------------------


def run(url: str, notes: list[str]) -> list[Figure]:
    with ExitStack() as stack:  # on the way out: uvicorn, then the connection, then the files
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="icc-bench-")))
        progress("seeding a responder, an API token and an incident")
        api_token, ref = asyncio.run(seed(url))
        storm_token = secrets.token_urlsafe(24)
        conn = stack.enter_context(psycopg.connect(common.libpq(url), autocommit=True))
        progress("starting uvicorn")
        base = start_product(stack, url, workdir, storm_token)

        storm_path = f"/api/v1/alerts/alertmanager/{STORM_SOURCE}"
        timeline_path = f"/api/v1/incidents/{ref}/timeline"
        json_type = {"content-type": "application/json"}
        storm_headers = {"Authorization": f"Bearer {storm_token}", **json_type}
        timeline_headers = {"Authorization": f"Bearer {api_token}", **json_type}
        storm, storm_alerts = storm_bodies(DELIVERIES, DISTINCT, prefix="DiskFillingUp", seed=1234)
        notes_bodies = timeline_bodies(DELIVERIES, tag="storm")

        # Warm-up: other alerts (their own alertname) and other notes, not counted.
        progress(f"warm-up: {WARMUP} deliveries and {WARMUP} timeline POSTs")
        warm = asyncio.run(
            blast(
                base, storm_path, storm_headers, storm_bodies(WARMUP, WARMUP, prefix="WarmUp", seed=1)[0], 60
            )
        )
        warm_bodies = timeline_bodies(WARMUP, tag="warm")
        warm_notes = asyncio.run(blast(base, timeline_path, timeline_headers, warm_bodies, 60))
        for what, done in (("storm", warm), ("timeline", warm_notes)):
            if not done.succeeded:
                raise RuntimeError(f"warm-up {what}: answers {done.statuses}, no 2xx at all")
            if set(done.statuses) - {200, 201}:
                notes.append(f"**Warm-up {what}: answers {done.statuses}** (not counted).")
        common.settle(conn, SETTLE_LIMIT_S)

        half = DELIVERIES // HALVES
        plan = [("storm", 0), ("timeline", 0), ("timeline", 1), ("storm", 1)]  # ABBA
        runs: dict[str, list[Run]] = {"storm": [], "timeline": []}
        weight = {"storm": STORM_WEIGHT, "timeline": 1.0}
        deadline = time.monotonic() + BUDGET_S
        sent_alerts: set[int] = set()
        for step, (side, part) in enumerate(plan):
            # The run's share of what is left of the budget, by weight (the storm is the slower).
            left = sum(weight[s] for s, _ in plan[step:])
            share = max(5.0, (deadline - time.monotonic()) * weight[side] / left)
            chunk = slice(part * half, (part + 1) * half)
            progress(f"{side}: {half:,} POSTs, {CONCURRENCY} concurrent (at most {share:.0f} s)")
            path, headers, bodies = (
                (storm_path, storm_headers, storm)
                if side == "storm"
                else (timeline_path, timeline_headers, notes_bodies)
            )
            done = asyncio.run(blast(base, path, headers, bodies[chunk], share))
            if side == "storm":
                sent_alerts |= {storm_alerts[chunk][n] for n in done.succeeded}
            answered = len(done.latencies_ms)
            progress(f"{side}: {answered:,} answered, {answered / done.seconds:,.0f} req/s, {done.statuses}")
            if done.capped:
                notes.append(
                    f"**{side} part {part + 1} was capped at {share:.0f} s**: {answered:,} of {half:,} "
                    "requests sent (the budget keeps the run under 4 minutes)."
                )
            runs[side].append(done)
            common.settle(conn, SETTLE_LIMIT_S)

        def total(side: str) -> tuple[float, float, dict[int, int], int]:
            found = runs[side]
            statuses: dict[int, int] = {}
            for r in found:
                for code, n in r.statuses.items():
                    statuses[code] = statuses.get(code, 0) + n
            rate = sum(len(r.latencies_ms) for r in found) / sum(r.seconds for r in found)
            answered = sum(len(r.latencies_ms) for r in found)
            return rate, p99([x for r in found for x in r.latencies_ms]), statuses, answered

        storm_rate, storm_p99, storm_statuses, storm_sent = total("storm")
        note_rate, note_p99, note_statuses, notes_sent = total("timeline")
        storm_accepted = sum(len(r.succeeded) for r in runs["storm"])
        stored, deliveries_counted, unrouted = conn.execute(
            "SELECT count(*), coalesce(sum(delivery_count), 0), count(*) FILTER (WHERE incident_id IS NULL) "
            "FROM alerts WHERE source = %s AND labels->>'alertname' = 'DiskFillingUp'",
            (STORM_SOURCE,),
        ).fetchone()
        (entries,) = conn.execute(
            "SELECT count(*) FROM timeline_entries e JOIN incidents i ON i.id = e.incident_id "
            "WHERE i.ref = %s AND e.body LIKE 'storm note %%'",
            (ref,),
        ).fetchone()
        (dead,) = conn.execute("SELECT count(*) FROM alert_dead_letters").fetchone()

        storm_ok = set(storm_statuses) == {200}
        notes_ok = set(note_statuses) == {201}
        if not storm_ok:
            notes.append(f"**Storm answers other than 200: {storm_statuses}** (throughput marked not met).")
        if not notes_ok:
            notes.append(f"Timeline answers other than 201: {note_statuses} (the baseline is suspect).")
        notes.append(
            f"Storm: {storm_sent:,} of {DELIVERIES:,} planned deliveries sent ({storm_accepted:,} accepted), "
            f"one alert each, over {len(sent_alerts):,} of {DISTINCT:,} distinct alerts (each once, then "
            f"the repeats shuffled), {CONCURRENCY} concurrent, in {HALVES} halves interleaved with the "
            f"baseline's (storm, timeline, timeline, storm) after a warm-up of {WARMUP} of each. Stored: "
            f"{stored:,} alerts ({unrouted:,} unrouted), delivery_count summing to {deliveries_counted:,}; "
            f"{entries:,} of {notes_sent:,} timeline POSTs written; {dead} dead letters."
        )
        ratio = storm_rate / note_rate
        return [
            Figure(
                name=f"alert storm: {storm_sent:,} Alertmanager deliveries, {len(sent_alerts):,} alerts, "
                f"{CONCURRENCY} concurrent",
                value=round(storm_rate, 3),
                unit="alerts/s",
                baseline_name=f"{notes_sent:,} POST /api/v1/incidents/{{ref}}/timeline (one INSERT), "
                f"{CONCURRENCY} concurrent",
                baseline_value=round(note_rate, 3),
                ratio=round(ratio, 3),
                target=THROUGHPUT_TARGET,
                met=ratio >= THROUGHPUT_TARGET and storm_ok,
            ),
            Figure(
                name="alert storm: stored alerts (must equal the distinct alerts sent)",
                value=float(stored),
                unit="alerts",
                baseline_name="distinct alerts sent",
                baseline_value=float(DISTINCT),
                ratio=round(stored / DISTINCT, 3),
                target=1.0,
                met=stored == DISTINCT == len(sent_alerts) and deliveries_counted == storm_accepted,
            ),
            Figure(
                name="alert storm: p99 latency of a delivery (informational)",
                value=round(storm_p99, 3),
                unit="ms",
                baseline_name="p99 latency of a timeline POST",
                baseline_value=round(note_p99, 3),
                ratio=round(note_p99 / storm_p99, 3),
            ),
        ]


def main() -> int:
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    figures, notes = common.with_database(lambda url, _name, notes: run(url, notes))
    common.report(
        "Alert storm benchmark",
        RESULTS,
        figures,
        notes,
        started=started,
        footer=(
            "alerts/s and req/s: requests answered divided by the wall time of the runs; the stored "
            "count is met only when it is exactly the distinct count and delivery_count sums to the "
            "deliveries sent; p99 ratio = baseline / ours (higher is better).",
            common.load_line(load_before, "the load generator, uvicorn and PostgreSQL"),
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
