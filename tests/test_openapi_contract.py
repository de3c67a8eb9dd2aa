"""The OpenAPI document at /api/v1/openapi.json is true: it is valid OpenAPI, declares one error
body and the bearer scheme; schemathesis drives every operation of a real server (uvicorn on the
test database) with a responder's token, and the intakes with their development credentials,
and fails on any 5xx or contract violation; openapi-core validates real answers against it.

Bounded: a few examples per operation, derandomized, no shrinking, so the whole module takes
about a minute on a loaded 2-core machine and a run is the same every time."""

import hashlib
import hmac
import json
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_spec_validator import validate
from schemathesis import GenerationMode

from app.alerts.config import DEV_CREDENTIALS
from app.auth import service as accounts
from app.main import create_app
from tests import support

live_server = support.live_server

DOCUMENT = "/api/v1/openapi.json"
UNUSED_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/unused"  # the document needs none
ALERTMANAGER_TOKEN = DEV_CREDENTIALS["ICC_ALERTMANAGER_TOKEN"]
GRAFANA_TOKEN = DEV_CREDENTIALS["ICC_GRAFANA_TOKEN"]
ROUTING_KEY = DEV_CREDENTIALS["ICC_PAGERDUTY_ROUTING_KEYS"]
WEBHOOK_SECRET = DEV_CREDENTIALS["ICC_ALERT_WEBHOOK_SECRET"].encode()
# Schema-valid requests these operations refuse by a rule no schema can state, with a 422 they
# declare: an email that names no active user, a time outside the last 30 days, and the
# senders' own formats (the intakes take any JSON object and read it as the sender wrote it).
REFUSED_BY_RULES = (
    r"^/api/v1/incidents/\{ref\}/roles/",
    r"^/api/v1/incidents/\{ref\}/timeline$",
    r"^/api/v1/alerts/(alertmanager|grafana|generic|pagerduty)",
    r"^/v2/",
)
CONFIG = {
    "seed": 20261203,
    "cache": {"enabled": False},  # nothing kept between runs: each is the same
    "generation": {"max-examples": 4, "no-shrink": True, "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
    "checks": {"enabled": True},
    "operations": [
        # PUT and DELETE /roles/{role} answer at /roles/sme too, so its Allow names them.
        {
            "include-path": "/api/v1/incidents/{ref}/roles/sme",
            "checks": {"allow_header_conformance": {"enabled": False}},
        },
        *(
            {"include-path-regex": path, "checks": {"positive_data_acceptance": {"enabled": False}}}
            for path in REFUSED_BY_RULES
        ),
        {
            "include-path-regex": "^/api/v1/alerts/alertmanager",
            "headers": {"Authorization": f"Bearer {ALERTMANAGER_TOKEN}"},
        },
        {
            "include-path-regex": "^/api/v1/alerts/grafana",
            "headers": {"Authorization": f"Bearer {GRAFANA_TOKEN}"},
        },
    ],
}


@pytest.fixture(scope="module")
def document(live_server: str) -> dict:
    answer = requests.get(live_server + DOCUMENT, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_the_document_is_valid_openapi_with_our_error_body_and_the_bearer_scheme(document: dict) -> None:
    validate(document)
    assert document == schema.raw_schema
    components = document["components"]
    assert components["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token from `icc token create` (browsers use their session cookie instead).",
    }
    assert components["schemas"]["Error"]["required"] == ["detail", "code"]
    assert "HTTPValidationError" not in json.dumps(document)
    declare = document["paths"]["/api/v1/incidents"]["post"]
    assert declare["security"] == [{"bearerAuth": []}]
    assert sorted(declare["responses"]) == ["201", "400", "401", "403", "413", "422"]
    assert declare["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    status = document["paths"]["/api/v1/status"]["get"]
    assert "security" not in status
    assert status["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/StatusSummary"
    }
    enqueue = document["paths"]["/v2/enqueue"]["post"]["responses"]
    assert enqueue["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/PagerDutyErrorOut"
    }


@pytest.fixture
async def responder_token(make_user, session) -> str:
    user = await make_user("responder", name="Rita Responder")
    return await accounts.create_api_token(session, email=user.email, name="contract tests")


def _as_a_sender_would(case: schemathesis.Case) -> dict:
    """A schema-valid intake delivery carries the development credentials that no schema can
    name: PagerDuty's routing_key in the body, the generic source's signature over the bytes."""
    if case.meta.generation.mode is not GenerationMode.POSITIVE:
        return {}
    if isinstance(case.body, dict) and "routing_key" in case.body:
        case.body["routing_key"] = ROUTING_KEY
    if case.operation.path.startswith("/api/v1/alerts/generic") and "X-ICC-Timestamp" in (case.headers or {}):
        raw = json.dumps(case.body).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(WEBHOOK_SECRET, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        case.headers.update({"X-ICC-Timestamp": stamp, "X-ICC-Signature": f"sha256={signature}"})
        return {"data": raw}
    return {}


# The document the app serves (the first test checks that it is this one), built without a server.
schema = schemathesis.openapi.from_dict(
    create_app(UNUSED_DATABASE).openapi(), config=schemathesis.Config.from_dict(CONFIG)
)


def _credentials(case: schemathesis.Case, token: str) -> dict[str, str]:
    """A responder's API token, or an intake's own credentials."""
    path = case.operation.path
    if path.startswith("/api/v1/alerts/alertmanager"):
        return {"Authorization": f"Bearer {ALERTMANAGER_TOKEN}"}
    if path.startswith("/api/v1/alerts/grafana"):
        return {"Authorization": f"Bearer {GRAFANA_TOKEN}"}
    if path.startswith(("/api/v1/alerts/generic", "/api/v1/alerts/pagerduty", "/v2/")):
        return {}
    return {"Authorization": f"Bearer {token}"}


@schema.parametrize()
@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_answers_as_its_document_says(
    case: schemathesis.Case, live_server: str, responder_token: str
) -> None:
    case.call_and_validate(
        base_url=live_server, headers=_credentials(case, responder_token), **_as_a_sender_would(case)
    )


@pytest.fixture(scope="module")
def openapi(document: dict) -> OpenAPI:
    return OpenAPI.from_dict(document)


def _checked(openapi: OpenAPI, answer: requests.Response) -> requests.Response:
    """The request and its answer, validated against the document by openapi-core."""
    openapi.validate_request(RequestsOpenAPIRequest(answer.request))
    openapi.validate_response(RequestsOpenAPIRequest(answer.request), RequestsOpenAPIResponse(answer))
    return answer


def test_real_answers_validate_against_the_document(
    openapi: OpenAPI, live_server: str, responder_token: str
) -> None:
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {responder_token}"
    # The README's example, as it is written there.
    declared = _checked(
        openapi,
        api.post(
            f"{live_server}/api/v1/incidents",
            json={"title": "Checkout returns 502", "severity": "SEV1", "services": ["checkout"]},
        ),
    )
    assert declared.status_code == 201, declared.text
    ref = declared.json()["ref"]
    entry = _checked(
        openapi,
        api.post(
            f"{live_server}/api/v1/incidents/{ref}/timeline", json={"kind": "decision", "body": "Roll back"}
        ),
    )
    assert entry.status_code == 201 and entry.json()["kind"] == "decision"
    assert _checked(openapi, api.post(f"{live_server}/api/v1/incidents/{ref}/acknowledge")).status_code == 200

    again = _checked(openapi, api.post(f"{live_server}/api/v1/incidents/{ref}/acknowledge"))
    assert again.status_code == 409
    assert again.json() == {"detail": f"{ref} was already acknowledged.", "code": "conflict"}
    missing = _checked(openapi, api.get(f"{live_server}/api/v1/incidents/INC-20000101-01"))
    assert missing.status_code == 404
    assert missing.json() == {"detail": "No incident INC-20000101-01.", "code": "not_found"}
    blank = api.post(f"{live_server}/api/v1/incidents", json={"title": " ", "severity": "SEV1"})
    openapi.validate_response(RequestsOpenAPIRequest(blank.request), RequestsOpenAPIResponse(blank))
    assert blank.status_code == 422  # the request breaks the document too: only the answer is checked
    assert blank.json() == {"detail": "Title is required.", "code": "invalid_input"}

    summary = _checked(openapi, requests.get(f"{live_server}/api/v1/status", timeout=10))
    assert summary.status_code == 200
    assert summary.json()["status"] == {"indicator": "critical", "description": "Checkout is down"}
    assert [i["impact"] for i in summary.json()["incidents"]] == ["critical"]


async def test_an_undeclared_method_is_a_405_naming_every_method_of_the_path_in_our_error_body(
    client,
) -> None:
    wrong = await client.get("/api/v1/alerts/grafana")  # not an alert id: the path takes POST and PUT
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST, PUT"
    assert wrong.json() == {"detail": "That method is not allowed here.", "code": "method_not_allowed"}
    pagerduty = await client.request("TRACE", "/v2/enqueue")
    assert pagerduty.status_code == 405 and pagerduty.headers["allow"] == "POST"
    assert pagerduty.json()["code"] == "method_not_allowed"


async def test_a_time_must_be_an_rfc_3339_date_time_and_a_parameter_comes_once(api_as, responder) -> None:
    api = await api_as(responder)
    seconds = await api.get("/api/v1/alerts", params={"since": "0.5"})
    assert seconds.status_code == 422
    assert seconds.json()["detail"].startswith("since: should be an RFC 3339 date-time with an offset")
    assert (
        await api.get("/api/v1/change-events", params={"since": "2026-11-23T14:02:00Z"})
    ).status_code == 200
    twice = await api.get("/api/v1/incidents?status=triage&status=resolved")
    assert twice.status_code == 422
    assert twice.json() == {"detail": "status: give this query parameter once.", "code": "invalid_input"}
