"""A delivery's body read as JSON, within bounds: what JSON allows but no store keeps is refused
by its path before anything is stored.

Python's json recurses (a 1,000-deep body is a RecursionError) and refuses integers of more than
4,300 digits; it accepts NaN, 1e999 and lone surrogates that PostgreSQL or the UTF-8 encoder then
refuse. So the depth is counted in the bytes first, numbers are read without ever raising, and
one walk over the parsed payload names the first NUL, lone surrogate or unkeepable number.
"""

import json
import math
import re

from app.alerts.errors import BadJson, InvalidPayload

# Real payloads nest 4 to 8 levels; far deeper, a recursive reader (Python's json among them)
# runs out of stack. No sender's number type holds an integer of more than 64 digits.
MAX_DEPTH = 64
MAX_INT_DIGITS = 64


def printable(text: str) -> str:
    """Text safe in a message, a page or a database row: control characters (NUL among them)
    and lone surrogates written as escapes."""
    return re.sub("[\x00-\x1f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


class Unstorable:
    """A number JSON allows and no store keeps (NaN, Infinity, 1e999, 5,000 digits). The reader
    puts this in its place, so that check_storable can name where it was."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _read_int(text: str) -> int | Unstorable:
    return int(text) if len(text) <= MAX_INT_DIGITS + 1 else Unstorable(text)


def _read_float(text: str) -> float | Unstorable:
    number = float(text)
    return number if math.isfinite(number) else Unstorable(text)


# json.loads(body, **_JSON_NUMBERS): numbers read without ever raising.
_JSON_NUMBERS = {"parse_int": _read_int, "parse_float": _read_float, "parse_constant": Unstorable}
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def _too_deep_at(body: bytes) -> str | None:
    """Where the body nests objects and arrays deeper than MAX_DEPTH, or None. Read from the
    bytes, before any parser recurses; the usual body has too few brackets to need a look."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return None
    # Cut the strings out at C speed: without escaped backslashes and quotes, the quotes left
    # alternate in and out of strings, as JSON reads them.
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    depth = 0
    for byte in b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > MAX_DEPTH:
            return _deep_path(body)
    return None


def _deep_path(body: bytes) -> str:
    # Rare, so plain: walk the tokens again, keeping the key or index inside each open container.
    stack: list[list] = []
    last = ""
    for token in _TOKENS.finditer(body):
        text = token.group()
        if text in (b"[", b"{"):
            if len(stack) == MAX_DEPTH:
                break
            stack.append([text, 0 if text == b"[" else ""])
        elif text in (b"]", b"}"):
            if stack:
                stack.pop()
        elif text == b"," and stack and stack[-1][0] == b"[":
            stack[-1][1] += 1
        elif text == b":" and stack:
            stack[-1][1] = last
        elif text.startswith(b'"'):
            last = text[1:-1].decode("utf-8", "replace")
    path = ""
    for _, position in stack:
        path = _join(path, position)
    path = path or "body"
    return path if len(path) <= 120 else path[:119] + "…"


def _join(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    name = printable(part)[:64]
    return f"{path}.{name}" if path else name


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unstorable_text(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not text.isascii() and _SURROGATE.search(text):
        return "contains a lone surrogate (\\ud800 to \\udfff), which is not text: send UTF-8"
    return None


def _first_unstorable(value: object) -> tuple[list[str | int], str] | None:
    # The path is built only for the problem found (its parts innermost first): this walk runs
    # on every delivery of a storm.
    if isinstance(value, str):
        problem = _unstorable_text(value)
        return ([], problem) if problem else None
    if isinstance(value, dict):
        for key, item in value.items():
            if problem := _unstorable_text(key):
                return [" (its name)", key], problem
            if found := _first_unstorable(item):
                found[0].append(key)
                return found
    elif isinstance(value, list):
        for n, item in enumerate(value):
            if found := _first_unstorable(item):
                found[0].append(n)
                return found
    elif isinstance(value, Unstorable):
        digits = value.text.lstrip("-")
        what = f"an integer of {len(digits)} digits" if digits.isdigit() else repr(value.text[:24])
        kept = f"finite; integers up to {MAX_INT_DIGITS} digits"
        return [], f"{what} is not a number that can be kept ({kept})"
    return None


def check_storable(payload: object) -> None:
    """Refuse by its path what PostgreSQL cannot hold (a NUL, a lone surrogate, a number read as
    Unstorable) rather than fail later. parse_body has bounded the depth."""
    if found := _first_unstorable(payload):
        parts, problem = found
        where = ""
        for part in reversed(parts):
            where = where + part if part == " (its name)" else _join(where, part)
        where = where or "body"
        raise InvalidPayload(f"{where}: {problem}.", field=where)


def parse_body(body: bytes) -> object:
    """The delivery as JSON, or BadJson saying where it breaks. Its depth is checked before the
    parser recurses, and a number no store keeps is read as Unstorable (check_storable then
    names its field)."""
    if not body.strip():
        raise BadJson("The body is empty: send the alert payload as JSON.")
    if (where := _too_deep_at(body)) is not None:
        raise BadJson(
            f"{where}: the body nests objects and arrays deeper than {MAX_DEPTH} levels.", field=where
        )
    try:
        return json.loads(body, **_JSON_NUMBERS)
    except UnicodeDecodeError:
        raise BadJson("The body is not UTF-8 text.") from None
    except json.JSONDecodeError as exc:
        raise BadJson(
            f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}."
        ) from None
