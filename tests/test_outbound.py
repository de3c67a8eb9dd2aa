"""What the product sends out: escalation webhooks go through the one outgoing-request guard
(app/outbound.py), against real HTTP receivers on 127.0.0.1, and their Slack text cannot be
turned against the people who read it."""

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app.config import ConfigError
from app.escalation import service
from app.escalation.config import load_escalation_policy
from app.escalation.models import Escalation, EscalationNotification
from app.incidents import service as incidents
from tests.conftest import sign_in

HOSTILE_TITLE = "Checkout <!channel> 502s & <https://evil.example/login|sign in here>"


class Receiver:
    """A real HTTP server that records every request it gets; /redirect answers 302 to /hook."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", f"{receiver.url}/hook")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = do_CONNECT = do_POST

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def paths(self) -> list[str]:
        with self.lock:
            return [r["path"] for r in self.requests]

    def texts(self) -> list[str]:
        with self.lock:
            return [json.loads(r["body"])["text"] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def proxy() -> Iterator[Receiver]:
    """Where HTTP(S)_PROXY points in one test: it must hear nothing."""
    r = Receiver()
    yield r
    r.close()


def policy(url: str, *, allow_private: list[str] | None = None, name: str = "Incident channel") -> str:
    head = f"[escalation]\nallow_private = {json.dumps(allow_private)}\n" if allow_private else ""
    return (
        head + "[[escalation.SEV1]]\n"
        f'name = "{name}"\nafter = "20s"\nwhen = "unacknowledged"\n'
        f'notify = ["role:admin", "webhook:{url}"]\n'
    )


async def escalate(session, responder, frozen_clock, title: str = "Checkout returns 502"):
    """Declare a SEV1, let its 20 s step fire and make one delivery; the incident and the row."""
    incident = await incidents.declare_incident(session, actor=responder, title=title, severity="SEV1")
    frozen_clock.advance(seconds=21)
    assert await service.fire_due_steps(session) == [incident.ref]
    assert await service.deliver_notifications(session) == 1
    note = await session.scalar(select(EscalationNotification).execution_options(populate_existing=True))
    return incident, note


# ---------------------------------------------------------------- the guard


async def test_a_loopback_webhook_is_refused_without_allow_private_and_nothing_reaches_it(
    icc_toml, session, responder, frozen_clock, receiver, client
):
    icc_toml(policy(f"{receiver.url}/hook"))
    incident, note = await escalate(session, responder, frozen_clock)
    assert receiver.paths() == []
    reason = "Refused: 127.0.0.1 resolves to 127.0.0.1, a loopback address, and is not in [escalation] "
    reason += "allow_private."
    assert (note.state, note.attempts, note.last_error) == ("failed", 1, reason)
    # A refusal is permanent: it fails at once and is not tried again.
    frozen_clock.advance(hours=1)
    assert await service.deliver_notifications(session) == 0
    [view] = await service.escalations_of(session, incident_id=incident.id)
    assert view.failed_deliveries == [reason]
    await sign_in(client, responder)
    page = (await client.get(f"/incidents/{incident.ref}")).text
    assert f"Notifying Incident channel failed: {reason}" in page


async def test_a_loopback_webhook_is_delivered_when_its_host_is_in_allow_private(
    icc_toml, session, responder, frozen_clock, receiver
):
    icc_toml(policy(f"{receiver.url}/hook", allow_private=["127.0.0.1"]))
    _incident, note = await escalate(session, responder, frozen_clock)
    assert (note.state, note.attempts, note.last_error) == ("sent", 1, None)
    [request] = receiver.requests
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Host"] == f"127.0.0.1:{receiver.port}"


async def test_a_name_is_checked_by_the_address_it_resolves_to(
    icc_toml, session, responder, frozen_clock, receiver
):
    icc_toml(policy(f"http://localhost:{receiver.port}/hook"))
    _incident, note = await escalate(session, responder, frozen_clock)
    assert receiver.paths() == []
    assert note.state == "failed"
    assert note.last_error.startswith("Refused: localhost resolves to ")
    assert "a loopback address, and is not in [escalation] allow_private." in note.last_error


async def test_a_redirect_from_a_webhook_is_not_followed(
    icc_toml, session, responder, frozen_clock, receiver
):
    icc_toml(policy(f"{receiver.url}/redirect", allow_private=["127.0.0.1"]))
    _incident, note = await escalate(session, responder, frozen_clock)
    assert receiver.paths() == ["/redirect"]
    assert (note.state, note.last_error) == ("pending", "Redirect not followed.")


async def test_a_proxy_from_the_environment_is_not_used(
    icc_toml, session, responder, frozen_clock, receiver, proxy, monkeypatch
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    icc_toml(policy(f"{receiver.url}/hook", allow_private=["127.0.0.1"]))
    _incident, note = await escalate(session, responder, frozen_clock)
    assert note.state == "sent"
    assert receiver.paths() == ["/hook"]
    assert proxy.requests == []


async def test_a_webhook_removed_from_the_policy_is_no_longer_delivered(
    icc_toml, session, responder, frozen_clock, receiver
):
    icc_toml(policy(f"{receiver.url}/redirect", allow_private=["127.0.0.1"]))
    _incident, note = await escalate(session, responder, frozen_clock)
    icc_toml(policy("https://hooks.example.com/services/T0/B0/x"))
    frozen_clock.now = note.next_attempt_at
    assert await service.deliver_notifications(session) == 1
    await session.refresh(note)
    assert note.state == "failed"
    assert note.last_error == f"Refused: 127.0.0.1:{receiver.port} is not on the escalation allowlist."
    assert receiver.paths() == ["/redirect"]


@pytest.mark.parametrize(
    ("allow_private", "message"),
    [
        ('"127.0.0.1"', "escalation.allow_private: give a list of host names"),
        ('["hooks.internal"]', "'hooks.internal' is not the host of a webhook: target (they are: 127.0.0.1)"),
        ('["127.0.0.1:8080"]', "'127.0.0.1:8080' is not the host of a webhook: target"),
    ],
)
def test_a_broken_allow_private_is_refused_with_a_clear_message(tmp_path, allow_private, message):
    path = tmp_path / "icc.toml"
    path.write_text(
        f"[escalation]\nallow_private = {allow_private}\n"
        '[[escalation.SEV1]]\nnotify = ["webhook:http://127.0.0.1:8080/hook"]\n'
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_escalation_policy(path)


@pytest.mark.parametrize(
    "url",
    ["http://", "https://:443/x", "http://h:port/x", "https://u:p@hooks.example.com/x", "https://:p@h/x"],
)
def test_a_webhook_target_needs_a_host_and_no_credentials(tmp_path, url):
    path = tmp_path / "icc.toml"
    path.write_text(f'[[escalation.SEV1]]\nnotify = ["webhook:{url}"]\n')
    with pytest.raises(ConfigError, match="needs an http\\(s\\) URL with a host, without credentials"):
        load_escalation_policy(path)


def test_the_webhook_hosts_of_the_policy_are_its_allowlist(tmp_path):
    path = tmp_path / "icc.toml"
    path.write_text(
        '[escalation]\nallow_private = ["Alerts.Internal"]\n'
        '[[escalation.SEV1]]\nnotify = ["webhook:https://hooks.slack.com/services/T0/B0/x"]\n'
        '[[escalation.SEV2]]\nnotify = ["webhook:http://alerts.internal:9000/hook"]\n'
    )
    policy = load_escalation_policy(path)
    assert policy.allowlist == ("hooks.slack.com:443", "alerts.internal:9000")
    assert policy.allow_private == ("alerts.internal",)


# ---------------------------------------------------------------- the Slack text


async def test_a_hostile_title_reaches_slack_as_text(icc_toml, session, responder, frozen_clock, receiver):
    icc_toml(policy(f"{receiver.url}/hook", allow_private=["127.0.0.1"], name="On-call <!here>"))
    incident, _note = await escalate(session, responder, frozen_clock, title=HOSTILE_TITLE)
    [text] = receiver.texts()
    assert "&lt;!channel&gt;" in text
    assert "&lt;https://evil.example/login|sign in here&gt;" in text
    assert "502s &amp; " in text
    assert "On-call &lt;!here&gt;" in text
    assert "<" not in text and ">" not in text, "no mention, no link: without ICC_PUBLIC_URL the ref is text"
    assert text.startswith(f"[SEV1] {incident.ref} Checkout &lt;!channel&gt; 502s")


async def test_with_a_public_url_the_message_links_the_incident(
    icc_toml, session, responder, frozen_clock, receiver, monkeypatch
):
    monkeypatch.setenv("ICC_PUBLIC_URL", "https://icc.example.com")
    icc_toml(policy(f"{receiver.url}/hook", allow_private=["127.0.0.1"]))
    incident, _note = await escalate(session, responder, frozen_clock, title=HOSTILE_TITLE)
    [text] = receiver.texts()
    link = f"<https://icc.example.com/incidents/{incident.ref}|{incident.ref}>"
    assert text.startswith(f"[SEV1] {link} Checkout &lt;!channel&gt; 502s &amp; &lt;https://evil.example/")
    assert text.count("<") == text.count(">") == 1, "the one link is ours"
    assert "<!channel>" not in text


@pytest.mark.parametrize(
    ("delay", "words"),
    [
        (timedelta(0), "at once"),
        (timedelta(seconds=20), "after 20 s"),
        (timedelta(seconds=90), "after 1 min 30 s"),
        (timedelta(minutes=30), "after 30 min"),
        (timedelta(hours=2), "after 2 h"),
        (timedelta(hours=1, minutes=15), "after 1 h 15 min"),
    ],
)
def test_a_step_delay_is_said_as_it_is(delay, words):
    assert service.delay_words(delay) == words


async def test_a_sub_minute_step_says_its_seconds_on_the_timeline_and_the_banner(
    icc_toml, session, responder, frozen_clock, receiver
):
    icc_toml(policy(f"{receiver.url}/hook", allow_private=["127.0.0.1"]))
    incident, _note = await escalate(session, responder, frozen_clock)
    entries, _ = await incidents.list_timeline(session, ref=incident.ref)
    [entry] = [e.body for e in entries if e.kind == "escalation"]
    assert (
        entry == "Escalated to Incident channel (after 20 s without acknowledgement). Notified: role:admin."
    )
    assert await session.scalar(select(Escalation.reason)) == "after 20 s without acknowledgement"
    [view] = await service.escalations_of(session, incident_id=incident.id)
    assert view.reason == "after 20 s without acknowledgement"
    assert receiver.texts()[0].endswith(f"{incident.ref} Checkout returns 502: {entry}")
