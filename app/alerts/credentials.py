"""Who may send a delivery: Alertmanager's and Grafana's bearer token or basic auth, a generic
sender's HMAC signature of "<timestamp>.<body>", PagerDuty's routing key. Secrets are compared in
constant time; every refusal is BadCredentials saying what the source expects."""

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta

from app.alerts.config import Source
from app.alerts.errors import BadCredentials

TIMESTAMP_HEADER = "X-ICC-Timestamp"
SIGNATURE_HEADER = "X-ICC-Signature"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def check_credentials(source: Source, headers: Mapping[str, str]) -> None:
    """Alertmanager and Grafana: a bearer token or HTTP basic auth, compared in constant time."""
    sent = _header(headers, "Authorization") or ""
    scheme, _, value = sent.partition(" ")
    if source.token and scheme.lower() == "bearer":
        if hmac.compare_digest(value.strip().encode(), source.token.encode()):
            return
        raise BadCredentials(f"The bearer token is not the one configured for source {source.name!r}.")
    if source.basic_user and scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise BadCredentials("The basic auth header is not valid base64 of user:password.") from None
        if hmac.compare_digest(user.encode(), source.basic_user.encode()) and hmac.compare_digest(
            password.encode(), (source.basic_password or "").encode()
        ):
            return
        raise BadCredentials(f"The basic auth user or password is wrong for source {source.name!r}.")
    wanted = "Authorization: Bearer <token>" if source.token else "HTTP basic auth"
    if scheme.lower() == "basic":
        raise BadCredentials(
            f"Source {source.name!r} takes no basic auth (it has no basic_user and "
            f"basic_password_env): send {wanted}."
        )
    raise BadCredentials(f"Source {source.name!r} needs {wanted}.")


def sign_alert_delivery(secret: str, timestamp: str, body: bytes) -> str:
    """The X-ICC-Signature a generic sender puts on a delivery: HMAC-SHA256 of "<ts>.<body>"."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def check_signature(
    source: Source, headers: Mapping[str, str], body: bytes, *, now: datetime, tolerance: timedelta
) -> str:
    """Verify a generic webhook's signature and the freshness of its timestamp; returns the
    digest that marks this delivery as seen."""
    assert source.secret is not None
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not timestamp or not signature:
        raise BadCredentials(
            f"A signed delivery needs the {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers."
        )
    if not timestamp.strip().isdigit():
        raise BadCredentials(f"{TIMESTAMP_HEADER} must be the Unix time in seconds.")
    if not hmac.compare_digest(
        signature.strip().encode(), sign_alert_delivery(source.secret, timestamp.strip(), body).encode()
    ):
        raise BadCredentials(
            f"{SIGNATURE_HEADER} does not match: sign '<timestamp>.<raw body>' with HMAC-SHA256 "
            f"and the secret of source {source.name!r}."
        )
    age = now.timestamp() - int(timestamp)
    if abs(age) > tolerance.total_seconds():
        raise BadCredentials(
            f"{TIMESTAMP_HEADER} is {int(abs(age))} s {'old' if age > 0 else 'in the future'}; "
            f"at most {int(tolerance.total_seconds())} s is accepted (replay protection)."
        )
    return hashlib.sha256(signature.strip().encode()).hexdigest()


def check_routing_key(source: Source, payload: object) -> None:
    """PagerDuty: the event's routing_key must be one of the source's integration keys."""
    key = payload.get("routing_key") if isinstance(payload, dict) else None
    if not isinstance(key, str) or not key:
        raise BadCredentials(f"routing_key: required (an integration key of source {source.name!r}).")
    if key not in source.routing_keys:
        raise BadCredentials(f"routing_key is not an integration key of source {source.name!r}.")
