"""The runbook library: sync files into the index, find, read and suggest runbooks."""

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup, escape
from sqlalchemy import delete, func, literal_column, or_, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app import clock
from app.auth.models import User
from app.errors import InvalidInput, NotFound
from app.incidents import service as incidents
from app.runbooks.models import Runbook
from app.runbooks.render import content_hash, render_runbook

# Serialises syncs across processes and replicas: the second waits, then finds nothing to do.
SYNC_LOCK_ID = 0x1CC_0B00C
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
_MARK_START, _MARK_STOP = "\x02", "\x03"
MAX_FILE_BYTES = 2 * 1024 * 1024


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def _key_for(path: Path, meta_id: str | None) -> str:
    if meta_id and _KEY.match(meta_id):
        return meta_id
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.")[:80]
    return slug or "runbook"


def _markdown_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.md")) if directory.is_dir() else []


def _fingerprint(directory: Path) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in _markdown_files(directory))


_last_fingerprint: dict[Path, tuple] = {}


async def refresh_if_changed(session: AsyncSession, *, directory: Path) -> SyncReport | None:
    """Sync when the files on disk changed since this process last looked (a cheap stat walk)."""
    fingerprint = await asyncio.to_thread(_fingerprint, directory)
    if _last_fingerprint.get(directory) == fingerprint:
        return None
    report = await sync_runbooks(session, directory=directory)
    _last_fingerprint[directory] = fingerprint
    return report


def _read(path: Path) -> tuple[str | None, str | None]:
    if path.stat().st_size > MAX_FILE_BYTES:
        return None, f"The file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB."
    try:
        return path.read_text(encoding="utf-8"), None
    except UnicodeDecodeError:
        return None, "The file is not UTF-8 text."


async def sync_runbooks(session: AsyncSession, *, directory: Path) -> SyncReport:
    """Make the index match the markdown files under `directory`. Idempotent: a file whose
    content hash is unchanged is not touched; several replicas may run it at once."""
    report = SyncReport()
    await session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SYNC_LOCK_ID})
    existing = {
        path: (key, digest)
        for path, key, digest in await session.execute(
            select(Runbook.path, Runbook.key, Runbook.content_hash)
        )
    }
    files = await asyncio.to_thread(_markdown_files, directory)
    seen_keys: dict[str, str] = {}
    now = clock.now()
    for path in files:
        relative = str(path.relative_to(directory))
        source, read_error = await asyncio.to_thread(_read, path)
        digest = content_hash(source or read_error or "")
        if relative in existing and existing[relative][1] == digest:
            seen_keys[existing[relative][0]] = relative
            continue
        rendered = await asyncio.to_thread(render_runbook, source or "", fallback_title=path.stem)
        meta = rendered.meta
        key = _key_for(path, meta["id"])
        error = read_error or rendered.meta_error
        if key in seen_keys or await _key_taken(session, key, relative):
            error = f"Duplicate id {key} (also used by {seen_keys.get(key) or 'another file'})."
            key = _key_for(path, None) + "-" + digest[:6]
        seen_keys[key] = relative
        values = {
            "key": key,
            "path": relative,
            "title": rendered.title[:300],
            "tags": meta["tags"],
            "owner": meta["owner"][:120],
            "updated": meta["updated"],
            "services": meta["services"],
            "severity": meta["severity"],
            "actions": list(dict.fromkeys(meta["actions"] + rendered.webhooks)),
            "body": rendered.body,
            "html": rendered.html,
            "toc": [[h.level, h.slug, h.text] for h in rendered.toc],
            "has_mermaid": rendered.has_mermaid,
            "content_hash": digest,
            "error": error,
            "synced_at": now,
        }
        await session.execute(
            insert(Runbook).values(**values).on_conflict_do_update(index_elements=[Runbook.path], set_=values)
        )
        (report.updated if relative in existing else report.added).append(relative)
        if error:
            report.errors[relative] = error
    gone = set(existing) - {str(p.relative_to(directory)) for p in files}
    if gone:
        await session.execute(delete(Runbook).where(Runbook.path.in_(gone)))
        report.removed.extend(sorted(gone))
    await session.commit()
    return report


