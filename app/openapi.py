"""The OpenAPI document's shared parts: the one error body, the statuses an operation declares,
and the credentials of the alert intakes (which are not our API tokens)."""

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class Error(BaseModel):
    """Every refusal and failure of the API (app/web.py renders it)."""

    detail: str = Field(description="What is wrong, for a person; a field's problem starts with its name")
    code: str = Field(description="The kind of refusal: invalid_json, invalid_input, not_found, conflict...")


REASONS = {
    304: "Not modified since the copy the client has (its ETag or Last-Modified)",
    400: "The body is not JSON we can read",
    401: "No valid API token (or session)",
    403: "Not allowed for this user (a viewer, a role rule, or a browser form's CSRF token)",
    404: "Nothing by that name or id",
    409: "Refused by the resource's current state",
    410: "Expired",
    413: "The body is larger than 1 MiB",
    422: "A field is missing, of the wrong shape, or not allowed; the detail starts with the field's name",
    429: "Too many requests: retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 0}}}


def errors(*statuses: int, model: type[BaseModel] = Error) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: each status with its reason and the error body."""
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        declared[status] = {"model": model, "description": REASONS[status]}
        if status == 429:
            declared[status]["headers"] = RETRY_AFTER
    return declared


# Read with no body (path or query parameters): 401, 404 for a named row, 422 for a bad parameter.
READ = errors(401, 422)
READ_ONE = errors(401, 404, 422)
# A change: 403 for viewers (and a browser form without its CSRF token); with a JSON body also
# 400 (not JSON), 413 (too large) and 422 (a bad field).
CHANGE = errors(401, 403, 404, 409, 422)
CHANGE_WITH_BODY = errors(400, 401, 403, 404, 409, 413, 422)

# The alert intakes authenticate senders with the senders' own credentials (icc.toml's sources).
INTAKE_SECURITY_SCHEMES = {
    "alertmanagerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The source's token (`ICC_ALERTMANAGER_TOKEN` for the default source)",
    },
    "grafanaToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The source's token (`ICC_GRAFANA_TOKEN` for the default source)",
    },
    "sourceBasicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "Only for an Alertmanager or Grafana source with basic_user and basic_password_env",
    },
    "alertSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-ICC-Signature",
        "description": 'sha256=<hex HMAC-SHA256 of "<X-ICC-Timestamp>.<raw body>"> with the source\'s secret '
        "(`ICC_ALERT_WEBHOOK_SECRET` for the default source); older than 5 minutes or seen before: refused",
    },
}
BEARER_DESCRIPTION = "An API token from `icc token create` (browsers use their session cookie instead)."


FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def document(app: FastAPI) -> dict[str, Any]:
    """The document FastAPI builds from the routes, with the intakes' credentials added and
    without FastAPI's own 422 (`detail` as a list), which this API never sends: each operation
    declares the statuses it answers (`errors`), its 422 among them when it has one."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for operations in schema["paths"].values():
            for operation in operations.values():
                refused = operation["responses"].get("422", {})
                if refused.get("content", {}).get("application/json", {}).get("schema") == {
                    "$ref": FASTAPI_422
                }:
                    del operation["responses"]["422"]
        components = schema.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        components.setdefault("securitySchemes", {}).update(INTAKE_SECURITY_SCHEMES)
        app.openapi_schema = schema
    return app.openapi_schema
