"""Senders' payloads -> normalised alerts. Pure functions: no database, no configuration I/O.

Each adapter reads the whole delivery before anything is stored and raises InvalidPayload naming
the first problem (`alerts[2].labels: ...`), so a bad delivery is refused whole. Unknown keys are
accepted and kept in `raw`. What JSON allows but no store keeps (nesting past MAX_DEPTH, an
integer of thousands of digits, NaN, a lone surrogate, a NUL) is refused by its path first.
"""

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from app.alerts.config import RESOLVED_WORDS, Source
from app.errors import DomainError

MAX_TITLE = 1024  # PagerDuty's summary limit; longer text stays in the annotations
MAX_DEDUP_KEY = 255
# Real payloads nest 4 to 8 levels; far deeper, a recursive reader (Python's json among them)
# runs out of stack. No sender's number type holds an integer of more than 64 digits.
MAX_DEPTH = 64
MAX_INT_DIGITS = 64
TIMESTAMP = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
    r"\s*(Z|z|UTC|[+-][0-9]{2}:?[0-9]{2})?$"
)
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_. /-]{0,63}$")
PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")


class InvalidPayload(DomainError):
    """The delivery is JSON but not the sender's documented shape."""

    status_code = 422
    code = "invalid_payload"


@dataclass
class NormalisedAlert:
    dedup_key: str
    fingerprint: str | None
    group_key: str | None
    status: str  # firing | resolved
    title: str
    severity: str
    labels: dict[str, str]
    annotations: dict[str, str]
    links: list[dict[str, str]]
    raw: dict[str, object]
    starts_at: datetime | None
    ends_at: datetime | None
    event: str | None = None  # PagerDuty: trigger | acknowledge | resolve
    group_title: str | None = None  # what an incident declared for the alert's group is called
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class NormalisedChange:
    """A PagerDuty change event: something changed (a deploy, a config push); nothing is wrong."""

    summary: str
    origin: str | None  # payload.source: where the change happened
    occurred_at: datetime | None
    custom_details: dict[str, object]
    labels: dict[str, str]  # what routing rules match: `source` and the plain custom details
    links: list[dict[str, str]]
    raw: dict[str, object]


