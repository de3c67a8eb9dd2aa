"""The timeline: append-only, back-datable, revisable, redactable, safe to render."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.errors import Conflict, InvalidInput, NotFound, NotPermitted
from app.incidents import service
from app.incidents.entry_input import parse_entry
from app.incidents.models import TimelineEntry, TimelineRevision
from app.markdown import render_markdown


@pytest.fixture
async def incident(session, responder):
    return await service.declare_incident(session, actor=responder, title="Disk full", severity="SEV3")


async def add(session, actor, incident, body, **kw):
    return await service.add_timeline_entry(
        session, actor=actor, ref=incident.ref, kind=kw.pop("kind", "note"), body=body, **kw
    )


async def test_entries_are_ordered_by_when_they_happened_and_keep_when_they_were_logged(
    session, responder, frozen_clock, incident
):
    # frozen_clock comes before incident, so the declaration is logged at the frozen time too.
    frozen_clock.advance(minutes=20)
    await add(session, responder, incident, "Paged the DBA")
    backdated = await add(
        session,
        responder,
        incident,
        "Restarted the primary",
        kind="action",
        occurred_at=frozen_clock.now - timedelta(minutes=15),
    )
    assert backdated.recorded_at == frozen_clock.now
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    assert [e.body for e in entries][1:] == ["Restarted the primary", "Paged the DBA"]


async def test_an_entry_cannot_be_empty_huge_of_an_unknown_kind_or_in_the_future(
    session, responder, incident, frozen_clock
):
    with pytest.raises(InvalidInput, match="entry is required"):
        await add(session, responder, incident, "  \n ")
    with pytest.raises(InvalidInput, match="too long"):
        await add(session, responder, incident, "x" * 20_001)
    with pytest.raises(InvalidInput, match="Unknown entry kind"):
        await add(session, responder, incident, "hi", kind="declared")
    with pytest.raises(InvalidInput, match="future"):
        await add(session, responder, incident, "hi", occurred_at=frozen_clock.now + timedelta(hours=1))
    with pytest.raises(InvalidInput, match="time zone"):
        await add(session, responder, incident, "hi", occurred_at=datetime(2026, 11, 23, 13, 0))
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    assert [e.kind for e in entries] == ["declared"]


async def test_a_double_submit_with_the_same_client_key_writes_one_entry(session, app, responder, incident):
    async def post():
        async with app.state.sessionmaker() as s:
            return (await add(s, responder, incident, "Failing over", client_key="k-123")).id

    ids = await asyncio.gather(post(), post(), post())
    assert len(set(ids)) == 1
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    assert [e.body for e in entries].count("Failing over") == 1
    revisions = await session.scalars(select(TimelineRevision).where(TimelineRevision.entry_id == ids[0]))
    assert [(r.revision, r.body) for r in revisions] == [(1, "Failing over")]


async def test_an_entry_for_an_unknown_incident_is_refused_and_writes_nothing(session, responder, incident):
    for client_key in (None, "k-1"):
        with pytest.raises(NotFound, match="No incident INC-20990101-01"):
            await service.add_timeline_entry(
                session, actor=responder, ref="INC-20990101-01", kind="note", body="hi", client_key=client_key
            )
    assert await session.scalar(select(func.count()).select_from(TimelineEntry)) == 1  # the declaration
    assert await session.scalar(select(func.count()).select_from(TimelineRevision)) == 0


async def test_editing_makes_a_new_revision_and_keeps_every_earlier_one(session, responder, incident):
    entry = await add(session, responder, incident, "Restarted db-1")
    edited = await service.edit_timeline_entry(
        session, actor=responder, entry_id=entry.id, body="Restarted db-2"
    )
    assert (edited.id, edited.revision, edited.body) == (entry.id, 2, "Restarted db-2")
    _, revisions = await service.get_timeline_entry(session, entry_id=entry.id)
    assert [(r.revision, r.body) for r in revisions] == [(1, "Restarted db-1"), (2, "Restarted db-2")]
    with pytest.raises(Conflict):
        await service.edit_timeline_entry(session, actor=responder, entry_id=entry.id, body="Restarted db-2")


async def test_only_the_author_or_an_admin_edits_an_entry(session, responder, admin, make_user, incident):
    other = await make_user("responder")
    entry = await add(session, responder, incident, "typo hree")
    with pytest.raises(NotPermitted):
        await service.edit_timeline_entry(session, actor=other, entry_id=entry.id, body="typo here")
    edited = await service.edit_timeline_entry(session, actor=admin, entry_id=entry.id, body="typo here")
    assert edited.revision == 2


async def test_state_change_entries_cannot_be_edited_or_redacted(session, responder, incident):
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    declared = entries[0]
    with pytest.raises(NotPermitted):
        await service.edit_timeline_entry(session, actor=responder, entry_id=declared.id, body="nothing")
    with pytest.raises(NotPermitted):
        await service.redact_timeline_entry(session, actor=responder, entry_id=declared.id, reason="x")


async def test_redaction_removes_the_text_of_every_revision_and_keeps_who_when_and_why(
    session, responder, incident, frozen_clock
):
    entry = await add(session, responder, incident, "password is hunter2")
    await service.edit_timeline_entry(session, actor=responder, entry_id=entry.id, body="password is hunter3")
    with pytest.raises(InvalidInput, match="reason is required"):
        await service.redact_timeline_entry(session, actor=responder, entry_id=entry.id, reason="")
    redacted = await service.redact_timeline_entry(
        session, actor=responder, entry_id=entry.id, reason="pasted a secret"
    )
    assert redacted.redacted_at == frozen_clock.now
    assert redacted.redacted_by.name == "Rita Responder"
    assert redacted.redaction_reason == "pasted a secret"
    bodies = await session.scalars(select(TimelineRevision.body).where(TimelineRevision.entry_id == entry.id))
    assert list(bodies) == [None, None]
    entries, _ = await service.list_timeline(session, ref=incident.ref)
    assert all("hunter" not in e.body for e in entries)
    with pytest.raises(Conflict, match="redacted"):
        await service.edit_timeline_entry(session, actor=responder, entry_id=entry.id, body="again")


async def test_the_incident_commander_may_redact_someone_elses_entry(session, responder, make_user, incident):
    other = await make_user("responder")
    entry = await add(session, other, incident, "customer email a@b.c")
    with pytest.raises(NotPermitted):
        await service.redact_timeline_entry(session, actor=responder, entry_id=entry.id, reason="PII")
    await service.assign_role(
        session, actor=responder, ref=incident.ref, role="incident_commander", email=responder.email
    )
    redacted = await service.redact_timeline_entry(session, actor=responder, entry_id=entry.id, reason="PII")
    assert redacted.redacted_at is not None


async def test_after_returns_only_entries_logged_since_an_id(session, responder, incident):
    first = await add(session, responder, incident, "one")
    await add(session, responder, incident, "two")
    newer, _ = await service.list_timeline(session, ref=incident.ref, after=first.id)
    assert [e.body for e in newer] == ["two"]


def test_markdown_in_entries_renders_but_raw_html_and_script_links_stay_inert():
    html = render_markdown("**bold** <script>alert(1)</script> [x](javascript:alert(1)) `<b>`")
    assert "<strong>bold</strong>" in html
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert "<code>&lt;b&gt;</code>" in html


NOW = datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("typed", "kind", "body", "at"),
    [
        ("Paged the DBA", "note", "Paged the DBA", None),
        ("/d Fail over to eu-west", "decision", "Fail over to eu-west", None),
        ("/A restart web", "action", "restart web", None),
        ("@14:02 restarted primary", "note", "restarted primary", datetime(2026, 11, 23, 14, 2, tzinfo=UTC)),
        ("/a @9:05 drained node", "action", "drained node", datetime(2026, 11, 23, 9, 5, tzinfo=UTC)),
        ("@23:50 late deploy", "note", "late deploy", datetime(2026, 11, 22, 23, 50, tzinfo=UTC)),
        ("/dev/null is full", "note", "/dev/null is full", None),
    ],
)
def test_the_scribes_shorthand_sets_kind_and_time(typed, kind, body, at):
    assert parse_entry(typed, kind="note", at=None, tz="UTC", now=NOW) == (kind, body, at)


def test_a_back_dated_time_is_read_in_the_scribes_time_zone():
    _, _, at = parse_entry("@15:02 rollback", kind="note", at=None, tz="Europe/Madrid", now=NOW)
    assert at == datetime(2026, 11, 23, 14, 2, tzinfo=UTC)
    _, _, at = parse_entry("rollback", kind="note", at="09:30", tz="Not/AZone", now=NOW)
    assert at == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("at", ["25:99", "noon", "7"])
def test_a_bad_time_is_refused_with_a_message(at):
    with pytest.raises(InvalidInput, match=r"HH:MM|not a time"):
        parse_entry("x", kind="note", at=at, tz="UTC", now=NOW)
