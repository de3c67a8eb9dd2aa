"""The product's own accounts ("Alert ingestion", "Escalation policy") write timeline entries but
are not people: no role picker offers them and no role can be given to them."""

import re

import httpx
import pytest
from sqlalchemy import func, select

from app.alerts.timeline import BOT_EMAIL, BOT_NAME
from app.auth import service as accounts
from app.auth.deps import SESSION_COOKIE
from app.escalation.service import ACCOUNT_EMAIL
from app.incidents import service as incidents
from app.incidents.models import RoleAssignment, TimelineEntry

API = "/api/v1"
SERVICE_ACCOUNTS = [(BOT_EMAIL, BOT_NAME), (ACCOUNT_EMAIL, "Escalation policy")]


@pytest.fixture
async def incident(session, responder):
    """An incident, with both service accounts present as they are once alerts and escalations ran."""
    for email, name in SERVICE_ACCOUNTS:
        await accounts.service_account(session, email=email, name=name)
    await session.commit()
    return await incidents.declare_incident(session, actor=responder, title="Checkout down", severity="SEV1")


async def written(session, incident) -> tuple[int, int]:
    roles = await session.scalar(
        select(func.count()).select_from(RoleAssignment).where(RoleAssignment.incident_id == incident.id)
    )
    entries = await session.scalar(
        select(func.count()).select_from(TimelineEntry).where(TimelineEntry.incident_id == incident.id)
    )
    await session.commit()
    return roles, entries


async def test_no_role_picker_on_the_incident_page_offers_a_service_account(
    app, session, responder, incident
):
    cookie, _ = await accounts.start_session(session, user=responder, days=1)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", cookies={SESSION_COOKIE: cookie}
    ) as browser:
        page = (await browser.get(f"/incidents/{incident.ref}")).text

    pickers = re.findall(r'<select name="email"[^>]*>(.*?)</select>', page, re.DOTALL)
    assert len(pickers) == 5  # four single-holder roles and the SMEs
    for options in pickers:
        offered = re.findall(r'<option value="([^"]*)">([^<]*)</option>', options)
        assert offered == [(responder.email, responder.name)]


async def test_the_list_of_people_for_roles_leaves_out_service_accounts(session, responder, incident):
    assert [u.email for u in await accounts.list_active_users(session)] == [responder.email]


@pytest.mark.parametrize(("email", "name"), SERVICE_ACCOUNTS, ids=["alert-ingestion", "escalation-policy"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/incidents/{ref}/roles/scribe"), ("POST", "/incidents/{ref}/roles/sme")],
    ids=["scribe", "sme"],
)
async def test_the_api_refuses_to_give_a_service_account_a_role(
    api_as, session, responder, incident, email, name, method, path
):
    api = await api_as(responder)
    before = await written(session, incident)

    response = await api.request(method, API + path.format(ref=incident.ref), json={"email": email})

    assert response.status_code == 422, response.text
    assert response.json() == {
        "detail": f"The email {email} is the product's own account ({name}), not a person: "
        "it cannot take a response role.",
        "code": "invalid_input",
    }
    assert await written(session, incident) == before


async def test_the_page_refuses_a_hand_typed_service_account_with_the_same_message(
    app, session, responder, incident
):
    cookie, signed_in = await accounts.start_session(session, user=responder, days=1)
    before = await written(session, incident)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", cookies={SESSION_COOKIE: cookie}
    ) as browser:
        response = await browser.post(
            f"/incidents/{incident.ref}/roles/scribe",
            data={"csrf_token": signed_in.csrf_token, "email": BOT_EMAIL},
            headers={"HX-Request": "true"},
        )

    assert response.status_code == 422
    assert "is the product&#39;s own account (Alert ingestion), not a person" in response.text
    assert await written(session, incident) == before
