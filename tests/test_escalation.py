"""Escalation steps fire once per incident, whoever runs the scheduler, and their webhooks are
delivered with retries whose failure is visible."""

import asyncio
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from app.config import ConfigError
from app.escalation import service
from app.escalation.config import load_escalation_policy
from app.escalation.models import Escalation, EscalationNotification
from app.incidents import service as incidents


class Receiver:
    """A real HTTP server on 127.0.0.1 that records what it is sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def policy_with_webhook(icc_toml, receiver):
    icc_toml(
        '[escalation]\nallow_private = ["127.0.0.1"]\n'
        "[[escalation.SEV1]]\n"
        'name = "Manager"\nafter = "30m"\nwhen = "unacknowledged"\n'
        f'notify = ["role:admin", "webhook:{receiver.url}"]\n'
        "[[escalation.SEV1]]\n"
        'name = "Director"\nafter = "60m"\nwhen = "unmitigated"\nnotify = ["person:director@example.com"]\n'
    )


def test_the_default_policy_follows_the_users_escalation_matrix(tmp_path):
    policy = load_escalation_policy(tmp_path / "none.toml").steps
    assert [(s.name, s.after, s.when) for s in policy["SEV1"]] == [
        ("On-call responders", timedelta(0), "unacknowledged"),
        ("Engineering manager", timedelta(minutes=30), "unmitigated"),
        ("VP of engineering", timedelta(hours=1), "unmitigated"),
    ]
    assert [s.after for s in policy["SEV2"]] == [timedelta(minutes=30), timedelta(hours=1)]
    assert [s.name for s in policy["SEV3"]] == ["Tech lead"]
    assert "SEV4" not in policy


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[escalation.SEV1]]\nwhen = "later"\nnotify = ["role:admin"]\n', "when: one of"),
        ('[[escalation.SEV1]]\nnotify = ["pager:42"]\n', "is not role:"),
        ('[[escalation.SEV1]]\nnotify = ["webhook:ftp://x"]\n', "needs an http"),
        ("[[escalation.SEV1]]\nnotify = []\n", "a list of targets"),
    ],
)
def test_a_broken_policy_is_refused_with_a_clear_message(tmp_path, toml, message):
    path = tmp_path / "icc.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_escalation_policy(path)


async def test_a_step_fires_once_when_due_even_with_several_schedulers_at_once(
    app, session, responder, frozen_clock, policy_with_webhook, receiver
):
    incident = await incidents.declare_incident(session, actor=responder, title="All down", severity="SEV1")
    frozen_clock.advance(minutes=29)

    async def tick():
        async with app.state.sessionmaker() as s:
            return await service.fire_due_steps(s)

    assert await asyncio.gather(tick(), tick()) == [[], []]
    frozen_clock.advance(minutes=2)
    results = await asyncio.gather(*(tick() for _ in range(6)))
    assert sorted(r for r in results if r) == [[incident.ref]]
    assert await session.scalar(select(func.count()).select_from(Escalation)) == 1
    entries, _ = await incidents.list_timeline(session, ref=incident.ref)
    escalated = [e for e in entries if e.kind == "escalation"]
    assert [e.body for e in escalated] == [
        "Escalated to Manager (after 30 min without acknowledgement). Notified: role:admin."
    ]
    assert escalated[0].author.name == "Escalation policy"

    async def deliver():
        async with app.state.sessionmaker() as s:
            return await service.deliver_notifications(s)

    await asyncio.gather(*(deliver() for _ in range(4)))
    assert len(receiver.bodies) == 1
    assert receiver.bodies[0]["text"].startswith(f"[SEV1] {incident.ref} All down: Escalated to Manager")


async def test_an_acknowledged_or_mitigated_incident_does_not_escalate_on_that_condition(
    session, responder, frozen_clock, policy_with_webhook
):
    incident = await incidents.declare_incident(session, actor=responder, title="x", severity="SEV1")
    await incidents.acknowledge_incident(session, actor=responder, ref=incident.ref)
    frozen_clock.advance(minutes=45)
    assert await service.fire_due_steps(session) == []
    await incidents.change_status(session, actor=responder, ref=incident.ref, status="monitoring")
    frozen_clock.advance(minutes=30)
    assert await service.fire_due_steps(session) == []


async def test_a_failing_webhook_is_retried_with_backoff_then_shown_as_failed(
    session, responder, frozen_clock, policy_with_webhook, receiver
):
    receiver.status = 500
    incident = await incidents.declare_incident(session, actor=responder, title="x", severity="SEV1")
    frozen_clock.advance(minutes=31)
    await service.fire_due_steps(session)
    waits = []
    for _ in range(service.MAX_ATTEMPTS):
        await service.deliver_notifications(session)
        note = await session.scalar(select(EscalationNotification).execution_options(populate_existing=True))
        waits.append(note.next_attempt_at - frozen_clock.now)
        assert await service.deliver_notifications(session) == 0  # not due again yet
        frozen_clock.now = note.next_attempt_at
    assert note.state == "failed" and note.attempts == service.MAX_ATTEMPTS
    assert note.last_error == "The receiver answered 500."
    assert waits[:4] == [
        timedelta(seconds=30),
        timedelta(seconds=60),
        timedelta(seconds=120),
        timedelta(seconds=240),
    ]
    assert len(receiver.bodies) == service.MAX_ATTEMPTS
    [view] = await service.escalations_of(session, incident_id=incident.id)
    assert view.failed_deliveries == ["The receiver answered 500."]
