"""The alerts JSON API under /api/v1: the senders' endpoints, history, acknowledgement, links,
dead letters, change events; and PagerDuty's own Events API v2 paths (/v2/enqueue,
/v2/change/enqueue), which its clients find under a base URL. Thin: every rule is in the
package's service modules (intake, queries, triage, dead_letters, changes)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.alerts import changes, intake, queries, triage
from app.alerts import dead_letters as letters
from app.alerts.config import AlertConfig
from app.alerts.errors import InvalidEvent
from app.alerts.schemas import (
    AlertDetailOut,
    AlertId,
    AlertOut,
    AlertPage,
    ChangeEventOut,
    ChangeEventPage,
    DeadLetterOut,
    DeadLetterPage,
    IngestOut,
    LinkIn,
    PagerDutyChangeOut,
    PagerDutyErrorOut,
    PagerDutyOut,
)
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.errors import RateLimited
from app.incidents.schemas import RowId
from app.openapi import CHANGE, CHANGE_WITH_BODY, READ, READ_ONE, errors
from app.schemas import Timestamp, limited, one_of

api_v1 = APIRouter(prefix="/api/v1", tags=["alerts"])
events_api = APIRouter(tags=["alerts"])  # PagerDuty's paths, at the product's root


def _body(description: str, schema: dict[str, object] | None = None) -> dict[str, object]:
    """A sender's JSON body: any object in its own format, read as app/alerts/adapters.py reads it."""
    object_schema = {"type": "object", "additionalProperties": True, **(schema or {})}
    return {
        "required": True,
        "description": description,
        "content": {"application/json": {"schema": object_schema}},
    }


