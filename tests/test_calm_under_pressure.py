"""What an incident commander at 3 a.m. should not have to think about: the checklist knows who
holds a role, the declarer runs the incident unless they say otherwise, an answered escalation
is quiet, a button that would be refused says why instead, every page has its icon, and the
demo has alerts from every source. Through the service, the pages and the API, on the real
database."""

import re

import psycopg
import pytest
from sqlalchemy import func, select

from app.alerts.models import Alert
from app.auth import service as accounts
from app.demo import load_demo
from app.errors import InvalidInput, NotPermitted
from app.escalation import service as escalation
from app.incidents import service
from app.incidents.models import ChecklistItem, Incident
from app.runbooks import render
from app.runbooks.service import sync_runbooks
from app.status import updates as status
from tests.conftest import _libpq, sign_in


async def entries_of(session, ref):
    found, _ = await service.list_timeline(session, ref=ref)
    return [(e.kind, e.body) for e in found]


async def checklist_of(session, ref):
    detail = await service.get_incident_detail(session, ref=ref)
    return {c.key: c.done_at is not None for c in detail.checklist}


async def declare(session, actor, **kw):
    fields = {"title": "Checkout returns 502", "severity": "SEV1"} | kw
    return await service.declare_incident(session, actor=actor, **fields)


# ---------------------------------------------------------------- the checklist knows the roles


async def test_assigning_the_incident_commander_ticks_its_checklist_item_and_says_so(
    session, responder, make_user
):
    sam = await make_user("responder", name="Sam Okafor")
    incident = await declare(session, responder)
    assert (await checklist_of(session, incident.ref))["ic-assigned"] is False
    await service.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=sam.email
    )
    assert (await checklist_of(session, incident.ref))["ic-assigned"] is True
    assert (await entries_of(session, incident.ref))[-2:] == [
        ("role", "Sam Okafor is Incident Commander."),
        ("checklist", "Done: Incident Commander assigned (Sam Okafor holds the role)."),
    ]
    item = await session.scalar(
        select(ChecklistItem)
        .where(ChecklistItem.incident_id == incident.id, ChecklistItem.key == "ic-assigned")
        .execution_options(populate_existing=True)
    )
    assert item.done_by_id == responder.id  # who made it true


async def test_a_handover_keeps_the_tick_and_clearing_the_role_takes_it_back(session, responder, make_user):
    sam = await make_user("responder", name="Sam Okafor")
    incident = await declare(session, responder)
    for person in (responder, sam):
        await service.assign_role(
            session, actor=responder, ref=incident.ref, role="incident_commander", email=person.email
        )
    assert [body for kind, body in await entries_of(session, incident.ref) if kind == "checklist"] == [
        "Done: Incident Commander assigned (Rita Responder holds the role)."
    ]
    await service.clear_role(session, actor=responder, ref=incident.ref, role="incident_commander")
    assert (await checklist_of(session, incident.ref))["ic-assigned"] is False
    assert (await entries_of(session, incident.ref))[-1] == (
        "checklist",
        "Not done: Incident Commander assigned (nobody holds the role now).",
    )


async def test_the_comms_lead_item_follows_the_comms_lead_and_other_roles_tick_nothing(session, responder):
    incident = await declare(session, responder)
    await service.assign_role(
        session, actor=responder, ref=incident.ref, role="scribe", email=responder.email
    )
    await service.assign_role(
        session, actor=responder, ref=incident.ref, role="comms_lead", email=responder.email
    )
    ticked = await checklist_of(session, incident.ref)
    assert ticked["comms-assigned"] is True
    assert [key for key, done in ticked.items() if done] == ["comms-assigned"]
    await service.clear_role(session, actor=responder, ref=incident.ref, role="comms_lead")
    assert (await checklist_of(session, incident.ref))["comms-assigned"] is False


