"""PagerDuty Events API v2 payloads -> a normalised alert (trigger, acknowledge, resolve) or a
normalised change event. Pure functions, as the other adapters."""

from app.alerts.adapters import (
    MAX_DEDUP_KEY,
    NormalisedAlert,
    NormalisedChange,
    first_title,
    http_link,
    labels_hash,
    parse_timestamp,
    string_map,
)
from app.alerts.errors import InvalidPayload

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


def _links(payload: dict) -> list[dict[str, str]]:
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
                link = http_link(item["href"], str(item.get("text") or item["href"]))
            else:
                link = http_link(item.get("href") or item["src"], str(item.get("alt") or "Image"))
            if link:
                links.append(link)
    return links


def _checked_event(payload: object) -> tuple[dict, str, str | None, dict]:
    """The event, its action, dedup key and payload, or InvalidPayload naming the first problem."""
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object (a PagerDuty Events API v2 event).")
    action = payload.get("event_action")
    if action not in ACTIONS:
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
        return payload, action, dedup, body or {}
    if not isinstance(body, dict):
        raise InvalidPayload("payload: required for trigger events", field="payload")
    for name in ("summary", "source", "severity"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            raise InvalidPayload(f"payload.{name}: required for trigger events", field=f"payload.{name}")
    if body["severity"] not in SEVERITIES:
        raise InvalidPayload(
            f"payload.severity: {body['severity'][:40]!r} is not one of {', '.join(SEVERITIES)}",
            field="payload.severity",
        )
    return payload, action, dedup, body


def parse_event(payload: object) -> NormalisedAlert:
    """One PagerDuty Events API v2 event (trigger, acknowledge or resolve)."""
    event, action, dedup, body = _checked_event(payload)
    labels = {
        name: str(body[name])
        for name in ("source", "severity", "component", "group", "class")
        if isinstance(body.get(name), str | int | float) and str(body[name])
    }
    annotations = string_map(body.get("custom_details"), where="payload.custom_details")
    if isinstance(body.get("summary"), str):
        annotations = {"summary": body["summary"], **annotations}
    links = _links(event)
    if link := http_link(event.get("client_url"), str(event.get("client") or "Sender")):
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
        title=first_title(body.get("summary"), f"PagerDuty event {dedup}"),
        severity=str(body.get("severity", "")).lower(),
        labels=labels,
        annotations=annotations,
        links=links,
        raw=event,
        starts_at=parse_timestamp(body.get("timestamp"), where="payload.timestamp"),
        ends_at=None,
        event=str(action),
    )


def parse_change(payload: object) -> NormalisedChange:
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
    labels = string_map(body.get("custom_details"), where="payload.custom_details")
    if origin:
        labels["source"] = origin
    return NormalisedChange(
        summary=first_title(summary),
        origin=origin or None,
        occurred_at=parse_timestamp(body.get("timestamp"), where="payload.timestamp"),
        custom_details=body.get("custom_details") or {},
        labels=labels,
        links=_links(payload),
        raw=payload,
    )