ANY_OBJECT = "Any JSON object (unknown keys are kept)"
ALERTMANAGER = {
    "requestBody": _body(ANY_OBJECT + ": Alertmanager's webhook payload (version 4)"),
    "security": [{"alertmanagerToken": []}, {"sourceBasicAuth": []}],
}
GRAFANA = {
    "requestBody": _body(ANY_OBJECT + ": Grafana's webhook contact point payload"),
    "security": [{"grafanaToken": []}, {"sourceBasicAuth": []}],
}
GENERIC = {
    "requestBody": _body(ANY_OBJECT + ", read through the source's field paths (icc.toml)"),
    "security": [{"alertSignature": []}],
    "parameters": [
        {
            "name": "X-ICC-Timestamp",
            "in": "header",
            "required": True,
            "description": "Unix seconds when it was signed: within 5 minutes of now",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    ],
}
PAGERDUTY_EVENT = {
    "requestBody": _body(
        "A PagerDuty Events API v2 event; its routing_key, one of the source's keys, is the credential",
        {
            "required": ["routing_key", "event_action"],
            "properties": {
                "routing_key": {"type": "string"},
                "event_action": {"type": "string", "enum": ["trigger", "acknowledge", "resolve"]},
                "dedup_key": {"type": "string"},
                "payload": {
                    "type": "object",
                    "description": "Required for a trigger: summary, source, severity",
                },
            },
        },
    )
}
PAGERDUTY_CHANGE = {
    "requestBody": _body(
        "A PagerDuty change event; its routing_key, one of the source's keys, is the credential",
        {
            "required": ["routing_key", "payload"],
            "properties": {"routing_key": {"type": "string"}, "payload": {"type": "object"}},
        },
    )
}
INTAKE_ERRORS = errors(400, 401, 404, 413, 422, 429)
GENERIC_ERRORS = errors(400, 401, 404, 409, 413, 422, 429)
# PagerDuty's paths answer in PagerDuty's words; only the size limit, before any route, is ours.
PAGERDUTY_ERRORS = {**errors(400, 429, model=PagerDutyErrorOut), **errors(413)}


def alert_config_of(request: Request) -> AlertConfig:
    return request.app.state.alert_config


ConfigDep = Annotated[AlertConfig, Depends(alert_config_of)]


async def _ingest(
    request: Request,
    session: SessionDep,
    config: AlertConfig,
    kind: str,
    source: str | None,
    *,
    events_api: bool = False,
) -> intake.IngestResult:
    return await intake.ingest_delivery(
        session,
        config=config,
        kind=kind,
        source_name=source,
        headers=request.headers,
        body=await request.body(),
        events_api=events_api,
    )


def _accepted(result: intake.IngestResult) -> IngestOut:
    return IngestOut(
        source=result.source,
        alerts=len(result.alert_ids),
        alert_ids=result.alert_ids,
        incidents=result.incidents,
    )


@api_v1.post(
    "/alerts/alertmanager", response_model=IngestOut, responses=INTAKE_ERRORS, openapi_extra=ALERTMANAGER
)
@api_v1.post(
    "/alerts/alertmanager/{source}",
    response_model=IngestOut,
    responses=INTAKE_ERRORS,
    openapi_extra=ALERTMANAGER,
)
async def alertmanager_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut:
    """Alertmanager's webhook_config payload; `Authorization: Bearer <token>` or basic auth."""
    return _accepted(await _ingest(request, session, config, "alertmanager", source))


@api_v1.post("/alerts/grafana", response_model=IngestOut, responses=INTAKE_ERRORS, openapi_extra=GRAFANA)
@api_v1.put("/alerts/grafana", response_model=IngestOut, responses=INTAKE_ERRORS, openapi_extra=GRAFANA)
@api_v1.post(
    "/alerts/grafana/{source}", response_model=IngestOut, responses=INTAKE_ERRORS, openapi_extra=GRAFANA
)
@api_v1.put(
    "/alerts/grafana/{source}", response_model=IngestOut, responses=INTAKE_ERRORS, openapi_extra=GRAFANA
)
async def grafana_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut:
    """Grafana unified alerting's webhook contact point (POST or PUT)."""
    return _accepted(await _ingest(request, session, config, "grafana", source))


@api_v1.post(
    "/alerts/pagerduty",
    status_code=202,
    response_model=PagerDutyOut,
    responses=INTAKE_ERRORS,
    openapi_extra=PAGERDUTY_EVENT,
)
@api_v1.post(
    "/alerts/pagerduty/{source}",
    status_code=202,
    response_model=PagerDutyOut,
    responses=INTAKE_ERRORS,
    openapi_extra=PAGERDUTY_EVENT,
)
async def pagerduty_event(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> PagerDutyOut:
    """A PagerDuty Events API v2 event; the routing_key is the credential. Answers 202 as
    PagerDuty does; refusals as the rest of this API. PagerDuty's clients use /v2/enqueue."""
    result = await _ingest(request, session, config, "pagerduty", source)
    return PagerDutyOut(dedup_key=result.dedup_keys[0])


def _pagerduty_refusal(exc: InvalidEvent | RateLimited) -> JSONResponse:
    """A refusal in PagerDuty's words: 400 "invalid event", or 429 with the error's Retry-After."""
    if isinstance(exc, RateLimited):
        body = PagerDutyErrorOut(status="rate limited", message=exc.message, errors=[exc.message])
    else:
        body = PagerDutyErrorOut(
            status="invalid event", message="Event object is invalid", errors=[exc.message]
        )
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)


@events_api.post(
    "/v2/enqueue",
    status_code=202,
    response_model=PagerDutyOut,
    responses=PAGERDUTY_ERRORS,
    openapi_extra=PAGERDUTY_EVENT,
)
@api_v1.post(
    "/alerts/pagerduty/{source}/v2/enqueue",
    status_code=202,
    response_model=PagerDutyOut,
    responses=PAGERDUTY_ERRORS,
    openapi_extra=PAGERDUTY_EVENT,
)
async def pagerduty_events_api(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> PagerDutyOut | Response:
    """PagerDuty's Events API v2 (trigger, acknowledge, resolve), for its clients: base URL the
    product (the source whose routing_keys hold the event's) or /api/v1/alerts/pagerduty/<source>."""
    try:
        result = await _ingest(request, session, config, "pagerduty", source, events_api=True)
    except (InvalidEvent, RateLimited) as exc:
        return _pagerduty_refusal(exc)
    return PagerDutyOut(dedup_key=result.dedup_keys[0])


@events_api.post(
    "/v2/change/enqueue",
    status_code=202,
    response_model=PagerDutyChangeOut,
    responses=PAGERDUTY_ERRORS,
    openapi_extra=PAGERDUTY_CHANGE,
)
@api_v1.post(
    "/alerts/pagerduty/{source}/v2/change/enqueue",
    status_code=202,
    response_model=PagerDutyChangeOut,
    responses=PAGERDUTY_ERRORS,
    openapi_extra=PAGERDUTY_CHANGE,
)
async def pagerduty_change_event(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> PagerDutyChangeOut | Response:
    """A PagerDuty change event (a deploy, a config change): kept and shown on the incidents of
    its service; it opens nothing."""
    try:
        event = await intake.ingest_change_event(
            session, config=config, source_name=source, headers=request.headers, body=await request.body()
        )
    except (InvalidEvent, RateLimited) as exc:
        return _pagerduty_refusal(exc)
    return PagerDutyChangeOut(id=str(event.id))


@api_v1.get("/change-events", response_model=ChangeEventPage, responses=READ)
async def list_change_events(
    session: SessionDep,
    user: CurrentUser,
    service_name: Annotated[limited(64) | None, Query(alias="service")] = None,
    since: Timestamp | None = None,
    cursor: RowId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ChangeEventPage:
    """Change events, the last received first; `since` is on when they happened."""
    events, next_cursor = await changes.list_change_events(
        session, service=service_name or None, since=since, cursor=cursor, limit=limit
    )
    return ChangeEventPage(items=[ChangeEventOut.of(e) for e in events], next_cursor=next_cursor)


@api_v1.post("/alerts/generic", response_model=IngestOut, responses=GENERIC_ERRORS, openapi_extra=GENERIC)
@api_v1.post(
    "/alerts/generic/{source}", response_model=IngestOut, responses=GENERIC_ERRORS, openapi_extra=GENERIC
)
async def generic_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut:
    """Any JSON signed with `X-ICC-Timestamp` and `X-ICC-Signature: sha256=HMAC(secret, ts.body)`."""
    return _accepted(await _ingest(request, session, config, "generic", source))


@api_v1.get("/alerts", response_model=AlertPage, responses=READ)
async def list_alerts(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[limited(16) | None, one_of(("", "firing", "resolved"))] = None,
    source: limited(64) | None = None,
    service_name: Annotated[limited(64) | None, Query(alias="service")] = None,
    since: Timestamp | None = None,
    incident: limited(32) | None = None,
    unrouted: bool = False,
    cursor: RowId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    """Alerts, most recent first; `unrouted=true` is the triage queue (firing, on no incident)."""
    alerts, next_cursor = await queries.list_alerts(
        session,
        status=status or None,
        source=source or None,
        service=service_name or None,
        since=since,
        incident=incident or None,
        unrouted=unrouted,
        cursor=cursor,
        limit=limit,
    )
    return AlertPage(items=[AlertOut.of(a) for a in alerts], next_cursor=next_cursor)


@api_v1.get("/alerts/{alert_id:int}", response_model=AlertDetailOut, responses=READ_ONE)
async def get_alert(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertDetailOut:
    """One alert with the raw payload it last came with."""
    return AlertDetailOut.of(await queries.get_alert(session, alert_id=alert_id))


@api_v1.post("/alerts/{alert_id:int}/acknowledge", response_model=AlertOut, responses=CHANGE)
async def acknowledge(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Acknowledge an alert (who and when are kept); 409 if it already was."""
    return AlertOut.of(await triage.acknowledge_alert(session, actor=user, alert_id=alert_id))


@api_v1.put("/alerts/{alert_id:int}/incident", response_model=AlertOut, responses=CHANGE_WITH_BODY)
async def link(alert_id: AlertId, body: LinkIn, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Put the alert on an incident by hand."""
    return AlertOut.of(await triage.link_alert(session, actor=user, alert_id=alert_id, ref=body.incident))


@api_v1.delete("/alerts/{alert_id:int}/incident", response_model=AlertOut, responses=CHANGE)
async def unlink(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Take the alert off its incident; it stays in the triage queue."""
    return AlertOut.of(await triage.unlink_alert(session, actor=user, alert_id=alert_id))


@api_v1.get("/alert-dead-letters", response_model=DeadLetterPage, responses=errors(401, 403))
async def dead_letters(session: SessionDep, user: CurrentUser) -> DeadLetterPage:
    """Refused deliveries with their reason, masked headers and body (admins)."""
    found = await letters.list_dead_letters(session, actor=user)
    return DeadLetterPage(items=[DeadLetterOut.of(d) for d in found])


@api_v1.post("/alert-dead-letters/{letter_id}/replay", response_model=DeadLetterOut, responses=CHANGE)
async def replay(
    letter_id: AlertId, session: SessionDep, user: CurrentUser, config: ConfigDep
) -> DeadLetterOut:
    """Ingest a refused delivery again with the current configuration (admins)."""
    letter = await letters.replay_dead_letter(session, config=config, actor=user, letter_id=letter_id)
    return DeadLetterOut.of(letter)


router = APIRouter()
router.include_router(api_v1)
router.include_router(events_api)
