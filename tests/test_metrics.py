"""/metrics speaks the scraper's protocol exactly: Prometheus's classic text by default,
OpenMetrics when asked, no `_created` series, read back with the reference parsers and promtool."""

import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_classic

from app.incidents import service as incidents

# What Prometheus 2.x sends when it scrapes (scrape.acceptHeader, OpenMetrics first).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.fixture
async def scraped(client, session, responder):
    """A process with a little traffic behind it: labelled counters and histograms exist."""
    await incidents.declare_incident(session, actor=responder, title="Checkout down", severity="SEV2")
    for path in ("/healthz", "/readyz", "/status"):
        assert (await client.get(path)).status_code == 200

    async def scrape(accept: str | None = None):
        response = await client.get("/metrics", headers={"Accept": accept} if accept else {})
        assert response.status_code == 200
        return response

    return scrape


def samples(families) -> dict[str, list]:
    by_name: dict[str, list] = {}
    for family in families:
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


async def test_the_classic_text_format_has_no_created_series(scraped):
    response = await scraped()
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["vary"] == "Accept"
    found = samples(parse_classic(response.text))
    assert [name for name in found if name.endswith("_created")] == []
    assert "_created" not in response.text
    routes = {s.labels["route"] for s in found["icc_http_requests_total"]}
    assert {"/healthz", "/readyz", "/status"} <= routes
    assert "icc_http_request_duration_seconds_bucket" in found
    [sev2] = [s for s in found["icc_open_incidents"] if s.labels["severity"] == "SEV2"]
    assert sev2.value == 1


async def test_a_scraper_that_asks_for_openmetrics_gets_openmetrics(scraped):
    response = await scraped(PROMETHEUS_ACCEPT)
    assert response.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0;")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in parse_openmetrics(response.text)}
    found = samples(families.values())
    assert [name for name in found if name.endswith("_created")] == []
    assert families["icc_http_requests"].type == "counter"
    assert families["icc_http_request_duration_seconds"].type == "histogram"
    assert "icc_http_requests_total" in found and "icc_metrics_database_up" in found


async def test_a_scraper_that_asks_for_text_gets_the_classic_format(scraped):
    response = await scraped("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in response.text


async def test_promtool_accepts_the_exposition(scraped):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    response = await scraped()
    checked = subprocess.run(  # noqa: ASYNC221 - a short local check of a finished response
        [promtool, "check", "metrics"], input=response.text, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""
