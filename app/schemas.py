"""Input types every JSON body, query, path and form parameter is built from, so each refusal
happens where the input enters and names its field (app/web.py renders the 422).

The OpenAPI document says what each accepts as exactly as the server checks it (`Documented`):
the rules the services apply (a required text is not blank once trimmed, a status is one of
these) are written into the schema beside the field, so a client's generated validation and ours
agree."""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler
from pydantic_core import CoreSchema, PydanticCustomError

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


def _storable(value: object) -> object:
    # Before pydantic's own string check, which cannot read a lone surrogate (nor count one).
    if isinstance(value, str) and (problem := unstorable(value)):
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


# RFC 3339's date-time, as the document's `format: date-time` says: pydantic alone would also
# take a bare date, a time without an offset, or a number of seconds.
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def _rfc3339(value: object) -> object:
    if isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", "should be an RFC 3339 date-time with an offset, such as 2026-11-23T14:02:00Z"
        )
    return value


@dataclass(frozen=True, eq=False)
class Documented:
    """JSON Schema keywords for the OpenAPI document only: what a service checks itself, stated
    where the field is declared. `keywords` may be a function, for what the configuration decides
    (the severities, the status components)."""

    keywords: dict[str, Any] | Callable[[], dict[str, Any]]

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        schema = handler(core)
        schema.update(self.keywords() if callable(self.keywords) else self.keywords)
        return schema


def one_of(values: Iterable[str] | Callable[[], Iterable[str]]) -> Documented:
    """The values a service accepts for a field (`enum`)."""
    if callable(values):
        return Documented(lambda: {"enum": list(values())})
    return Documented({"enum": list(values)})


# The characters str.strip() removes, so "not blank once trimmed" is one pattern for every
# regular-expression engine (ECMA's, Python's and Rust's `\s` differ).
WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

Text = Annotated[str, BeforeValidator(_storable), Documented({"pattern": r"^[^\x00]*$"})]
# Text a service trims and requires (a title, a reason): something besides whitespace.
RequiredText = Annotated[Text, Documented({"pattern": rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"})]
Timestamp = Annotated[datetime, BeforeValidator(_rfc3339), AfterValidator(_within_utc_years)]


def limited(characters: int, text: Any = Text) -> Any:
    """`text` of at most `characters` characters, the limit on the string itself: an optional
    field (`limited(64) | None`) then says "String should have at most 64 characters" too."""
    # The limit goes first, on the string itself; `text`'s checks wrap it (surrogates first).
    return Annotated[(str, Field(max_length=characters), *text.__metadata__)]


class Strict(BaseModel):
    """An input body: unknown fields are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
