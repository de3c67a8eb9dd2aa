"""The incident rules, exercised through the service layer against the real database."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.errors import Conflict, InvalidInput, InvalidTransition, NotFound, NotPermitted
from app.incidents import service
from app.incidents.models import RoleAssignment


async def declare(session, actor, **kw):
    fields = {"title": "Checkout returns 502", "severity": "SEV2", "services": ["checkout"]} | kw
    return await service.declare_incident(session, actor=actor, **fields)


async def entries_of(session, ref):
    found, _ = await service.list_timeline(session, ref=ref)
    return [(e.kind, e.body) for e in found]


async def test_a_declared_incident_gets_a_daily_reference_starts_in_triage_and_logs_it(
    session, responder, frozen_clock
):
    incident = await declare(session, responder, summary="70% of checkouts fail")
    assert incident.ref == "INC-20261123-01"
    assert incident.status == "triage"
    second = await declare(session, responder, title="Search is slow", severity="SEV3")
    assert second.ref == "INC-20261123-02"
    frozen_clock.advance(days=1)
    assert (await declare(session, responder)).ref == "INC-20261124-01"
    assert await entries_of(session, incident.ref) == [
        ("declared", "Declared SEV2: Checkout returns 502. Affected: checkout.")
    ]


async def test_references_stay_unique_when_incidents_are_declared_at_the_same_instant(
    app, responder, frozen_clock
):
    async def declare_in_own_session(n):
        async with app.state.sessionmaker() as s:
            return (await declare(s, responder, title=f"Storm {n}")).ref

    refs = await asyncio.gather(*(declare_in_own_session(n) for n in range(12)))
    assert sorted(refs) == [f"INC-20261123-{n:02d}" for n in range(1, 13)]


async def test_the_checklist_comes_from_the_severity_policy(session, responder):
    incident = await declare(session, responder)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert [c.label for c in detail.checklist][:3] == [
        "Affected service identified",
        "Severity confirmed",
        "Incident Commander assigned",
    ]
    assert len(detail.checklist) == 7


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "   "}, "Title is required."),
        ({"severity": "SEV9"}, "Unknown severity 'SEV9'"),
        ({"title": "x" * 201}, "Title is too long"),
        ({"services": ["check out!"]}, "is not a valid name"),
        ({"summary": "y" * 10_001}, "Summary is too long"),
    ],
)
async def test_declaring_with_bad_input_is_refused_with_a_message_and_writes_nothing(
    session, responder, fields, message
):
    with pytest.raises(InvalidInput, match=message):
        await declare(session, responder, **fields)
    rows, _ = await service.list_incidents(session)
    assert rows == []


async def test_a_viewer_can_read_but_not_declare_or_change_anything(session, responder, viewer):
    incident = await declare(session, responder)
    with pytest.raises(NotPermitted):
        await declare(session, viewer)
    with pytest.raises(NotPermitted):
        await service.acknowledge_incident(session, actor=viewer, ref=incident.ref)
    with pytest.raises(NotPermitted):
        await service.add_timeline_entry(session, actor=viewer, ref=incident.ref, kind="note", body="hi")
    assert (await service.get_incident_detail(session, ref=incident.ref)).incident.acknowledged_at is None


async def test_acknowledging_stops_the_ack_timer_and_a_second_acknowledgement_is_a_conflict(
    session, responder, frozen_clock
):
    incident = await declare(session, responder, severity="SEV1")
    frozen_clock.advance(minutes=3)
    await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    frozen_clock.advance(minutes=30)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    ack = detail.timers["ack"]
    assert ack.state == "met"
    assert ack.met_at == frozen_clock.now - timedelta(minutes=30)
    with pytest.raises(Conflict, match="already acknowledged"):
        await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    assert ("acknowledged", "Acknowledged by Rita Responder.") in await entries_of(session, incident.ref)


async def test_timers_follow_the_severity_policy_and_breach_when_the_clock_passes_them(
    session, responder, frozen_clock
):
    incident = await declare(session, responder, severity="SEV1")
    start = frozen_clock.now
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["ack"].due_at == start + timedelta(minutes=5)
    assert detail.timers["mitigation"].due_at == start + timedelta(minutes=60)
    assert detail.timers["next_update"].due_at == start + timedelta(minutes=15)
    assert {t.state for t in detail.timers.values()} == {"running"}
    frozen_clock.advance(minutes=6)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["ack"].state == "breached"
    assert detail.timers["mitigation"].state == "running"
    frozen_clock.advance(minutes=1)
    await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["ack"].state == "breached"  # met, but late
    assert detail.timers["ack"].met_at == frozen_clock.now


async def test_sev4_is_acknowledged_within_one_business_day_and_has_no_other_timers(
    session, responder, frozen_clock
):
    frozen_clock.now = frozen_clock.now.replace(day=27)  # a Friday
    incident = await declare(session, responder, severity="SEV4")
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.timers["ack"].due_at == frozen_clock.now + timedelta(days=3)  # Monday
    assert detail.timers["mitigation"] is None
    assert detail.timers["next_update"] is None


async def test_a_severity_change_needs_a_reason_and_restarts_running_timers_from_the_change(
    session, responder, frozen_clock
):
    incident = await declare(session, responder, severity="SEV3")
    frozen_clock.advance(minutes=10)
    await service.acknowledge_incident(session, actor=responder, ref=incident.ref)
    frozen_clock.advance(minutes=10)
    with pytest.raises(InvalidInput, match="reason is required"):
        await service.change_severity(session, actor=responder, ref=incident.ref, severity="SEV1", reason=" ")
    changed_at = frozen_clock.now
    await service.change_severity(
        session, actor=responder, ref=incident.ref, severity="SEV1", reason="All regions down"
    )
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert detail.incident.severity == "SEV1"
    assert detail.timers["ack"].state == "met"  # already stopped: keeps its outcome
    assert detail.timers["mitigation"].due_at == changed_at + timedelta(minutes=60)
    assert detail.timers["next_update"].due_at == changed_at + timedelta(minutes=15)
    assert ("severity", "Raised severity SEV3 → SEV1: All regions down") in await entries_of(
        session, incident.ref
    )
    with pytest.raises(Conflict, match="already SEV1"):
        await service.change_severity(session, actor=responder, ref=incident.ref, severity="sev1", reason="x")


async def test_status_moves_forward_falls_back_from_monitoring_and_refuses_other_moves(session, responder):
    incident = await declare(session, responder)
    ref = incident.ref
    await service.change_status(session, actor=responder, ref=ref, status="investigating")
    with pytest.raises(InvalidTransition, match="from investigating to triage"):
        await service.change_status(session, actor=responder, ref=ref, status="triage")
    await service.change_status(session, actor=responder, ref=ref, status="monitoring")
    detail = await service.get_incident_detail(session, ref=ref)
    assert detail.incident.mitigated_at is not None
    await service.change_status(
        session, actor=responder, ref=ref, status="investigating", reason="errors back"
    )
    detail = await service.get_incident_detail(session, ref=ref)
    assert detail.incident.mitigated_at is None
    with pytest.raises(InvalidTransition, match="already investigating"):
        await service.change_status(session, actor=responder, ref=ref, status="investigating")
    with pytest.raises(InvalidInput, match="Unknown status"):
        await service.change_status(session, actor=responder, ref=ref, status="closed")
    kinds = [body for kind, body in await entries_of(session, ref) if kind == "status"]
    assert kinds == [
        "Status: Triage → Investigating.",
        "Status: Investigating → Monitoring.",
        "Status: Monitoring → Investigating. errors back",
    ]


async def test_only_the_incident_commander_can_resolve_admins_included(session, responder, admin, make_user):
    other = await make_user("responder", name="Otto Other")
    # Not on the status page: resolving one that is also takes its closing update (test_publication.py).
    incident = await declare(session, responder, services=["ledger"])
    ref = incident.ref
    with pytest.raises(NotPermitted, match=r"nobody is IC yet\. Take the IC role to resolve it\."):
        await service.change_status(session, actor=responder, ref=ref, status="resolved")
    await service.assign_role(
        session, actor=responder, ref=ref, role="incident_commander", email=responder.email
    )
    # The refusal names who may resolve, so nobody has to go and look.
    with pytest.raises(NotPermitted, match="Only the Incident Commander, Rita Responder, can resolve this"):
        await service.change_status(session, actor=other, ref=ref, status="resolved")
    with pytest.raises(NotPermitted, match="Only the Incident Commander, Rita Responder, can resolve"):
        await service.change_status(session, actor=admin, ref=ref, status="resolved")
    await service.change_status(session, actor=responder, ref=ref, status="resolved", reason="fixed")
    detail = await service.get_incident_detail(session, ref=ref)
    assert detail.incident.status == "resolved"
    assert detail.incident.resolved_at is not None
    assert detail.timers["next_update"] is None


async def test_a_resolved_incident_can_be_reopened_and_its_timers_run_again(session, responder, frozen_clock):
    incident = await declare(session, responder, severity="SEV2", services=["ledger"])
    ref = incident.ref
    await service.assign_role(
        session, actor=responder, ref=ref, role="incident_commander", email=responder.email
    )
    await service.change_status(session, actor=responder, ref=ref, status="resolved")
    frozen_clock.advance(hours=5)
    await service.change_status(
        session, actor=responder, ref=ref, status="investigating", reason="it is back"
    )
    detail = await service.get_incident_detail(session, ref=ref)
    assert detail.incident.resolved_at is None
    assert detail.timers["mitigation"].due_at == frozen_clock.now + timedelta(hours=2)
    assert detail.timers["mitigation"].state == "running"
    assert ("status", "Reopened: Resolved → Investigating. it is back") in await entries_of(session, ref)


async def test_a_role_handover_ends_the_old_assignment_and_keeps_its_history(session, responder, make_user):
    other = await make_user("responder", name="Otto Other")
    incident = await declare(session, responder)
    ref = incident.ref
    await service.assign_role(
        session, actor=responder, ref=ref, role="incident_commander", email=responder.email
    )
    await service.assign_role(session, actor=responder, ref=ref, role="incident_commander", email=other.email)
    detail = await service.get_incident_detail(session, ref=ref)
    assert detail.commander.id == other.id
    history = list(
        await session.scalars(
            select(RoleAssignment)
            .where(RoleAssignment.role == "incident_commander")
            .order_by(RoleAssignment.id)
        )
    )
    assert [(a.user_id, a.ended_at is None) for a in history] == [(responder.id, False), (other.id, True)]
    assert (
        "role",
        "Incident Commander handed over from Rita Responder to Otto Other.",
    ) in await entries_of(session, ref)
    with pytest.raises(Conflict, match="already Incident Commander"):
        await service.assign_role(
            session, actor=responder, ref=ref, role="incident_commander", email=other.email
        )
    await service.clear_role(session, actor=responder, ref=ref, role="incident_commander")
    assert (await service.get_incident_detail(session, ref=ref)).commander is None


async def test_several_smes_can_join_and_leave(session, responder, make_user):
    a = await make_user("responder", name="Ann Sme")
    b = await make_user("responder", name="Bob Sme")
    incident = await declare(session, responder)
    ref = incident.ref
    await service.assign_role(session, actor=responder, ref=ref, role="sme", email=a.email)
    await service.assign_role(session, actor=responder, ref=ref, role="sme", email=b.email)
    with pytest.raises(Conflict):
        await service.assign_role(session, actor=responder, ref=ref, role="sme", email=a.email)
    await service.clear_role(session, actor=responder, ref=ref, role="sme", email=a.email)
    detail = await service.get_incident_detail(session, ref=ref)
    assert [u.name for u in detail.smes] == ["Bob Sme"]


async def test_assigning_an_unknown_person_or_role_is_refused(session, responder):
    incident = await declare(session, responder)
    with pytest.raises(InvalidInput, match="No active user"):
        await service.assign_role(
            session, actor=responder, ref=incident.ref, role="scribe", email="nobody@example.com"
        )
    with pytest.raises(NotFound, match="No role"):
        await service.assign_role(
            session, actor=responder, ref=incident.ref, role="janitor", email=responder.email
        )


async def test_ticking_the_checklist_records_who_and_when(session, responder, frozen_clock):
    incident = await declare(session, responder)
    await service.set_checklist_item(session, actor=responder, ref=incident.ref, key="bridge-open", done=True)
    detail = await service.get_incident_detail(session, ref=incident.ref)
    item = next(c for c in detail.checklist if c.key == "bridge-open")
    assert item.done_by.name == "Rita Responder"
    assert item.done_at == frozen_clock.now
    await service.set_checklist_item(
        session, actor=responder, ref=incident.ref, key="bridge-open", done=False
    )
    detail = await service.get_incident_detail(session, ref=incident.ref)
    assert next(c for c in detail.checklist if c.key == "bridge-open").done_at is None
    with pytest.raises(NotFound):
        await service.set_checklist_item(session, actor=responder, ref=incident.ref, key="nope", done=True)
    assert [b for k, b in await entries_of(session, incident.ref) if k == "checklist"] == [
        "Done: Bridge call open",
        "Not done: Bridge call open",
    ]


async def test_the_board_sorts_active_incidents_by_severity_then_age(session, responder, frozen_clock):
    old_sev2 = await declare(session, responder, title="old sev2", severity="SEV2")
    frozen_clock.advance(minutes=5)
    sev1 = await declare(session, responder, title="sev1", severity="SEV1")
    frozen_clock.advance(minutes=5)
    new_sev2 = await declare(session, responder, title="new sev2", severity="SEV2")
    board = await service.incident_board(session)
    assert [r.incident.ref for r in board.active] == [sev1.ref, old_sev2.ref, new_sev2.ref]
    assert board.counts == {"SEV1": 1, "SEV2": 2, "SEV3": 0, "SEV4": 0}
    filtered = await service.incident_board(session, q="new")
    assert [r.incident.ref for r in filtered.active] == [new_sev2.ref]


async def test_the_most_urgent_timer_is_a_breached_one_before_any_running_one(
    session, responder, frozen_clock
):
    await declare(session, responder, severity="SEV1")
    frozen_clock.advance(minutes=6)  # ack breached, update still running
    board = await service.incident_board(session)
    assert board.active[0].most_urgent.key == "ack"
    assert board.active[0].most_urgent.state == "breached"
