"""Domain errors. Each carries its HTTP status and any headers its answer needs; one handler in
web.py renders it."""


class DomainError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers


class InvalidInput(DomainError):
    status_code = 422
    code = "invalid_input"


class NotAuthenticated(DomainError):
    status_code = 401
    code = "not_authenticated"


class NotPermitted(DomainError):
    status_code = 403
    code = "not_permitted"


class NotFound(DomainError):
    status_code = 404
    code = "not_found"


class Conflict(DomainError):
    status_code = 409
    code = "conflict"


class Gone(DomainError):
    status_code = 410
    code = "gone"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class RateLimited(DomainError):
    """Too many attempts: a 429 whose Retry-After says how many seconds to wait."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after)})