def printable(text: str) -> str:
    """Text safe in a message, a page or a database row: control characters (NUL among them)
    and lone surrogates written as escapes."""
    return re.sub("[\x00-\x1f\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text)


def parse_timestamp(value: object, *, where: str) -> datetime | None:
    """RFC 3339 with 0-9 fractional digits, Z, +02:00 or +0000; Go's zero time is None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{where}: give a timestamp string such as 2026-06-30T08:15:42Z", field=where)
    shown = printable(value[:40])
    found = TIMESTAMP.match(value.strip())
    if not found:
        raise InvalidPayload(f"{where}: {shown!r} is not an RFC 3339 timestamp", field=where)
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    if int(year) == 0:
        raise InvalidPayload(f"{where}: {shown!r} is in year 0, which has no date", field=where)
    if int(year) == 1:
        return None  # 0001-01-01T00:00:00Z: "unset" in Go
    tz = UTC
    if offset and offset not in ("Z", "z", "UTC"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise InvalidPayload(
                f"{where}: {shown!r} has the offset {offset}; an offset is -23:59 to +23:59", field=where
            )
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0").ljust(6, "0")[:6]),
            tzinfo=tz,
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidPayload(f"{where}: {shown!r} is not a valid time ({exc})", field=where) from None


# ---------------------------------------------------------------- what no store keeps


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


# json.loads(body, **JSON_NUMBERS): numbers read without ever raising.
JSON_NUMBERS = {"parse_int": _read_int, "parse_float": _read_float, "parse_constant": Unstorable}
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))


def too_deep_at(body: bytes) -> str | None:
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
    Unstorable) rather than fail later. The reader has bounded the depth (too_deep_at)."""
    if found := _first_unstorable(payload):
        parts, problem = found
        where = ""
        for part in reversed(parts):
            where = where + part if part == " (its name)" else _join(where, part)
        where = where or "body"
        raise InvalidPayload(f"{where}: {problem}.", field=where)


def _string_map(value: object, *, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidPayload(f"{where}: give an object of names to strings", field=where)
    out = {}
    for key, item in value.items():
        if isinstance(item, dict | list):
            out[str(key)] = json.dumps(item, ensure_ascii=False, sort_keys=True)
        elif item is None:
            out[str(key)] = ""
        else:
            out[str(key)] = item if isinstance(item, str) else json.dumps(item)
    return out


def labels_hash(labels: dict[str, str]) -> str:
    """A stable hash of a label set: the same labels in any order give the same hash."""
    canonical = json.dumps(sorted(labels.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def alert_identity(fingerprint: str | None, labels: dict[str, str]) -> str:
    """The dedup key: the sender's fingerprint and the labels together, else the labels alone.

    Real senders disagree with themselves: two alerts with one fingerprint and different labels,
    or one label set under two fingerprints (see the corpus README). Neither alone is unique.
    """
    digest = labels_hash(labels)
    if fingerprint:
        return f"{fingerprint[:200]}:{digest[:16]}"
    return f"labels:{digest}"


def service_name(value: str | None) -> str | None:
    """A label value usable as an incident's service name, else None."""
    name = (value or "").strip().lower()
    return name if SERVICE_NAME.match(name) else None


def _link(href: object, text: str) -> dict[str, str] | None:
    if isinstance(href, str) and re.match(r"^https?://[^\s]+$", href.strip()):
        return {"href": href.strip(), "text": text}
    return None


def _title(*candidates: object) -> str:
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            text = " ".join(candidate.split())
            return text if len(text) <= MAX_TITLE else text[: MAX_TITLE - 1] + "…"
    return "Untitled alert"


def _status(value: object, *, where: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value.lower() not in ("firing", "resolved"):
        raise InvalidPayload(f"{where}: {str(value)[:40]!r} is not 'firing' or 'resolved'", field=where)
    return value.lower()


def _group_title(
    count: int,
    common_annotations: dict[str, str],
    group_labels: dict[str, str],
    common_labels: dict[str, str],
) -> str | None:
    """What Alertmanager's own templates call a group: its common summary, else its group labels
    ("CheckoutDown (service=checkout)"). None for a lone alert, whose own title says it."""
    if summary := common_annotations.get("summary", "").strip():
        return _title(summary)
    name = group_labels.get("alertname") or ""
    others = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items()) if k != "alertname")
    if name or others:
        return _title(f"{name} ({others})" if name and others else name or others)
    if count > 1 and common_labels.get("alertname"):
        return _title(common_labels["alertname"])
    return None


def parse_alertmanager(payload: object, *, grafana: bool = False) -> list[NormalisedAlert]:
    """Alertmanager's webhook (version 4, and older shapes) or Grafana's, which follows it."""
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object with an 'alerts' list.")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidPayload("alerts: the payload has no 'alerts' list.", field="alerts")
    group_status = _status(payload.get("status"), where="status")
    common_labels = _string_map(payload.get("commonLabels"), where="commonLabels")
    common_annotations = _string_map(payload.get("commonAnnotations"), where="commonAnnotations")
    group_labels = _string_map(payload.get("groupLabels"), where="groupLabels")
    group_key = payload.get("groupKey") if isinstance(payload.get("groupKey"), str) else None
    if not group_key and group_labels:
        group_key = json.dumps(sorted(group_labels.items()), ensure_ascii=False)
    context = {k: v for k, v in payload.items() if k != "alerts"}
    group_title = _group_title(len(alerts), common_annotations, group_labels, common_labels)
    found = []
    for n, alert in enumerate(alerts):
        where = f"alerts[{n}]"
        if not isinstance(alert, dict):
            raise InvalidPayload(f"{where}: give an object", field=where)
        labels = _string_map(alert.get("labels"), where=f"{where}.labels")
        annotations = _string_map(alert.get("annotations"), where=f"{where}.annotations")
        status = _status(alert.get("status"), where=f"{where}.status") or group_status
        if status is None:
            missing = "" if "alertname" in labels else "; it has no alertname label either"
            raise InvalidPayload(
                f"{where}.status: missing, and the payload has no group 'status'{missing}",
                field=f"{where}.status",
            )
        fingerprint = alert.get("fingerprint")
        if fingerprint is not None and not isinstance(fingerprint, str):
            raise InvalidPayload(f"{where}.fingerprint: give a string", field=f"{where}.fingerprint")
        starts_at = parse_timestamp(alert.get("startsAt"), where=f"{where}.startsAt")
        ends_at = parse_timestamp(alert.get("endsAt"), where=f"{where}.endsAt")
        links = [
            link
            for link in (
                _link(alert.get("generatorURL"), "Source"),
                _link(annotations.get("runbook_url") or common_annotations.get("runbook_url"), "Runbook"),
                _link(alert.get("dashboardURL"), "Dashboard"),
                _link(alert.get("panelURL"), "Panel"),
                _link(alert.get("silenceURL"), "Silence"),
                _link(alert.get("imageURL"), "Image"),
            )
            if link
        ]
        found.append(
            NormalisedAlert(
                dedup_key=alert_identity(fingerprint or None, labels),
                fingerprint=fingerprint or None,
                group_key=group_key or None,
                status=status,
                title=_title(
                    annotations.get("summary"),
                    labels.get("alertname"),
                    common_annotations.get("summary"),
                    common_labels.get("alertname"),
                    annotations.get("message"),
                    annotations.get("description"),
                    payload.get("title") if grafana else None,
                ),
                severity=(labels.get("severity") or common_labels.get("severity") or "").strip().lower()[:64],
                labels=labels,
                annotations=annotations,
                links=links,
                raw={**context, "alerts": [alert]},
                starts_at=starts_at,
                ends_at=ends_at if status == "resolved" else None,
                group_title=group_title,
            )
        )
    return found


def parse_grafana(payload: object) -> list[NormalisedAlert]:
    """Grafana unified alerting: Alertmanager's shape plus title, state, message, values."""
    return parse_alertmanager(payload, grafana=True)


def _pagerduty_links(payload: dict) -> list[dict[str, str]]:
    """An event's `links` ({href, text}) and `images` ({src, href, alt}) as links; http(s) only."""
    links: list[dict[str, str]] = []
    for name, required in (("links", "href"), ("images", "src")):
        items = payload.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            raise InvalidPayload(f"{name}: give a list of objects", field=name)
        for n, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get(required), str):
                raise InvalidPayload(f"{name}[{n}].{required}: required", field=f"{name}[{n}].{required}")
            if name == "links":
                link = _link(item["href"], str(item.get("text") or item["href"]))
            else:
                link = _link(item.get("href") or item["src"], str(item.get("alt") or "Image"))
            if link:
                links.append(link)
    return links


def parse_pagerduty(payload: object) -> NormalisedAlert:
    """One PagerDuty Events API v2 event (trigger, acknowledge or resolve)."""
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object (a PagerDuty Events API v2 event).")
    action = payload.get("event_action")
    if action not in PD_ACTIONS:
        raise InvalidPayload(
            f"event_action: {str(action)[:40]!r} is not one of trigger, acknowledge, resolve",
            field="event_action",
        )
    dedup = payload.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > MAX_DEDUP_KEY):
        raise InvalidPayload("dedup_key: give a string of at most 255 characters", field="dedup_key")
    body = payload.get("payload")
    if action != "trigger":
        if not dedup:
            raise InvalidPayload(f"dedup_key: required for {action} events", field="dedup_key")
        if body is not None and not isinstance(body, dict):
            raise InvalidPayload("payload: give an object", field="payload")
        body = body or {}
    else:
        if not isinstance(body, dict):
            raise InvalidPayload("payload: required for trigger events", field="payload")
        for name in ("summary", "source", "severity"):
            if not isinstance(body.get(name), str) or not body[name].strip():
                raise InvalidPayload(f"payload.{name}: required for trigger events", field=f"payload.{name}")
        if body["severity"] not in PD_SEVERITIES:
            raise InvalidPayload(
                f"payload.severity: {body['severity'][:40]!r} is not one of {', '.join(PD_SEVERITIES)}",
                field="payload.severity",
            )
    labels = {
        name: str(body[name])
        for name in ("source", "severity", "component", "group", "class")
        if isinstance(body.get(name), str | int | float) and str(body[name])
    }
    annotations = _string_map(body.get("custom_details"), where="payload.custom_details")
    if isinstance(body.get("summary"), str):
        annotations = {"summary": body["summary"], **annotations}
    links = _pagerduty_links(payload)
    if link := _link(payload.get("client_url"), str(payload.get("client") or "Sender")):
        links.append(link)
    if not dedup:
        # PagerDuty would make up a key; a stable one lets a retried trigger stay one alert.
        identity = {k: labels.get(k, "") for k in ("source", "component", "group", "class")}
        identity["summary"] = str(body.get("summary", ""))
        dedup = "icc-" + labels_hash(identity)[:32]
    return NormalisedAlert(
        dedup_key=dedup,
        fingerprint=dedup,
        group_key=labels.get("group") or None,
        status="resolved" if action == "resolve" else "firing",
        title=_title(body.get("summary"), f"PagerDuty event {dedup}"),
        severity=str(body.get("severity", "")).lower(),
        labels=labels,
        annotations=annotations,
        links=links,
        raw=payload,
        starts_at=parse_timestamp(body.get("timestamp"), where="payload.timestamp"),
        ends_at=None,
        event=str(action),
    )


def parse_pagerduty_change(payload: object) -> NormalisedChange:
    """One PagerDuty change event (Events API v2, /v2/change/enqueue): payload.summary required;
    source, timestamp, custom_details and links optional."""
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object (a PagerDuty change event).")
    body = payload.get("payload")
    if not isinstance(body, dict):
        raise InvalidPayload("payload: required (an object with at least a summary)", field="payload")
    summary = body.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise InvalidPayload("payload.summary: required", field="payload.summary")
    origin = body.get("source")
    if origin is not None and not isinstance(origin, str):
        raise InvalidPayload("payload.source: give a string", field="payload.source")
    labels = _string_map(body.get("custom_details"), where="payload.custom_details")
    if origin:
        labels["source"] = origin
    return NormalisedChange(
        summary=_title(summary),
        origin=origin or None,
        occurred_at=parse_timestamp(body.get("timestamp"), where="payload.timestamp"),
        custom_details=body.get("custom_details") or {},
        labels=labels,
        links=_pagerduty_links(payload),
        raw=payload,
    )


def _path(payload: object, path: str) -> object:
    value = payload
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def parse_generic(payload: object, source: Source) -> list[NormalisedAlert]:
    """Any JSON object (or a list of them), read through the source's field paths."""
    items = payload if isinstance(payload, list) else [payload]
    found = []
    for n, item in enumerate(items):
        where = f"[{n}]" if isinstance(payload, list) else "body"
        if not isinstance(item, dict):
            raise InvalidPayload(f"{where}: give a JSON object", field=where)
        fields = source.fields

        def get(name: str, item: dict = item, fields: dict = fields) -> object:
            return _path(item, fields[name])

        title = get("title")
        if not isinstance(title, str) or not title.strip():
            raise InvalidPayload(
                f"{fields['title']}: required (the alert's title; set [alerts.sources.{source.name}] fields)",
                field=fields["title"],
            )
        labels = _string_map(get("labels"), where=fields["labels"])
        raw_status = get("status")
        status = "firing"
        if raw_status is not None:
            if not isinstance(raw_status, str | bool):
                raise InvalidPayload(f"{fields['status']}: give a string", field=fields["status"])
            word = str(raw_status).lower()
            status = "resolved" if word in RESOLVED_WORDS or raw_status is False else "firing"
        key = get("dedup_key")
        if key is not None and not isinstance(key, str | int):
            raise InvalidPayload(f"{fields['dedup_key']}: give a string", field=fields["dedup_key"])
        fingerprint = str(key)[:MAX_DEDUP_KEY] if key not in (None, "") else None
        identity = fingerprint or "labels:" + labels_hash({**labels, "\x1ftitle": title.strip()})
        severity = get("severity")
        group = get("group_key")
        found.append(
            NormalisedAlert(
                dedup_key=identity,
                fingerprint=fingerprint,
                group_key=str(group) if group not in (None, "") else None,
                status=status,
                title=_title(title),
                severity=str(severity).lower()[:64]
                if severity not in (None, "")
                else labels.get("severity", ""),
                labels=labels,
                annotations=_string_map(get("annotations"), where=fields["annotations"]),
                links=[link for link in (_link(get("url"), "Source"),) if link],
                raw=item,
                starts_at=parse_timestamp(get("starts_at"), where=fields["starts_at"]),
                ends_at=parse_timestamp(get("ends_at"), where=fields["ends_at"])
                if status == "resolved"
                else None,
            )
        )
    return found