async def test_a_custom_checklist_ticks_the_item_it_names_and_nothing_when_it_has_none(
    session, responder, icc_toml
):
    icc_toml(
        '[severities.SEV1]\nlabel = "SEV1"\nack_sla = "5m"\nmitigation_sla = "1h"\nupdate_cadence = "15m"\n'
        'checklist = ["Bridge open", "Incident Commander assigned"]\n'
        '[severities.SEV2]\nlabel = "SEV2"\nack_sla = "10m"\nmitigation_sla = "2h"\nupdate_cadence = "30m"\n'
        'checklist = ["Bridge open"]\n'
    )
    named = await declare(session, responder)
    await service.assign_role(
        session, actor=responder, ref=named.ref, role="incident_commander", email=responder.email
    )
    assert await checklist_of(session, named.ref) == {
        "bridge-open": False,
        "incident-commander-assigned": True,
    }
    unnamed = await declare(session, responder, severity="SEV2")
    await service.assign_role(
        session, actor=responder, ref=unnamed.ref, role="incident_commander", email=responder.email
    )
    assert await checklist_of(session, unnamed.ref) == {"bridge-open": False}
    assert [kind for kind, _ in await entries_of(session, unnamed.ref)] == ["declared", "role"]


# ---------------------------------------------------------------- the declarer is the IC


async def test_declaring_as_commander_makes_the_declarer_ic_in_the_same_step(session, responder):
    incident = await declare(session, responder, as_commander=True)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.commander.id == responder.id
    assert (await checklist_of(session, incident.ref))["ic-assigned"] is True
    assert await entries_of(session, incident.ref) == [
        ("declared", "Declared SEV1: Checkout returns 502."),
        ("role", "Rita Responder is Incident Commander."),
        ("checklist", "Done: Incident Commander assigned (Rita Responder holds the role)."),
    ]
    plain = await declare(session, responder, title="Search is slow")
    assert (await service.get_incident_detail(session, ref=plain.ref)).commander is None


async def test_the_products_own_account_cannot_declare_itself_commander(session):
    bot = await accounts.service_account(session, email="alerts@icc.invalid", name="Alert ingestion")
    with pytest.raises(InvalidInput, match="not a person") as refused:
        await declare(session, bot, as_commander=True)
    assert refused.value.field == "as_commander"
    assert await session.scalar(select(func.count()).select_from(Incident)) == 0


async def test_the_declare_form_chooses_no_severity_and_offers_the_ic_role_ticked(client, responder):
    await sign_in(client, responder)
    form = (await client.get("/incidents/new")).text
    radios = re.findall(r'<input type="radio" name="severity"[^>]*>', form)
    assert len(radios) == 4 and not any("checked" in r for r in radios)
    assert re.search(r'<input type="checkbox" name="as_commander" value="1" checked>', form)
    assert "I'll be the Incident Commander" in form


async def test_a_declaration_from_the_form_makes_the_declarer_ic_unless_they_untick_it(
    client, session, responder
):
    csrf = await sign_in(client, responder)
    ticked = await client.post(
        "/incidents",
        data={"csrf_token": csrf, "title": "Checkout down", "severity": "SEV1", "as_commander": "1"},
    )
    assert ticked.status_code == 303
    page = (await client.get(ticked.headers["location"])).text
    assert "Rita Responder is Incident Commander." in page
    unticked = await client.post(
        "/incidents", data={"csrf_token": csrf, "title": "Search slow", "severity": "SEV3"}
    )
    ref = unticked.headers["location"].rsplit("/", 1)[1]
    assert (await service.get_incident_detail(session, ref=ref)).commander is None


async def test_a_declaration_without_a_severity_asks_for_one_and_keeps_what_was_typed(client, responder):
    csrf = await sign_in(client, responder)
    response = await client.post(
        "/incidents", data={"csrf_token": csrf, "title": "Checkout down", "summary": "EU"}
    )
    assert response.status_code == 422
    assert "Choose a severity: SEV1, SEV2, SEV3, SEV4." in response.text
    assert 'value="Checkout down"' in response.text
    # The box was unticked (a browser sends nothing for it): it stays unticked.
    assert re.search(r'name="as_commander" value="1">', response.text)


