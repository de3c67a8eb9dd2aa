"""Senders' payloads -> normalised alerts. Pure functions: no database, no configuration I/O.

Each adapter reads the whole delivery before anything is stored and raises InvalidPayload naming
the first problem (`alerts[2].labels: ...`), so a bad delivery is refused whole. Unknown keys are
accepted and kept in `raw`.
"""

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from app.alerts.config import RESOLVED_WORDS, Source
from app.errors import DomainError

MAX_TITLE = 1024  # PagerDuty's summary limit; longer text stays in the annotations
MAX_DEDUP_KEY = 255
TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|z|UTC|[+-]\d{2}:?\d{2})?$"
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
    extra: dict[str, object] = field(default_factory=dict)


def parse_timestamp(value: object, *, where: str) -> datetime | None:
    """RFC 3339 with 0-9 fractional digits, Z, +02:00 or +0000; Go's zero time is None."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidPayload(f"{where}: give a timestamp string such as 2026-06-30T08:15:42Z", field=where)
    found = TIMESTAMP.match(value.strip())
    if not found:
        raise InvalidPayload(f"{where}: {value[:40]!r} is not an RFC 3339 timestamp", field=where)
    year, month, day, hour, minute, second, fraction, offset = found.groups()
    if int(year) <= 1:
        return None  # 0001-01-01T00:00:00Z: "unset" in Go
    tz = UTC
    if offset and offset not in ("Z", "z", "UTC"):
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
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
    except ValueError as exc:
        raise InvalidPayload(f"{where}: {value[:40]!r} is not a valid time ({exc})", field=where) from None
    return moment.astimezone(UTC)


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def check_storable(payload: object) -> None:
    """PostgreSQL's JSONB cannot hold a NUL character: refuse it by name rather than fail later."""
    if _has_nul(payload):
        raise InvalidPayload("The payload contains a NUL character (\\u0000), which cannot be stored.")


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
            )
        )
    return found


def parse_grafana(payload: object) -> list[NormalisedAlert]:
    """Grafana unified alerting: Alertmanager's shape plus title, state, message, values."""
    return parse_alertmanager(payload, grafana=True)


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
    links: list[dict[str, str]] = []
    for n, item in enumerate(payload.get("links") or []):
        if not isinstance(item, dict) or not isinstance(item.get("href"), str):
            raise InvalidPayload(f"links[{n}].href: required", field=f"links[{n}].href")
        if link := _link(item["href"], str(item.get("text") or item["href"])):
            links.append(link)
    for n, item in enumerate(payload.get("images") or []):
        if not isinstance(item, dict) or not isinstance(item.get("src"), str):
            raise InvalidPayload(f"images[{n}].src: required", field=f"images[{n}].src")
        if link := _link(item.get("href") or item["src"], str(item.get("alt") or "Image")):
            links.append(link)
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
