"""The alerts JSON API under /api/v1: the senders' endpoints, history, acknowledgement, links,
dead letters. Thin: every rule is in the service."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from app.alerts import service
from app.alerts.config import AlertConfig
from app.alerts.schemas import (
    AlertDetailOut,
    AlertId,
    AlertOut,
    AlertPage,
    DeadLetterOut,
    DeadLetterPage,
    IngestOut,
    LinkIn,
    PagerDutyOut,
)
from app.auth.deps import CurrentUser
from app.db import SessionDep
from app.incidents.schemas import RowId

router = APIRouter(prefix="/api/v1", tags=["alerts"])

JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
    }
}


def alert_config_of(request: Request) -> AlertConfig:
    return request.app.state.alert_config


ConfigDep = Annotated[AlertConfig, Depends(alert_config_of)]


async def _ingest(
    request: Request, session: SessionDep, config: AlertConfig, kind: str, source: str | None
) -> service.IngestResult | Response:
    try:
        return await service.ingest_delivery(
            session,
            config=config,
            kind=kind,
            source_name=source,
            headers=request.headers,
            body=await request.body(),
        )
    except service.RateLimited as exc:
        return JSONResponse(
            {"detail": exc.message, "code": exc.code},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )


def _accepted(result: service.IngestResult | Response) -> IngestOut | Response:
    if isinstance(result, Response):
        return result
    return IngestOut(
        source=result.source,
        alerts=len(result.alert_ids),
        alert_ids=result.alert_ids,
        incidents=result.incidents,
    )


@router.post("/alerts/alertmanager", response_model=IngestOut, openapi_extra=JSON_BODY)
@router.post("/alerts/alertmanager/{source}", response_model=IngestOut, openapi_extra=JSON_BODY)
async def alertmanager_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut | Response:
    """Alertmanager's webhook_config payload; `Authorization: Bearer <token>` or basic auth."""
    return _accepted(await _ingest(request, session, config, "alertmanager", source))


@router.post("/alerts/grafana", response_model=IngestOut, openapi_extra=JSON_BODY)
@router.put("/alerts/grafana", response_model=IngestOut, openapi_extra=JSON_BODY)
@router.post("/alerts/grafana/{source}", response_model=IngestOut, openapi_extra=JSON_BODY)
@router.put("/alerts/grafana/{source}", response_model=IngestOut, openapi_extra=JSON_BODY)
async def grafana_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut | Response:
    """Grafana unified alerting's webhook contact point (POST or PUT)."""
    return _accepted(await _ingest(request, session, config, "grafana", source))


@router.post("/alerts/pagerduty", status_code=202, response_model=PagerDutyOut, openapi_extra=JSON_BODY)
@router.post(
    "/alerts/pagerduty/{source}", status_code=202, response_model=PagerDutyOut, openapi_extra=JSON_BODY
)
async def pagerduty_event(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> PagerDutyOut | Response:
    """A PagerDuty Events API v2 event; the routing_key is the credential. Answers as PagerDuty."""
    result = await _ingest(request, session, config, "pagerduty", source)
    if isinstance(result, Response):
        return result
    return PagerDutyOut(dedup_key=result.dedup_keys[0])


@router.post("/alerts/generic", response_model=IngestOut, openapi_extra=JSON_BODY)
@router.post("/alerts/generic/{source}", response_model=IngestOut, openapi_extra=JSON_BODY)
async def generic_webhook(
    request: Request, session: SessionDep, config: ConfigDep, source: str | None = None
) -> IngestOut | Response:
    """Any JSON signed with `X-ICC-Timestamp` and `X-ICC-Signature: sha256=HMAC(secret, ts.body)`."""
    return _accepted(await _ingest(request, session, config, "generic", source))


@router.get("/alerts", response_model=AlertPage)
async def list_alerts(
    session: SessionDep,
    user: CurrentUser,
    status: Annotated[str | None, Query(max_length=16)] = None,
    source: Annotated[str | None, Query(max_length=64)] = None,
    service_name: Annotated[str | None, Query(alias="service", max_length=64)] = None,
    since: datetime | None = None,
    incident: Annotated[str | None, Query(max_length=32)] = None,
    unrouted: bool = False,
    cursor: RowId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AlertPage:
    """Alerts, most recent first; `unrouted=true` is the triage queue (firing, on no incident)."""
    alerts, next_cursor = await service.list_alerts(
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


@router.get("/alerts/{alert_id}", response_model=AlertDetailOut)
async def get_alert(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertDetailOut:
    """One alert with the raw payload it last came with."""
    return AlertDetailOut.of(await service.get_alert(session, alert_id=alert_id))


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut)
async def acknowledge(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Acknowledge an alert (who and when are kept); 409 if it already was."""
    return AlertOut.of(await service.acknowledge_alert(session, actor=user, alert_id=alert_id))


@router.put("/alerts/{alert_id}/incident", response_model=AlertOut)
async def link(alert_id: AlertId, body: LinkIn, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Put the alert on an incident by hand."""
    return AlertOut.of(await service.link_alert(session, actor=user, alert_id=alert_id, ref=body.incident))


@router.delete("/alerts/{alert_id}/incident", response_model=AlertOut)
async def unlink(alert_id: AlertId, session: SessionDep, user: CurrentUser) -> AlertOut:
    """Take the alert off its incident; it stays in the triage queue."""
    return AlertOut.of(await service.unlink_alert(session, actor=user, alert_id=alert_id))


@router.get("/alert-dead-letters", response_model=DeadLetterPage)
async def dead_letters(session: SessionDep, user: CurrentUser) -> DeadLetterPage:
    """Refused deliveries with their reason, masked headers and body (admins)."""
    letters = await service.list_dead_letters(session, actor=user)
    return DeadLetterPage(items=[DeadLetterOut.of(d) for d in letters])


@router.post("/alert-dead-letters/{letter_id}/replay", response_model=DeadLetterOut)
async def replay(
    letter_id: AlertId, session: SessionDep, user: CurrentUser, config: ConfigDep
) -> DeadLetterOut:
    """Ingest a refused delivery again with the current configuration (admins)."""
    letter = await service.replay_dead_letter(session, config=config, actor=user, letter_id=letter_id)
    return DeadLetterOut.of(letter)
