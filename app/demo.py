"""Demo data: a few people and three incidents in different states, written through the
service layer (so their timelines are what real use would write), at times in the past."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import clock
from app.auth import service as accounts
from app.auth.models import User
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


async def load_demo(session: AsyncSession) -> bool:
    """Create the demo users and incidents unless they exist; True when created."""
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
        t.append(t[-1] + timedelta(minutes=2))
        await incidents.acknowledge_incident(session, actor=sam, ref=checkout.ref)
        await incidents.assign_role(
            session, actor=sam, ref=checkout.ref, role="incident_commander", email=sam.email
        )
        await incidents.assign_role(session, actor=sam, ref=checkout.ref, role="scribe", email=priya.email)
        await incidents.assign_role(session, actor=sam, ref=checkout.ref, role="sme", email=admin.email)
        for key in ("service-identified", "severity-set", "ic-assigned"):
            await incidents.set_checklist_item(session, actor=sam, ref=checkout.ref, key=key, done=True)
        t.append(t[-1] + timedelta(minutes=3))
        await incidents.change_status(session, actor=sam, ref=checkout.ref, status="investigating")
        await incidents.add_timeline_entry(
            session,
            actor=priya,
            ref=checkout.ref,
            kind="note",
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
    return True
