"""Input types every JSON body, query, path and form parameter is built from, so each refusal
happens where the input enters and names its field (app/web.py renders the 422)."""

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

# PostgreSQL text holds neither NUL nor an unpaired UTF-16 surrogate (JSON's "\ud800" decodes
# to one; it has no UTF-8 form, so the driver could not even send it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store this text, or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character"
    return f"contains a lone surrogate ({found.group()!r}), which is not text"


def _storable(value: str) -> str:
    if problem := unstorable(value):
        raise PydanticCustomError("unstorable_text", problem)
    return value


def _within_utc_years(value: datetime) -> datetime:
    # 9999-12-31T23:59-23:59 parses, but is in the year 10000 once in UTC (timestamptz).
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise PydanticCustomError(
                "datetime_out_of_range", "is outside the years 1 to 9999 once converted to UTC"
            ) from None
    return value


Text = Annotated[str, AfterValidator(_storable)]
Timestamp = Annotated[datetime, AfterValidator(_within_utc_years)]


class Strict(BaseModel):
    """An input body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
