"""Runbook benchmarks: rendering (cold and cached) and library search, as ratios against
baselines measured in the same run.

Run from the repository root:  .venv/bin/python bench/runbooks.py

The machine is shared and absolute times drift, so every figure that has a target is a ratio
`baseline / ours` where the baseline is timed in the same run, interleaved round by round with
the thing it is compared to. Higher is better. See bench/README.md for what each figure means.

The script creates its own database (icc_bench_<random>) on the server named by
ICC_BENCH_DATABASE_URL (default: ICC_TEST_DATABASE_URL, then postgres@127.0.0.1:5432), migrates
it to head and drops it at the end, also on error or Ctrl-C.
"""

import asyncio
import json
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path

import common
import psycopg
from common import DIAGNOSTIC, Figure, latency_figure
from markdown_it import MarkdownIt
from sqlalchemy import func, literal_column, or_, select, text

from app.db import make_engine, make_sessionmaker
from app.runbooks import service
from app.runbooks.models import Runbook
from app.runbooks.render import render_runbook, split_front_matter

ROOT = common.ROOT
CORPUS_DIR = ROOT.parent / "shared" / "corpus" / "runbooks"
PROJECT_RUNBOOKS = ROOT / "runbooks"
FALLBACK_DOC = PROJECT_RUNBOOKS / "rb-000-incident-response.md"
RESULTS = common.RESULTS_DIR / "runbooks.json"

LIBRARY_SIZE = 1000
RENDER_ROUNDS, RENDER_WARMUP = 21, 3
ALL_ROUNDS = 7  # rendering every source document once: about a second a round
SEARCH_ROUNDS, SEARCH_WARMUP = 9, 2
# Full syncs of the 1,000 files are the slowest part of the run: up to SYNC_REPEATS of them, but
# no new one once the next would take the sync phase past SYNC_BUDGET_S (the whole run must stay
# under 3 minutes on a loaded 2-core machine).
SYNC_REPEATS, SYNC_BUDGET_S = 3, 60.0
# (query for find_runbooks, the word the ILIKE baseline scans for)
SEARCHES = [
    ("replication lag", "replication"),
    ("rollback deployment", "rollback"),
    ("certificate", "certificate"),
]

WARM_TARGET, COLD_TARGET, SEARCH_TARGET = 1.0, 0.1, 0.5


# --- timing -------------------------------------------------------------------------------------

Timed = Callable[[], Awaitable[object]]