async def test_the_api_makes_the_caller_ic_only_when_asked(api_as, responder):
    api = await api_as(responder)
    asked = await api.post(
        "/api/v1/incidents", json={"title": "Checkout down", "severity": "SEV1", "as_commander": True}
    )
    assert asked.status_code == 201, asked.text
    assert asked.json()["roles"]["incident_commander"]["email"] == responder.email
    default = await api.post("/api/v1/incidents", json={"title": "Search slow", "severity": "SEV3"})
    assert default.json()["roles"]["incident_commander"] is None


# ---------------------------------------------------------------- quiet when handled


async def test_an_escalation_step_is_answered_once_its_condition_no_longer_holds(
    session, responder, frozen_clock, icc_toml
):
    icc_toml(
        "".join(
            f'[[escalation.SEV1]]\nname = "{name}"\nafter = "{after}"\nwhen = "{when}"\n'
            'notify = ["role:admin"]\n'
            for name, after, when in (
                ("On-call", "0m", "unacknowledged"),
                ("Manager", "30m", "unmitigated"),
                ("Comms", "20m", "no_update"),
            )
        )
    )
    incident = await declare(session, responder, as_commander=True)
    await escalation.fire_due_steps(session)

    async def views():
        return {
            v.name: (v.answer, v.answered_at)
            for v in await escalation.escalations_of(session, incident_id=incident.id)
        }

    assert await views() == {"On-call": (None, None)}
    acknowledged_at = frozen_clock.advance(minutes=2)
    await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    assert await views() == {"On-call": ("acknowledged", acknowledged_at)}

    frozen_clock.advance(minutes=30)
    await escalation.fire_due_steps(session)
    assert (await views())["Manager"] == (None, None)
    assert (await views())["Comms"] == (None, None)
    mitigated_at = frozen_clock.advance(minutes=1)
    await service.change_status(session, actor=responder, ref=incident.ref, status="monitoring")
    assert (await views())["Manager"] == ("mitigated", mitigated_at)
    frozen_clock.advance(minutes=1)
    await service.change_status(session, actor=responder, ref=incident.ref, status="investigating")
    assert (await views())["Manager"] == (None, None)  # the fix did not hold: loud again
    updated_at = frozen_clock.advance(minutes=1)
    await status.post_update(session, actor=responder, ref=incident.ref, body="Still on it", public=False)
    assert (await views())["Comms"] == ("updated", updated_at)


async def test_the_banner_is_loud_while_a_step_is_unanswered_and_history_after(
    client, session, responder, frozen_clock
):
    await sign_in(client, responder)
    incident = await declare(session, responder, as_commander=True)
    await escalation.fire_due_steps(session)  # the default policy pages on-call at once for a SEV1
    before = (await client.get(f"/incidents/{incident.ref}")).text
    assert re.search(r'<p class="escalated" role="alert">Escalated to On-call responders', before)
    assert "escalation-history" not in before
    frozen_clock.advance(minutes=1)
    await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    after = (await client.get(f"/incidents/{incident.ref}")).text
    assert 'class="escalated"' not in after
    history = re.search(r'<p class="escalation-history">(.*?)</p>', after, re.DOTALL).group(1)
    assert "On-call responders, at once without acknowledgement" in history
    assert "; acknowledged" in history


# ---------------------------------------------------------------- a refusal says why, before the click


async def test_only_the_ic_sees_resolve_and_anyone_else_sees_who_may_and_take_ic(
    client, session, responder, make_user
):
    sam = await make_user("responder", name="Sam Okafor")
    incident = await declare(session, sam, as_commander=True)
    await sign_in(client, responder)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    controls = page.split('<section class="incident-head"')[1].split("</section>")[0]
    assert "Only the Incident Commander, Sam Okafor, can resolve this incident." in controls
    take = re.search(
        r'<form method="post" action="/incidents/[^"]+/roles/incident_commander".*?</form>',
        controls,
        re.DOTALL,
    ).group(0)
    assert f'name="email" value="{responder.email}"' in take and ">Take IC</button>" in take
    assert 'class="resolve"' not in controls
    assert '<option value="resolved">' not in page  # nor in the update form's status choice

    await service.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert "can resolve this incident" not in page
    assert re.search(r'<button type="submit" class="resolve">\s*Resolve\s*</button>', page)


