"""Numbers for the severity dashboard: what is active now, and trends over a window.

MTTA is declared → acknowledged; MTTR is declared → resolved. Both are computed by PostgreSQL
(percentile_cont) over the incidents declared in the window, read through an index on
declared_at that covers the columns they need, so the cost follows the window, not the history.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.incidents import service as incidents
from app.incidents.models import Incident

WINDOWS = (30, 90)


@dataclass(frozen=True)
class Durations:
    severity: str
    count: int
    median_seconds: float | None
    p90_seconds: float | None


@dataclass(frozen=True)
class Trends:
    days: int
    since: datetime
    weeks: list[datetime]
    per_week: dict[datetime, dict[str, int]]
    mtta: list[Durations]
    mttr: list[Durations]
    total: int

    @property
    def busiest_week(self) -> int:
        return max((sum(v.values()) for v in self.per_week.values()), default=0)


async def trends(session: AsyncSession, *, days: int, service: str | None = None) -> Trends:
    """Incidents per week by severity, and MTTA/MTTR per severity (median and p90)."""
    now = clock.now()
    since = now - timedelta(days=days)
    window = [Incident.declared_at >= since]
    if service:
        window.append(Incident.services.contains([service.strip().lower()]))
    week = func.date_trunc("week", Incident.declared_at).label("week")
    per_week: dict[datetime, dict[str, int]] = {}
    for start, severity, count in await session.execute(
        select(week, Incident.severity, func.count()).where(*window).group_by(week, Incident.severity)
    ):
        per_week.setdefault(start, {})[severity] = count
    first_week = (since - timedelta(days=since.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    weeks = []
    cursor = first_week
    while cursor <= now:
        weeks.append(cursor)
        cursor += timedelta(weeks=1)
    per_week = {w: per_week.get(w, {}) for w in weeks} | {w: v for w, v in per_week.items() if w not in weeks}

    async def durations(end_column) -> list[Durations]:
        seconds = extract("epoch", end_column - Incident.declared_at)
        rows = await session.execute(
            select(
                Incident.severity,
                func.count(),
                func.percentile_cont(0.5).within_group(seconds),
                func.percentile_cont(0.9).within_group(seconds),
            )
            .where(*window, end_column.is_not(None))
            .group_by(Incident.severity)
            .order_by(Incident.severity)
        )
        found = {sev: Durations(sev, n, med, p90) for sev, n, med, p90 in rows}
        return [found.get(s.key, Durations(s.key, 0, None, None)) for s in incidents.severities()]

    total = await session.scalar(select(func.count()).select_from(Incident).where(*window))
    return Trends(
        days=days,
        since=since,
        weeks=sorted(per_week),
        per_week=per_week,
        mtta=await durations(Incident.acknowledged_at),
        mttr=await durations(Incident.resolved_at),
        total=total or 0,
    )