async def interleaved(cases: dict[str, Timed], *, rounds: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per case. Each round runs every case once, in a shuffled order, so a
    slow spell on the shared machine hits the baseline and the measured code alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    shuffle = random.Random(1234)  # noqa: S311 - ordering only
    for i in range(warmup + rounds):
        shuffle.shuffle(order)
        for name in order:
            start = time.perf_counter()
            await cases[name]()
            elapsed = (time.perf_counter() - start) * 1000
            if i >= warmup:
                samples[name].append(elapsed)
    return {name: statistics.median(values) for name, values in samples.items()}


def sync_call(fn: Callable[[], object]) -> Timed:
    async def call() -> object:
        return fn()

    return call


# --- 1. rendering -------------------------------------------------------------------------------


def longest_document() -> tuple[Path, str | None]:
    docs = sorted(CORPUS_DIR.glob("*.md")) if CORPUS_DIR.is_dir() else []
    if docs:
        return max(docs, key=lambda p: len(p.read_text(encoding="utf-8"))), None
    return FALLBACK_DOC, f"{CORPUS_DIR} is absent or empty: fell back to {FALLBACK_DOC.relative_to(ROOT)}"


async def bench_render(sessionmaker, workdir: Path, notes: list[str]) -> list[Figure]:
    path, fallback = longest_document()
    if fallback:
        notes.append(fallback)
    source = path.read_text(encoding="utf-8")
    notes.append(f"Rendered document: {path.name} ({len(source):,} characters).")

    directory = workdir / "one"
    directory.mkdir()
    shutil.copy(path, directory / path.name)
    async with sessionmaker() as session:
        report = await service.sync_runbooks(session, directory=directory)
        assert report.added == [path.name], report
        key = await session.scalar(select(Runbook.key).where(Runbook.path == path.name))
    stored = await read_html(sessionmaker, key)
    expected = render_runbook(source, fallback_title=path.stem).html
    assert stored == expected, "the stored html is not what render_runbook produces"

    plain = MarkdownIt("commonmark")
    times = await interleaved(
        {
            "baseline": sync_call(lambda: plain.render(source)),
            "cold": sync_call(lambda: render_runbook(source, fallback_title=path.stem)),
            "warm": lambda: read_html(sessionmaker, key),
        },
        rounds=RENDER_ROUNDS,
        warmup=RENDER_WARMUP,
    )
    baseline_name = "markdown-it-py MarkdownIt('commonmark').render"

    # Is the longest document typical? Every source text once (prose-heavy documents cost our
    # extras little; code fences, tables and front matter cost more). Each document is its own
    # case, so its baseline and its render are timed close together; the medians are summed.
    texts = [p.read_text(encoding="utf-8") for p in _source_paths()]
    cases: dict[str, Timed] = {}
    for i, t in enumerate(texts):
        cases[f"baseline {i}"] = sync_call(lambda t=t: plain.render(t))
        cases[f"cold {i}"] = sync_call(lambda t=t: render_runbook(t))
    per_doc = await interleaved(cases, rounds=ALL_ROUNDS, warmup=1)
    every = {
        kind: sum(v for name, v in per_doc.items() if name.startswith(kind + " "))
        for kind in ("baseline", "cold")
    }
    notes.append(
        f"'all sources' = the {len(texts)} corpus and project runbooks, each rendered once "
        "(sum of per-document medians)."
    )
    return [
        latency_figure(
            "render cold: render_runbook", times["cold"], baseline_name, times["baseline"], COLD_TARGET
        ),
        latency_figure(
            "render warm: SELECT html FROM runbooks",
            times["warm"],
            baseline_name,
            times["baseline"],
            WARM_TARGET,
        ),
        latency_figure(
            "render cold, all sources (informational)",
            every["cold"],
            baseline_name,
            every["baseline"],
            None,
        ),
    ]


async def read_html(sessionmaker, key: str) -> str:
    """What a page view pays for the document once it is indexed: a session from the pool and
    the stored html by key."""
    async with sessionmaker() as session:
        return await session.scalar(text("SELECT html FROM runbooks WHERE key = :key"), {"key": key})


# --- 2. library search --------------------------------------------------------------------------

SERVICES = [
    "checkout", "orders-api", "orders-db", "payments", "search", "auth", "gateway", "billing",
    "inventory", "notifications", "kafka", "redis", "postgres-primary", "cdn", "ledger", "web",
    "mobile-api", "scheduler", "metrics", "logging", "dns", "vault", "pgbouncer", "ci-runners",
]  # fmt: skip
TAGS = [
    "database", "latency", "availability", "security", "network", "storage", "deploy", "capacity",
    "replication", "cache", "queue", "kubernetes", "tls", "backup", "on-call", "alerting",
]  # fmt: skip
OWNERS = ["sre-team", "data-platform-team", "payments-team", "edge-team", "platform-team", "security-team"]
ASPECTS = ["degradation", "outage", "saturation", "errors", "slowness", "failover", "recovery", "drill"]


def _source_paths() -> list[Path]:
    paths = sorted(CORPUS_DIR.glob("*.md")) if CORPUS_DIR.is_dir() else []
    return paths + sorted(PROJECT_RUNBOOKS.glob("*.md"))


def _sources() -> list[tuple[str, str]]:
    """(title, body) of every real corpus text and every project runbook, front matter removed."""
    sources = []
    for path in _source_paths():
        meta, _error, body = split_front_matter(path.read_text(encoding="utf-8"))
        heading = re.search(r"^#{1,2}\s+(.+)$", body, re.MULTILINE)
        title = str(meta.get("title") or (heading.group(1) if heading else path.stem)).strip()
        sources.append((title, body))
    return sources


def generate_library(directory: Path, count: int) -> int:
    """`count` runbooks that differ: each is one real text with its own id, title, tags,
    services, owner and date, an introduction made of sentences drawn from the whole corpus,
    and one section borrowed from another text. Returns the total size in bytes."""
    rng = random.Random(20261123)  # noqa: S311 - reproducible test data, not security
    sources = _sources()
    sentences = [
        s.strip()
        for _title, body in sources
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"[`#*|>\[\]()_-]+", " ", body))
        if 40 <= len(s.strip()) <= 240
    ]
    sections = [s for _t, body in sources for s in re.split(r"(?m)^(?=## )", body) if s.startswith("## ")]
    directory.mkdir()
    total = 0
    for i in range(count):
        title, body = sources[i % len(sources)]
        services = rng.sample(SERVICES, rng.randint(1, 3))
        front = "\n".join(
            [
                "---",
                f"id: RB-B{i:04d}",
                f"title: {json.dumps(f'{services[0]} {rng.choice(ASPECTS)}: {title}'[:200])}",
                f"tags: [{', '.join(rng.sample(TAGS, rng.randint(1, 4)))}]",
                f"owner: {rng.choice(OWNERS)}",
                f"updated: {date(2026, 11, 23) - timedelta(days=rng.randint(0, 900))}",
                f"services: [{', '.join(services)}]",
                f"severity: SEV{rng.randint(1, 4)}",
                "---",
                "",
            ]
        )
        intro = " ".join(rng.sample(sentences, rng.randint(3, 6)))
        borrowed = rng.choice(sections)
        document = f"{front}\n{intro}\n\n{body.rstrip()}\n\n{borrowed.rstrip()}\n"
        name = f"{services[0]}-{i:04d}.md"
        (directory / name).write_text(document, encoding="utf-8")
        total += len(document.encode())
    return total


