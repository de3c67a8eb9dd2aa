"""The refusals of an alert delivery, each with its status; a rate limit is app.errors.RateLimited."""

from app.errors import Conflict, DomainError, NotAuthenticated, NotFound


class UnknownSource(NotFound):
    """No configured source has this name (or, for PagerDuty, holds this routing key)."""

    code = "unknown_source"


class BadJson(DomainError):
    """The body is empty, not UTF-8, not JSON, or nested too deeply to read."""

    status_code = 400
    code = "invalid_json"


class InvalidPayload(DomainError):
    """The delivery is JSON but not the sender's documented shape, or holds what no store keeps."""

    status_code = 422
    code = "invalid_payload"


class BadCredentials(NotAuthenticated):
    """A missing or wrong token, password, signature or routing key."""

    code = "bad_credentials"


class Replayed(Conflict):
    """A signed delivery seen before, within the signature's freshness window."""

    code = "replayed"


class InvalidEvent(DomainError):
    """A refusal on PagerDuty's Events API paths, answered as PagerDuty does: 400 "invalid event"
    (its clients treat every 4xx alike; the message names the field)."""

    status_code = 400
    code = "invalid_event"
