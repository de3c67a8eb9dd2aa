"""Demo data: a few people, three incidents in different states and alerts from every kind of
source, written through the service layer (so their timelines are what real use would write)
and, for the alerts, delivered through the intake as a monitoring system would, at times in the
past."""

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.alerts import credentials, intake, triage
from app.alerts.config import GENERIC_FIELDS, AlertConfig, Source, get_alert_config
from app.auth import service as accounts
from app.auth.models import User
from app.escalation import service as escalation
from app.incidents import service as incidents
from app.status import updates

DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed for the demo on purpose
DEMO_LOGINS = (
    ("admin@example.com", DEMO_PASSWORD, "admin"),
    ("sam@example.com", DEMO_PASSWORD, "responder"),
    ("priya@example.com", DEMO_PASSWORD, "responder"),
    ("jordan@example.com", DEMO_PASSWORD, "viewer"),
)
NAMES = {
    "admin@example.com": "Avery Admin",
    "sam@example.com": "Sam Okafor",
    "priya@example.com": "Priya Nair",
    "jordan@example.com": "Jordan Lee",
}


@contextmanager
def _at(start: datetime) -> Iterator[list[datetime]]:
    """Run service calls as if at `start`; advance by appending to the yielded list."""
    moments = [start]
    clock.set_source(lambda: moments[-1])
    try:
        yield moments
    finally:
        clock.set_source(None)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _alertmanager(status: str, name: str, summary: str, labels: dict[str, str], since: datetime) -> dict:
    """An Alertmanager (or Grafana) webhook of one alert, version 4."""
    labels = {"alertname": name, **labels}
    return {
        "version": "4",
        "status": status,
        "receiver": "incident-command",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "groupLabels": {"alertname": name},
        "commonLabels": labels,
        "commonAnnotations": {"summary": summary},
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": summary},
                "startsAt": _iso(since),
                "endsAt": _iso(clock.now()) if status == "resolved" else "0001-01-01T00:00:00Z",
                "fingerprint": f"demo-{name.lower()}",
            }
        ],
    }


def _pagerduty(
    source: Source, action: str, key: str, summary: str = "", severity: str = "", component: str = ""
) -> dict:
    """A PagerDuty Events API v2 event; a resolve names only its dedup_key."""
    event = {"routing_key": source.routing_keys[0], "event_action": action, "dedup_key": key}
    if action == "trigger":
        event["payload"] = {
            "summary": summary,
            "source": component,
            "severity": severity,
            "component": component,
        }
    return event


def _generic(status: str, key: str, title: str, severity: str, service: str) -> dict:
    return {
        "dedup_key": key,
        "title": title,
        "status": status,
        "severity": severity,
        "labels": {"service": service},
    }


def _demo_sources(config: AlertConfig) -> dict[str, Source]:
    """The first configured source of each kind that the demo can sign for (icc.toml may name
    others, with other credentials or, for generic webhooks, other field names)."""
    found: dict[str, Source] = {}
    for source in config.sources.values():
        usable = {
            "alertmanager": bool(source.token or source.basic_user),
            "grafana": bool(source.token or source.basic_user),
            "pagerduty": bool(source.routing_keys),
            "generic": bool(source.secret) and source.fields == GENERIC_FIELDS,
        }[source.kind]
        if usable:
            found.setdefault(source.kind, source)
    return found


