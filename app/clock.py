"""The one clock. Everything that needs "now" asks here, so tests can move time."""

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Replace the clock (tests, and demo data that needs a past); None restores the system clock."""
    global _source
    _source = source if source is not None else (lambda: datetime.now(UTC))
