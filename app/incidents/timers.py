"""SLA deadlines and timer states, derived from stored timestamps and the severity policy.

Deadlines are data: the service stores `ack_due_at`, `mitigation_due_at` and `update_due_at`
on the incident whenever something that moves them happens, so a page, the API and a future
escalation worker all read the same answer, and nothing depends on a timer in a process.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from app.config import SeverityPolicy

TimerState = Literal["running", "met", "breached"]


@dataclass(frozen=True)
class Timer:
    key: Literal["ack", "mitigation", "next_update"]
    label: str
    started_at: datetime
    due_at: datetime
    met_at: datetime | None
    state: TimerState


def add_business_days(start: datetime, days: int) -> datetime:
    """The same time of day, `days` weekdays (Monday to Friday, UTC) later."""
    result = start
    counted = 0
    while counted < days:
        result += timedelta(days=1)
        if result.weekday() < 5:
            counted += 1
    return result


def ack_deadline(policy: SeverityPolicy, start: datetime) -> datetime | None:
    if policy.ack_business_days:
        return add_business_days(start, policy.ack_business_days)
    return start + policy.ack_sla if policy.ack_sla else None


def mitigation_deadline(policy: SeverityPolicy, start: datetime) -> datetime | None:
    return start + policy.mitigation_sla if policy.mitigation_sla else None


def update_deadline(policy: SeverityPolicy, start: datetime) -> datetime | None:
    return start + policy.update_cadence if policy.update_cadence else None


def timer_state(due_at: datetime, met_at: datetime | None, now: datetime) -> TimerState:
    """Met if stopped in time; breached if stopped late or still running past its deadline."""
    if met_at is not None:
        return "met" if met_at <= due_at else "breached"
    return "running" if now < due_at else "breached"


def make_timer(
    key: Literal["ack", "mitigation", "next_update"],
    label: str,
    started_at: datetime,
    due_at: datetime | None,
    met_at: datetime | None,
    now: datetime,
) -> Timer | None:
    if due_at is None:
        return None
    return Timer(key, label, started_at, due_at, met_at, timer_state(due_at, met_at, now))


def most_urgent(timers: Iterable[Timer | None]) -> Timer | None:
    """The timer to look at first: breached before running, then the nearest deadline."""
    live = [t for t in timers if t and t.met_at is None]
    if not live:
        return None
    return min(live, key=lambda t: (t.state != "breached", t.due_at))