async def _deliver(session: AsyncSession, config: AlertConfig, source: Source, payload: dict) -> list[int]:
    """Send one delivery through the intake, with the source's credentials, as its sender would."""
    body = json.dumps(payload).encode()
    headers: dict[str, str] = {"Content-Type": "application/json"}
    if source.kind in ("alertmanager", "grafana"):
        if source.token:
            headers["Authorization"] = f"Bearer {source.token}"
        else:
            basic = base64.b64encode(f"{source.basic_user}:{source.basic_password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
    elif source.kind == "generic" and source.secret:
        timestamp = str(int(clock.now().timestamp()))
        headers[credentials.TIMESTAMP_HEADER] = timestamp
        headers[credentials.SIGNATURE_HEADER] = credentials.sign_alert_delivery(
            source.secret, timestamp, body
        )
    result = await intake.ingest_delivery(
        session, config=config, kind=source.kind, source_name=source.name, headers=headers, body=body
    )
    return result.alert_ids


async def _load_alerts(session: AsyncSession, *, now: datetime, responder: User, sev1_ref: str) -> None:
    """A few firing and resolved alerts from each source; the payments-api one is linked to the
    checkout SEV1 by its commander, the others wait in the unrouted list or are history."""
    config = get_alert_config()
    sources = _demo_sources(config)
    am, grafana, pd, generic = (sources.get(k) for k in ("alertmanager", "grafana", "pagerduty", "generic"))
    if am:
        with _at(now - timedelta(hours=27)):
            since = clock.now()
            lag = {"service": "orders-db", "severity": "warning"}
            await _deliver(
                session,
                config,
                am,
                _alertmanager("firing", "ReplicationLag", "orders-db replica lag above 30 s", lag, since),
            )
        with _at(now - timedelta(hours=25)):
            await _deliver(
                session,
                config,
                am,
                _alertmanager("resolved", "ReplicationLag", "orders-db replica lag above 30 s", lag, since),
            )
        with _at(now - timedelta(minutes=24)) as t:
            errors = {"service": "payments-api", "severity": "warning"}
            (alert_id,) = await _deliver(
                session,
                config,
                am,
                _alertmanager(
                    "firing", "PaymentsApi5xx", "payments-api 5xx ratio above 20%", errors, clock.now()
                ),
            )
            t.append(t[-1] + timedelta(minutes=3))
            await triage.link_alert(session, actor=responder, alert_id=alert_id, ref=sev1_ref)
    if grafana:
        with _at(now - timedelta(hours=5)):
            since = clock.now()
            disk = {"service": "search", "severity": "warning", "instance": "search-2"}
            await _deliver(
                session,
                config,
                grafana,
                _alertmanager("firing", "DiskAlmostFull", "Disk usage above 85% on search-2", disk, since),
            )
        with _at(now - timedelta(hours=4)):
            await _deliver(
                session,
                config,
                grafana,
                _alertmanager("resolved", "DiskAlmostFull", "Disk usage above 85% on search-2", disk, since),
            )
        with _at(now - timedelta(minutes=19)):
            latency = {"service": "checkout", "severity": "warning"}
            await _deliver(
                session,
                config,
                grafana,
                _alertmanager(
                    "firing", "CheckoutLatency", "Checkout p95 latency above 1.5 s", latency, clock.now()
                ),
            )
    if pd:
        with _at(now - timedelta(days=2)):
            await _deliver(
                session,
                config,
                pd,
                _pagerduty(
                    pd,
                    "trigger",
                    "cert-api-expiry",
                    "TLS certificate for api.example.com expires in 7 days",
                    "info",
                    "edge",
                ),
            )
        with _at(now - timedelta(days=1, hours=20)):
            await _deliver(session, config, pd, _pagerduty(pd, "resolve", "cert-api-expiry"))
        with _at(now - timedelta(minutes=14)):
            await _deliver(
                session,
                config,
                pd,
                _pagerduty(
                    pd,
                    "trigger",
                    "webhooks-queue-depth",
                    "Webhook retry queue above 10,000 jobs",
                    "warning",
                    "webhooks",
                ),
            )
    if generic:
        with _at(now - timedelta(hours=9)):
            await _deliver(
                session,
                config,
                generic,
                _generic(
                    "firing", "backup-nightly", "Nightly backup took longer than 2 h", "warning", "orders-db"
                ),
            )
        with _at(now - timedelta(hours=8)):
            await _deliver(
                session,
                config,
                generic,
                _generic(
                    "resolved",
                    "backup-nightly",
                    "Nightly backup took longer than 2 h",
                    "warning",
                    "orders-db",
                ),
            )
        with _at(now - timedelta(minutes=8)):
            await _deliver(
                session,
                config,
                generic,
                _generic(
                    "firing",
                    "synthetic-login",
                    "Synthetic check: sign-in page slower than 3 s",
                    "warning",
                    "auth",
                ),
            )


async def load_demo(session: AsyncSession) -> bool:
    """Create the demo users, incidents and alerts unless they exist; True when created."""
    if await session.scalar(select(User.id).where(User.email == DEMO_LOGINS[0][0])):
        return False
    users = {}
    for email, password, role in DEMO_LOGINS:
        users[email] = await accounts.create_user(
            session, email=email, name=NAMES[email], role=role, password=password
        )
    sam, priya, admin = users["sam@example.com"], users["priya@example.com"], users["admin@example.com"]
    now = clock.now()

    with _at(now - timedelta(hours=26)) as t:
        db = await incidents.declare_incident(
            session,
            actor=sam,
            title="Primary database latency above 2 s",
            severity="SEV2",
            services=["orders-db", "orders-api"],
            summary="p99 query latency on the orders primary climbed from 40 ms to over 2 s.",
        )
        t.append(t[-1] + timedelta(minutes=4))
        await incidents.acknowledge_incident(session, actor=sam, ref=db.ref)
        await incidents.assign_role(
            session, actor=sam, ref=db.ref, role="incident_commander", email=sam.email
        )
        t.append(t[-1] + timedelta(minutes=9))
        await incidents.change_status(session, actor=sam, ref=db.ref, status="investigating")
        await incidents.add_timeline_entry(
            session,
            actor=sam,
            ref=db.ref,
            kind="note",
            body="Connection pool at 100% on orders-api; slow query log shows a sequential scan.",
        )
        t.append(t[-1] + timedelta(minutes=21))
        await incidents.add_timeline_entry(
            session,
            actor=sam,
            ref=db.ref,
            kind="decision",
            body="Add the missing index on `orders(customer_id)` concurrently.",
        )
        await incidents.change_status(session, actor=sam, ref=db.ref, status="identified")
        t.append(t[-1] + timedelta(minutes=25))
        await incidents.change_status(session, actor=sam, ref=db.ref, status="monitoring")
        await updates.post_update(
            session,
            actor=sam,
            ref=db.ref,
            public=True,
            body="Order history is loading slowly. We have found the cause and are applying a fix.",
        )
        t.append(t[-1] + timedelta(minutes=40))
        await updates.post_update(
            session,
            actor=sam,
            ref=db.ref,
            public=True,
            status="resolved",
            body="Order history is fast again. We are sorry for the slow pages this morning.",
        )

    with _at(now - timedelta(minutes=23)) as t:
        checkout = await incidents.declare_incident(
            session,
            actor=priya,
            title="Checkout returns 502 for most users",
            severity="SEV1",
            services=["checkout", "payments-api"],
            summary="Error rate on `POST /checkout` jumped to 70% after the 14:00 deploy.",
        )
        # The policy pages on-call at once for a SEV1 (the scheduler's tick, as it would run).
        await escalation.fire_due_steps(session)
        t.append(t[-1] + timedelta(minutes=2))
        await incidents.acknowledge_incident(session, actor=sam, ref=checkout.ref)
        await incidents.assign_role(
            session, actor=sam, ref=checkout.ref, role="incident_commander", email=sam.email
        )
        await incidents.assign_role(session, actor=sam, ref=checkout.ref, role="scribe", email=priya.email)
        await incidents.assign_role(session, actor=sam, ref=checkout.ref, role="sme", email=admin.email)
        for key in ("service-identified", "severity-set"):
            await incidents.set_checklist_item(session, actor=sam, ref=checkout.ref, key=key, done=True)
        t.append(t[-1] + timedelta(minutes=3))
        await incidents.change_status(session, actor=sam, ref=checkout.ref, status="investigating")
        bridge = await incidents.add_timeline_entry(
            session,
            actor=priya,
            ref=checkout.ref,
            kind="note",
            body="Bridge open. 502s come from the payments-api upstream.",
        )
        await incidents.edit_timeline_entry(
            session,
            actor=priya,
            entry_id=bridge.id,
            body="Bridge open. 502s come from the payments-api upstream, not the load balancer.",
        )
        await incidents.assign_role(
            session, actor=sam, ref=checkout.ref, role="comms_lead", email=admin.email
        )
        await updates.set_public_title(
            session, actor=admin, ref=checkout.ref, public_title="Checkout failing for many customers"
        )
        t.append(t[-1] + timedelta(minutes=6))
        await incidents.add_timeline_entry(
            session,
            actor=priya,
            ref=checkout.ref,
            kind="decision",
            body="Roll back payments-api to the previous release.",
        )
        await updates.post_update(
            session,
            actor=admin,
            ref=checkout.ref,
            public=True,
            body="Many customers cannot complete checkout. We are investigating; next update in 15 min.",
        )

    with _at(now - timedelta(minutes=12)):
        await incidents.declare_incident(
            session,
            actor=priya,
            title="Webhook deliveries delayed by up to 10 minutes",
            severity="SEV3",
            services=["webhooks"],
            summary="Retry queue depth is growing; customers report late notifications.",
        )
    await _load_alerts(session, now=now, responder=sam, sev1_ref=checkout.ref)
    return True