async def bench_search(sessionmaker, url: str, workdir: Path, notes: list[str]) -> list[Figure]:
    figures: list[Figure] = []
    directory = workdir / "library"
    size = generate_library(directory, LIBRARY_SIZE)
    notes.append(
        f"Library: {LIBRARY_SIZE:,} generated runbooks, {size / 1e6:.1f} MB of markdown "
        f"({size / LIBRARY_SIZE / 1024:.1f} KiB on average)."
    )

    # Full syncs into an empty index (the first sync of a new deployment), then one with nothing
    # changed (what a page view triggers when it notices an mtime change but no new content).
    full: list[float] = []
    while len(full) < SYNC_REPEATS and (not full or sum(full) + full[-1] <= SYNC_BUDGET_S):
        async with sessionmaker() as session:
            await session.execute(text("DELETE FROM runbooks"))
            await session.commit()
        async with sessionmaker() as session:
            start = time.perf_counter()
            report = await service.sync_runbooks(session, directory=directory)
            full.append(time.perf_counter() - start)
        assert len(report.added) == LIBRARY_SIZE and not report.errors, (len(report.added), report.errors)
    async with sessionmaker() as session:
        start = time.perf_counter()
        report = await service.sync_runbooks(session, directory=directory)
        unchanged = time.perf_counter() - start
        assert not report.changed
    per_thousand = 1000 / LIBRARY_SIZE
    notes.append(
        f"Sync: median of {len(full)} full sync(s) into an empty index "
        f"({', '.join(f'{t:.1f}' for t in full)} s)."
    )
    figures.append(
        Figure("sync 1,000 new files (informational)", round(statistics.median(full) * per_thousand, 3), "s")
    )
    figures.append(
        Figure("resync 1,000 unchanged files (informational)", round(unchanged * per_thousand, 3), "s")
    )

    # Every runbook page and every incident page first asks refresh_if_changed whether the files
    # moved: a stat walk of the directory, paid on each view even when nothing changed.
    async with sessionmaker() as session:
        await service.refresh_if_changed(session, directory=directory)  # remembers the fingerprint

        async def check() -> object:
            assert await service.refresh_if_changed(session, directory=directory) is None
            return None

        freshness = await interleaved({"check": check}, rounds=SEARCH_ROUNDS, warmup=SEARCH_WARMUP)
    figures.append(
        Figure(
            "page-view freshness check, 1,000 unchanged files (informational)",
            round(freshness["check"] * per_thousand, 3),
            "ms",
        )
    )

    with psycopg.connect(common.libpq(url)) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE runbooks")  # the steady state autovacuum reaches on its own

    for q, word in SEARCHES:
        hits = await _search(sessionmaker, q)
        scanned = await _ilike(sessionmaker, word)
        if not hits or not scanned:
            notes.append(
                f"'{q}' found {len(hits)} runbooks and ILIKE '%{word}%' {len(scanned)}: the ratio is moot."
            )
        times = await interleaved(
            {
                "search": lambda q=q: _search(sessionmaker, q),
                "baseline": lambda word=word: _ilike(sessionmaker, word),
                "no_snippet": lambda q=q: _search_variant(sessionmaker, q, columns="rows"),
                "ids_only": lambda q=q: _search_variant(sessionmaker, q, columns="ids"),
                "ids_gin": lambda q=q: _search_variant(sessionmaker, q, columns="ids", key_or=False),
            },
            rounds=SEARCH_ROUNDS,
            warmup=SEARCH_WARMUP,
        )
        baseline_name = f"SELECT id FROM runbooks WHERE body ILIKE '%{word}%' LIMIT 100"  # noqa: S608 - a label
        main = latency_figure(
            f"search '{q}': find_runbooks", times["search"], baseline_name, times["baseline"], SEARCH_TARGET
        )
        figures.append(main)
        notes.append(
            f"'{q}': find_runbooks returned {len(hits)} runbooks; the ILIKE baseline {len(scanned)} ids."
        )
        for key, what in [
            ("no_snippet", "find_runbooks' query without ts_headline"),
            ("ids_only", "same WHERE and ORDER BY, ids only (no body/html loaded)"),
            ("ids_gin", "ids only, without `OR key ILIKE q` (GIN index usable)"),
        ]:
            figures.append(
                latency_figure(
                    f"{DIAGNOSTIC}'{q}': {what}", times[key], baseline_name, times["baseline"], None
                )
            )
        if not main.met:
            notes.append(_why_slow(q, times, len(hits)))
    return figures


