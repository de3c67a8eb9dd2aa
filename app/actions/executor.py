"""The executor: sign a confirmed run and send it once through the outgoing-request guard.

Where it may go, how it is sent and how much of the answer is read is app/outbound.py, the same
for every request the product sends; the catalog is the actions' policy for it.
"""

import hashlib
import hmac
import os

from app import outbound
from app.actions.catalog import ENV_REF, Catalog
from app.outbound import SendRefused

RUN_ID_HEADER = "X-ICC-Run-Id"
SIGNATURE_HEADER = "X-ICC-Signature"


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
