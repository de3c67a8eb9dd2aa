"""The scribe's shorthand in the timeline box: `/d` decision, `/a` action, `/n` note, and
`@14:02` to say when it happened (in the scribe's own time zone)."""

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.errors import InvalidInput

KIND_PREFIXES = {"/n": "note", "/d": "decision", "/a": "action"}
_PREFIX = re.compile(r"^\s*(/[nda])(?:\s+|$)", re.IGNORECASE)
_AT = re.compile(r"^\s*@(\d{1,2}):(\d{2})(?:\s+|$)")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _at_time(hour: int, minute: int, zone: ZoneInfo, now: datetime) -> datetime:
    if hour > 23 or minute > 59:
        raise InvalidInput(f"{hour}:{minute:02d} is not a time of day.", field="at")
    local_now = now.astimezone(zone)
    when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when > local_now + timedelta(minutes=2):
        when -= timedelta(days=1)  # "@23:50" typed just after midnight means yesterday
    return when


def parse_entry(
    text: str, *, kind: str, at: str | None, tz: str | None, now: datetime
) -> tuple[str, str, datetime | None]:
    """Return (kind, body, occurred_at) from what the scribe typed and chose."""
    occurred_at = None
    if match := _PREFIX.match(text):
        kind = KIND_PREFIXES[match.group(1).lower()]
        text = text[match.end() :]
    if match := _AT.match(text):
        occurred_at = _at_time(int(match.group(1)), int(match.group(2)), _zone(tz), now)
        text = text[match.end() :]
    if at and at.strip():
        clock_match = _CLOCK.match(at.strip())
        if not clock_match:
            raise InvalidInput(f"{at!r} is not a time: use HH:MM.", field="at")
        occurred_at = _at_time(int(clock_match.group(1)), int(clock_match.group(2)), _zone(tz), now)
    return kind, text, occurred_at