async def _search(sessionmaker, q: str) -> list:
    async with sessionmaker() as session:
        return await service.find_runbooks(session, q=q)


async def _ilike(sessionmaker, word: str) -> list:
    async with sessionmaker() as session:
        rows = await session.scalars(
            text("SELECT id FROM runbooks WHERE body ILIKE :pattern LIMIT 100"), {"pattern": f"%{word}%"}
        )
        return list(rows)


async def _search_variant(sessionmaker, q: str, *, columns: str, key_or: bool = True) -> list:
    """find_runbooks' query (same WHERE, ORDER BY and LIMIT) without ts_headline and with more
    parts taken away, to see where its time goes."""
    tsquery = func.websearch_to_tsquery("english", q)
    rank = func.ts_rank_cd(literal_column("runbooks.search"), tsquery)
    matches = literal_column("runbooks.search").op("@@")(tsquery)
    query = select(Runbook) if columns == "rows" else select(Runbook.id)
    query = query.where(or_(matches, Runbook.key.ilike(q)) if key_or else matches)
    async with sessionmaker() as session:
        return list(await session.execute(query.order_by(rank.desc(), Runbook.title).limit(100)))


def _why_slow(q: str, times: dict[str, float], hits: int) -> str:
    search, no_snippet, ids, gin = times["search"], times["no_snippet"], times["ids_only"], times["ids_gin"]
    headline = search - no_snippet

    def ms(value: float) -> str:
        return f"about {value:.1f} ms" if value > 0 else "nothing measurable"

    return (
        f"'{q}' misses its target. Of {search:.1f} ms: ts_headline about {headline:.1f} ms "
        f"({headline / search:.0%}; {headline / max(hits, 1):.2f} ms for each of the {hits} hits: it "
        f"re-parses the whole body of every returned runbook to cut a snippet); loading whole rows "
        f"(body and html, which the library list does not show) {ms(no_snippet - ids)}; "
        f"matching and ranking {ids:.1f} ms, of which the `OR key ILIKE` (it forces a sequential "
        f"scan instead of the GIN index) {ms(ids - gin)}."
    )


# --- the run ------------------------------------------------------------------------------------


async def run(url: str, notes: list[str]) -> list[Figure]:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    try:
        with tempfile.TemporaryDirectory(prefix="icc-bench-") as tmp:
            workdir = Path(tmp)
            figures = await bench_render(sessionmaker, workdir, notes)
            figures += await bench_search(sessionmaker, url, workdir, notes)
        return figures
    finally:
        await engine.dispose()


def main() -> int:
    started = time.perf_counter()
    figures, notes = common.with_database(lambda url, _name, notes: asyncio.run(run(url, notes)))
    common.report(
        "Runbook benchmarks",
        RESULTS,
        figures,
        notes,
        started=started,
        diagnostics="Where the search time goes (no targets; same baselines):",
        footer=(
            "Ratio = baseline / ours, both medians (ms) of interleaved rounds in this run; higher is better.",
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
