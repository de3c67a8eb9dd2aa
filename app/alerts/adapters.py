"""Alertmanager's, Grafana's and generic senders' payloads -> normalised alerts, and the shapes
and readers every adapter shares (PagerDuty's are app/alerts/pagerduty.py). Pure functions: no
database, no configuration I/O.

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
from app.alerts.errors import InvalidPayload
from app.alerts.json_body import printable

MAX_TITLE = 1024  # PagerDuty's summary limit; longer text stays in the annotations
MAX_DEDUP_KEY = 255
TIMESTAMP = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?"
    r"\s*(Z|z|UTC|[+-][0-9]{2}:?[0-9]{2})?$"
)
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9_. /-]{0,63}$")


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


def string_map(value: object, *, where: str) -> dict[str, str]:
    """An object of names to values as names to strings (nested values as JSON), or InvalidPayload."""
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


def http_link(href: object, text: str) -> dict[str, str] | None:
    """A link to show ({href, text}) when `href` is an http(s) URL, else None."""
    if isinstance(href, str) and re.match(r"^https?://[^\s]+$", href.strip()):
        return {"href": href.strip(), "text": text}
    return None


def first_title(*candidates: object) -> str:
    """The first candidate with text, on one line and at most MAX_TITLE long."""
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
        return first_title(summary)
    name = group_labels.get("alertname") or ""
    others = ", ".join(f"{k}={v}" for k, v in sorted(group_labels.items()) if k != "alertname")
    if name or others:
        return first_title(f"{name} ({others})" if name and others else name or others)
    if count > 1 and common_labels.get("alertname"):
        return first_title(common_labels["alertname"])
    return None


@dataclass(frozen=True)
class _Group:
    """What an Alertmanager delivery says of all its alerts."""

    status: str | None
    key: str | None
    title: str | None
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    context: dict[str, object]  # the payload but its alerts, kept in each alert's raw
    grafana_title: object


def parse_alertmanager(payload: object, *, grafana: bool = False) -> list[NormalisedAlert]:
    """Alertmanager's webhook (version 4, and older shapes) or Grafana's, which follows it."""
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object with an 'alerts' list.")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise InvalidPayload("alerts: the payload has no 'alerts' list.", field="alerts")
    status = _status(payload.get("status"), where="status")
    common_labels = string_map(payload.get("commonLabels"), where="commonLabels")
    common_annotations = string_map(payload.get("commonAnnotations"), where="commonAnnotations")
    group_labels = string_map(payload.get("groupLabels"), where="groupLabels")
    group_key = payload.get("groupKey") if isinstance(payload.get("groupKey"), str) else None
    if not group_key and group_labels:
        group_key = json.dumps(sorted(group_labels.items()), ensure_ascii=False)
    group = _Group(
        status=status,
        key=group_key or None,
        title=_group_title(len(alerts), common_annotations, group_labels, common_labels),
        common_labels=common_labels,
        common_annotations=common_annotations,
        context={k: v for k, v in payload.items() if k != "alerts"},
        grafana_title=payload.get("title") if grafana else None,
    )
    return [_alertmanager_alert(alert, f"alerts[{n}]", group) for n, alert in enumerate(alerts)]


def _alertmanager_alert(alert: object, where: str, group: _Group) -> NormalisedAlert:
    if not isinstance(alert, dict):
        raise InvalidPayload(f"{where}: give an object", field=where)
    labels = string_map(alert.get("labels"), where=f"{where}.labels")
    annotations = string_map(alert.get("annotations"), where=f"{where}.annotations")
    status = _status(alert.get("status"), where=f"{where}.status") or group.status
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
    common_labels, common_annotations = group.common_labels, group.common_annotations
    runbook = annotations.get("runbook_url") or common_annotations.get("runbook_url")
    links = [
        link
        for link in (
            http_link(alert.get("generatorURL"), "Source"),
            http_link(runbook, "Runbook"),
            http_link(alert.get("dashboardURL"), "Dashboard"),
            http_link(alert.get("panelURL"), "Panel"),
            http_link(alert.get("silenceURL"), "Silence"),
            http_link(alert.get("imageURL"), "Image"),
        )
        if link
    ]
    return NormalisedAlert(
        dedup_key=alert_identity(fingerprint or None, labels),
        fingerprint=fingerprint or None,
        group_key=group.key,
        status=status,
        title=first_title(
            annotations.get("summary"),
            labels.get("alertname"),
            common_annotations.get("summary"),
            common_labels.get("alertname"),
            annotations.get("message"),
            annotations.get("description"),
            group.grafana_title,
        ),
        severity=(labels.get("severity") or common_labels.get("severity") or "").strip().lower()[:64],
        labels=labels,
        annotations=annotations,
        links=links,
        raw={**group.context, "alerts": [alert]},
        starts_at=starts_at,
        ends_at=ends_at if status == "resolved" else None,
        group_title=group.title,
    )


def parse_grafana(payload: object) -> list[NormalisedAlert]:
    """Grafana unified alerting: Alertmanager's shape plus title, state, message, values."""
    return parse_alertmanager(payload, grafana=True)


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
        labels = string_map(get("labels"), where=fields["labels"])
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
                title=first_title(title),
                severity=str(severity).lower()[:64]
                if severity not in (None, "")
                else labels.get("severity", ""),
                labels=labels,
                annotations=string_map(get("annotations"), where=fields["annotations"]),
                links=[link for link in (http_link(get("url"), "Source"),) if link],
                raw=item,
                starts_at=parse_timestamp(get("starts_at"), where=fields["starts_at"]),
                ends_at=parse_timestamp(get("ends_at"), where=fields["ends_at"])
                if status == "resolved"
                else None,
            )
        )
    return found