def test_the_refusal_names_the_commander_or_says_there_is_none():
    class Person:
        def __init__(self, id, name):
            self.id, self.name = id, name

    sam, rita = Person(1, "Sam Okafor"), Person(2, "Rita Responder")
    assert service.resolve_refusal(commander=sam, actor=sam) is None
    assert service.resolve_refusal(commander=sam, actor=rita) == (
        "Only the Incident Commander, Sam Okafor, can resolve this incident."
    )
    assert "nobody is IC yet" in service.resolve_refusal(commander=None, actor=rita)


async def test_a_non_commander_resolving_through_the_api_is_told_who_may(
    api_as, session, responder, make_user
):
    sam = await make_user("responder", name="Sam Okafor")
    incident = await declare(session, sam, as_commander=True)
    api = await api_as(responder)
    refused = await api.post(f"/api/v1/incidents/{incident.ref}/status", json={"status": "resolved"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "Only the Incident Commander, Sam Okafor, can resolve this incident. Take the IC role to resolve it."
    )
    with pytest.raises(NotPermitted):
        await service.change_status(session, actor=responder, ref=incident.ref, status="resolved")


# ---------------------------------------------------------------- small things that got in the way


async def test_every_page_names_its_icon_and_favicon_ico_points_at_it(client, responder):
    icon = await client.get("/static/img/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    legacy = await client.get("/favicon.ico")
    assert legacy.status_code == 301 and legacy.headers["location"] == "/static/img/favicon.svg"
    pages = [(await client.get(path)).text for path in ("/login", "/status", "/api/docs")]
    await sign_in(client, responder)
    pages.append((await client.get("/incidents")).text)
    assert all('<link rel="icon" href="/static/img/favicon.svg" type="image/svg+xml">' in p for p in pages)


def test_a_task_list_checkbox_is_named_by_its_item():
    html = render.render_runbook("- [ ] Page the **on-call** DBA\n- [x] Open the bridge\n").html
    assert '<input aria-label="Page the on-call DBA" class="task-list-item-checkbox" disabled' in html
    assert '<input aria-label="Open the bridge" class="task-list-item-checkbox" disabled' in html


async def test_a_change_of_the_renderer_renders_every_stored_runbook_again(session, tmp_path, monkeypatch):
    (tmp_path / "a.md").write_text("# A\n\n- [ ] one\n")
    assert (await sync_runbooks(session, directory=tmp_path)).added == ["a.md"]
    assert (await sync_runbooks(session, directory=tmp_path)).updated == []
    monkeypatch.setattr(render, "RENDERER_VERSION", render.RENDERER_VERSION + 1)
    assert (await sync_runbooks(session, directory=tmp_path)).updated == ["a.md"]


@pytest.fixture
def alert_tables_emptied_after(database_url):
    """Asked for first, so that it runs after the session fixture has let go of the tables."""
    yield
    with psycopg.connect(_libpq(database_url), autocommit=True) as conn:
        conn.execute("TRUNCATE alerts, alert_dead_letters, alert_rate_windows, alert_signatures_seen")


async def test_the_demo_has_firing_and_resolved_alerts_from_every_source_one_on_the_sev1(
    alert_tables_emptied_after, session
):
    assert await load_demo(session)
    rows = (
        await session.execute(
            select(Alert.kind, Alert.status, func.count()).group_by(Alert.kind, Alert.status)
        )
    ).all()
    assert {(kind, state) for kind, state, _ in rows} == {
        (kind, state)
        for kind in ("alertmanager", "grafana", "pagerduty", "generic")
        for state in ("firing", "resolved")
    }
    sev1 = await session.scalar(select(Incident).where(Incident.severity == "SEV1"))
    linked = list(await session.scalars(select(Alert).where(Alert.incident_id == sev1.id)))
    assert [(a.title, a.status) for a in linked] == [("payments-api 5xx ratio above 20%", "firing")]
    assert any(
        kind == "alert" and body.startswith(f"Linked [alert {linked[0].id}]")
        for kind, body in await entries_of(session, sev1.ref)
    )
    assert await session.scalar(select(func.count()).select_from(Alert)) == 8
    assert await load_demo(session) is False
    assert await session.scalar(select(func.count()).select_from(Alert)) == 8
