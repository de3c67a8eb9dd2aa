"""The executor: the request a run sends, filled in for its incident when it is prepared (so the
preview is what is sent), then signed once confirmed and sent once through the outgoing-request
guard.

Where it may go, how it is sent and how much of the answer is read is app/outbound.py, the same
for every request the product sends; the catalog is the actions' policy for it.
"""

import hashlib
import hmac
import json
import os

from app import outbound
from app.actions.catalog import BODY_FIELD, ENV_REF, ActionSpec, Catalog
from app.auth.models import User
from app.incidents.models import Incident
from app.outbound import SendRefused

RUN_ID_HEADER = "X-ICC-Run-Id"
SIGNATURE_HEADER = "X-ICC-Signature"


def _fields(incident: Incident, actor: User, spec: ActionSpec) -> dict[str, object]:
    return {
        "ref": incident.ref,
        "title": incident.title,
        "severity": incident.severity,
        "status": incident.status,
        "services": list(incident.services),
        "user_email": actor.email,
        "user_name": actor.name,
        "action": spec.name,
    }


def _fill(value: object, fields: dict[str, object]) -> object:
    if isinstance(value, dict):
        return {k: _fill(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, fields) for v in value]
    if isinstance(value, str):
        if value == "{services}":
            return fields["services"]
        return BODY_FIELD.sub(
            lambda m: ", ".join(f) if isinstance(f := fields[m.group(1)], list) else str(f), value
        )
    return value


def render_request(spec: ActionSpec, incident: Incident, actor: User) -> tuple[dict[str, str], str]:
    """The headers (secrets still as references) and the exact body this incident's run sends."""
    headers = dict(spec.headers)
    if spec.body is None:
        return headers, ""
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return headers, json.dumps(_fill(spec.body, _fields(incident, actor, spec)), ensure_ascii=False)


def sign_action_request(secret: str, body: bytes) -> str:
    """The X-ICC-Signature of an action run's request: sha256=<hex HMAC-SHA256 of the body>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def resolve_headers(headers: dict[str, str]) -> dict[str, str]:
    """Replace ${env:NAME} with the variable's value, at send time only."""

    def value_of(match) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise SendRefused(f"the environment variable {name} (named in a header) is not set")
        return os.environ[name]

    return {name: ENV_REF.sub(value_of, value) for name, value in headers.items()}


async def send(
    catalog: Catalog,
    *,
    run_id: int,
    method: str,
    url: str,
    headers: dict[str, str],
    body: str,
    timeout: float,  # noqa: ASYNC109 - per action, enforced by outbound.send
) -> outbound.Outcome:
    """Send the run's request once, signed, and describe what came back. Never raises for the network."""
    try:
        sent_headers = resolve_headers(headers)
    except SendRefused as exc:
        return outbound.refusal(exc)
    content = body.encode()
    sent_headers |= {
        RUN_ID_HEADER: str(run_id),
        SIGNATURE_HEADER: sign_action_request(catalog.signing_secret, content),
    }
    return await outbound.send(
        catalog, method=method, url=url, headers=sent_headers, content=content, timeout=timeout
    )