async def _key_taken(session: AsyncSession, key: str, path: str) -> bool:
    return bool(await session.scalar(select(Runbook.id).where(Runbook.key == key, Runbook.path != path)))


@dataclass(frozen=True)
class Found:
    runbook: Runbook
    snippet: Markup | None = None


def _snippet(raw: str | None) -> Markup | None:
    """ts_headline returns document text: escape it, then turn our sentinels into <mark>."""
    if not raw:
        return None
    escaped = str(escape(raw))
    return Markup(  # noqa: S704 - every character of the text was escaped above
        escaped.replace(_MARK_START, "<mark>").replace(_MARK_STOP, "</mark>")
    )


SNIPPETS = 25  # highlighting re-reads each body: only for the results a reader looks at first
LISTED_COLUMNS = (
    Runbook.key,
    Runbook.path,
    Runbook.title,
    Runbook.tags,
    Runbook.owner,
    Runbook.updated,
    Runbook.services,
    Runbook.error,
)


async def find_runbooks(
    session: AsyncSession,
    *,
    q: str | None = None,
    tag: str | None = None,
    service: str | None = None,
    limit: int = 100,
) -> list[Found]:
    """The library: by title, or ranked by full-text relevance with highlighted snippets."""
    query = select(Runbook).options(load_only(*LISTED_COLUMNS))
    if tag:
        query = query.where(Runbook.tags.contains([tag]))
    if service:
        query = query.where(Runbook.services.contains([service.lower()]))
    words = (q or "").strip()
    if len(words) > 200:
        raise InvalidInput("Search for at most 200 characters.", field="q")
    if not words:
        rows = await session.scalars(query.order_by(func.lower(Runbook.title)).limit(limit))
        return [Found(r) for r in rows]
    tsquery = func.websearch_to_tsquery("english", words)
    matches = literal_column("runbooks.search").op("@@")(tsquery)
    rank = func.ts_rank_cd(literal_column("runbooks.search"), tsquery)
    by_key = await session.scalar(query.where(Runbook.key == words))
    ranked = [
        r
        for r in await session.scalars(query.where(matches).order_by(rank.desc(), Runbook.title).limit(limit))
    ]
    found = ([by_key] if by_key else []) + [r for r in ranked if r is not by_key]
    headline = func.ts_headline(
        "english",
        Runbook.body,
        tsquery,
        f"StartSel={_MARK_START}, StopSel={_MARK_STOP}, MaxWords=30, MinWords=12, MaxFragments=2",
    )
    ids = [r.id for r in found[:SNIPPETS]]
    snippets = (
        dict((await session.execute(select(Runbook.id, headline).where(Runbook.id.in_(ids)))).all())
        if ids
        else {}
    )
    return [Found(r, _snippet(snippets.get(r.id))) for r in found[:limit]]


async def all_tags_and_services(session: AsyncSession) -> tuple[list[str], list[str]]:
    tags = await session.scalars(select(func.unnest(Runbook.tags)).distinct())
    services = await session.scalars(select(func.unnest(Runbook.services)).distinct())
    return sorted(tags), sorted(services)


async def get_runbook(session: AsyncSession, *, key: str) -> Runbook:
    runbook = await session.scalar(select(Runbook).where(Runbook.key == key))
    if runbook is None:
        raise NotFound(f"No runbook {key}.")
    return runbook


async def suggest_for_incident(
    session: AsyncSession, *, services: list[str], limit: int = 5
) -> list[Runbook]:
    """Runbooks whose services or tags name one of the incident's services."""
    if not services:
        return []
    rows = await session.scalars(
        select(Runbook)
        .where(
            Runbook.error.is_(None), or_(Runbook.services.overlap(services), Runbook.tags.overlap(services))
        )
        .order_by(Runbook.key)
        .limit(limit)
    )
    return list(rows)


async def attach_to_incident(session: AsyncSession, *, actor: User, ref: str, key: str) -> None:
    """Record on the incident's timeline that this runbook is being followed."""
    runbook = await get_runbook(session, key=key)
    await incidents.record_runbook(session, actor=actor, ref=ref, key=runbook.key, title=runbook.title)
