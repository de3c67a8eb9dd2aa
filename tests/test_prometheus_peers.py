"""The real Prometheus and Alertmanager against the product, each a process on 127.0.0.1 with its
own configuration, storage and port: Alertmanager delivers to the product's receiver exactly as
the README configures it, Prometheus's alerting rules reach the product through Alertmanager, and
Prometheus scrapes /metrics.

Debian's `prometheus` (2.42, with promtool) and `prometheus-alertmanager` (0.25, with amtool)
packages provide them; .ci/run installs both. Their systemd services play no part: each binary is
started once for the module with a configuration written here. Without a binary the tests are
skipped, or fail when the CI environment variable is set.

Alertmanager's state outlives each test (the database does not), so every test fires alerts of its
own and resolves them before it ends.
"""

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import yaml

from app.alerts.config import DEV_CREDENTIALS
from tests import test_alerts
from tests.conftest import _libpq
from tests.support import REPO, free_port, stop, uvicorn_server, wait_until_healthy

_empty_alert_tables = test_alerts._empty_alert_tables  # the alert tests' clean-up, by name

T = TypeVar("T")
README = REPO / "README.md"
START_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 15.0
# Short enough for a test, in the order Alertmanager expects (group_wait <= group_interval <=
# repeat_interval): a repeat of a firing group comes every few seconds.
ROUTE_TIMING = {"group_wait": "1s", "group_interval": "1s", "repeat_interval": "3s"}
ALL_RESOLVED = "Every alert of this incident is resolved"
# What a scraper that reads only the classic text asks for (Prometheus 2.2 did, many agents still
# do). Prometheus 2.42 always asks for OpenMetrics first and has no setting to ask otherwise.
TEXT_ONLY_ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"


# --- the peers ---------------------------------------------------------------------------------


def installed(*names: str, package: str) -> str:
    """The first of `names` on PATH; skips the test when none is (fails it under CI)."""
    for name in names:
        if found := shutil.which(name):
            return found
    message = f"{names[0]} is missing: install it with `apt-get install -y {package}` (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Peer:
    """A process the tests talk to over HTTP, with the log shown when something does not come."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen | None = None

    def log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-4000:]


def eventually(
    probe: Callable[[], T | None], what: str, *peers: Peer, timeout: float = DELIVERY_TIMEOUT
) -> T:
    """Polls `probe` until it returns something truthy; fails naming `what`, with the peers' logs."""
    deadline = time.monotonic() + timeout
    while True:
        for peer in peers:
            if peer.process is not None and peer.process.poll() is not None:
                code = peer.process.returncode
                pytest.fail(f"{peer.name} exited with {code} while waiting for {what}:\n{peer.log()}")
        if found := probe():
            return found
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.log()}" for p in peers)
            pytest.fail(f"{what}: not within {timeout:g} s\n{logs}")
        time.sleep(0.2)


@contextmanager
def peer_process(name: str, command: list[str], folder: Path, url: str) -> Iterator[Peer]:
    """`command` running in `folder` until the test module ends; yields once /-/ready answers."""
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        peer = Peer(name, url, log_path, process)
        try:
            wait_until_healthy(url, process, name=name, log=peer.log, timeout=START_TIMEOUT, path="/-/ready")
            yield peer
        finally:
            stop(process)


def check_with(tool: str, *args: str) -> str:
    """promtool's or amtool's verdict on a file it validates; fails the test with its output."""
    checked = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0, f"{Path(tool).name} {' '.join(args)}:\n{output}"
    return output


def readme_receiver() -> dict:
    """The Alertmanager configuration the README's Alerts section shows (its YAML block)."""
    alerts = README.read_text().split("\n## Alerts\n", 1)[1].split("\n## ", 1)[0]
    blocks = [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```", alerts, re.M | re.S)]
    found = [block for block in blocks if isinstance(block, dict) and "receivers" in block]
    assert len(found) == 1, "README.md's Alerts section no longer has one Alertmanager receiver block"
    return found[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prometheus-peers")


@pytest.fixture(scope="module")
def product(database_url: str, folder: Path) -> Iterator[Peer]:
    """The product with its default alert sources and their development credentials."""
    log_path = folder / "uvicorn.log"
    with uvicorn_server(database_url, log_path) as base_url:
        yield Peer("the product", base_url, log_path)


@pytest.fixture(scope="module")
def alertmanager(product: Peer, folder: Path) -> Iterator[Peer]:
    """Alertmanager whose receiver is the README's, pointed at the product, grouping by alertname
    and service with short intervals."""
    binary = installed("prometheus-alertmanager", "alertmanager", package="prometheus-alertmanager")
    amtool = installed("amtool", package="prometheus-alertmanager")
    token_file = folder / "icc-token"
    token_file.write_text(DEV_CREDENTIALS["ICC_ALERTMANAGER_TOKEN"] + "\n")
    config = readme_receiver()
    [receiver] = config["receivers"]
    [webhook] = receiver["webhook_configs"]
    webhook["url"] = product.url + urlsplit(webhook["url"]).path
    webhook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    config["route"] = {"receiver": receiver["name"], "group_by": ["alertname", "service"], **ROUTE_TIMING}
    config_file = folder / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    assert "SUCCESS" in check_with(amtool, "check-config", str(config_file))
    (folder / "alertmanager").mkdir()
    port = free_port()
    command = [
        binary,
        f"--config.file={config_file}",
        f"--storage.path={folder / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # one instance: no gossip port on every interface
        "--log.level=debug",  # each notification and its answer, for a failure's message
    ]
    with peer_process("alertmanager", command, folder, f"http://127.0.0.1:{port}") as peer:
        yield peer


@dataclass
class TextOnlyScraper:
    """A relay that scrapes the product as a text-only scraper would, for Prometheus to read."""

    url: str
    seen: list[tuple[str, str]]  # (the Accept Prometheus sent, the Content-Type the product answered)


@contextmanager
def text_only_scraper(target: str) -> Iterator[TextOnlyScraper]:
    seen: list[tuple[str, str]] = []

    class Relay(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = httpx.get(target + self.path, headers={"Accept": TEXT_ONLY_ACCEPT}, trust_env=False)
            seen.append((self.headers.get("Accept", ""), answer.headers.get("content-type", "")))
            self.send_response(answer.status_code)
            self.send_header("Content-Type", answer.headers.get("content-type", "text/plain"))
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TextOnlyScraper(f"127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Prometheus:
    peer: Peer
    promtool: str
    rules: Path
    text_only: TextOnlyScraper

    def use_rules(self, text: str) -> str:
        """Validates the rule file with promtool, then has Prometheus load it; promtool's verdict."""
        self.rules.write_text(text)
        verdict = check_with(self.promtool, "check", "rules", str(self.rules))
        reloaded = httpx.post(f"{self.peer.url}/-/reload", trust_env=False)
        assert reloaded.status_code == 200, reloaded.text + self.peer.log()
        return verdict

    def api(self, path: str, **params: str) -> dict:
        answer = httpx.get(f"{self.peer.url}/api/v1/{path}", params=params, trust_env=False)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]


@pytest.fixture(scope="module")
def prometheus(product: Peer, alertmanager: Peer, folder: Path) -> Iterator[Prometheus]:
    """Prometheus evaluating every second, alerting to Alertmanager and scraping the product every
    second, directly (job `icc`) and through the text-only relay (job `icc-text`)."""
    binary = installed("prometheus", package="prometheus")
    promtool = installed("promtool", package="prometheus")
    rules = folder / "rules.yml"
    rules.write_text("groups: []\n")
    product_address = urlsplit(product.url).netloc
    with text_only_scraper(product.url) as text_only:
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "alerting": {
                "alertmanagers": [{"static_configs": [{"targets": [urlsplit(alertmanager.url).netloc]}]}]
            },
            "scrape_configs": [
                {"job_name": "icc", "static_configs": [{"targets": [product_address]}]},
                {"job_name": "icc-text", "static_configs": [{"targets": [text_only.url]}]},
            ],
        }
        config_file = folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        assert "SUCCESS" in check_with(promtool, "check", "config", str(config_file))
        (folder / "prometheus").mkdir()
        port = free_port()
        command = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'prometheus'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",  # POST /-/reload loads a test's rules
            # A reload forgets the Alertmanagers until discovery hands them over again (up to 5 s);
            # what fired meanwhile is sent again after this delay (1 min by default).
            "--rules.alert.resend-delay=1s",
        ]
        with peer_process("prometheus", command, folder, f"http://127.0.0.1:{port}") as peer:
            yield Prometheus(peer, promtool, rules, text_only)


# --- reading the product -----------------------------------------------------------------------


def query(database_url: str, sql: str, **params: object) -> list[tuple]:
    with psycopg.connect(_libpq(database_url)) as conn:
        return conn.execute(sql, params).fetchall()


def alerts_named(database_url: str, alertname: str) -> list[tuple]:
    """(status, incident id, delivery count, title) of the product's alerts with that alertname."""
    return query(
        database_url,
        "SELECT status, incident_id, delivery_count, title FROM alerts"
        " WHERE labels->>'alertname' = %(name)s ORDER BY labels->>'instance'",
        name=alertname,
    )


def incident(database_url: str, incident_id: int) -> tuple:
    """(ref, title, severity, services, status) of an incident."""
    [row] = query(
        database_url,
        "SELECT ref, title, severity, services, status FROM incidents WHERE id = %(id)s",
        id=incident_id,
    )
    return row


def alert_entries(database_url: str, incident_id: int) -> list[str]:
    return [
        body
        for (body,) in query(
            database_url,
            "SELECT body FROM timeline_entries WHERE incident_id = %(id)s AND kind = 'alert' ORDER BY id",
            id=incident_id,
        )
    ]


def assert_not_on_the_status_page(product: Peer, title: str) -> None:
    page = httpx.get(f"{product.url}/status", trust_env=False)
    assert page.status_code == 200
    assert "All systems operational" in page.text and title not in page.text
    summary = httpx.get(f"{product.url}/api/v1/status", trust_env=False)
    assert summary.status_code == 200
    assert summary.json()["incidents"] == [] and title not in summary.text


# --- Alertmanager -> the product ---------------------------------------------------------------


def post_to_alertmanager(alertmanager: Peer, alerts: list[dict]) -> None:
    """Through Alertmanager's own API, as Prometheus (or `amtool alert add`) sends them."""
    answer = httpx.post(f"{alertmanager.url}/api/v2/alerts", json=alerts, trust_env=False)
    assert answer.status_code == 200, answer.text


def instances(alertname: str, service: str, summaries: dict[str, str], starts_at: datetime) -> list[dict]:
    """One alert per instance of `alertname` on `service`, severity critical, firing since `starts_at`."""
    return [
        {
            "labels": {
                "alertname": alertname,
                "service": service,
                "severity": "critical",
                "instance": instance,
            },
            "annotations": {"summary": summary, "description": f"{instance} is failing"},
            "startsAt": starts_at.isoformat(),
            "generatorURL": f"http://prometheus.example.com/graph?g0.expr=up%7Binstance%3D%22{instance}%22%7D",
        }
        for instance, summary in summaries.items()
    ]


def resolved(alerts: list[dict]) -> list[dict]:
    """The same alerts, ended a second ago: Alertmanager sends the resolve (send_resolved)."""
    ended = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    return [{**alert, "endsAt": ended} for alert in alerts]


def test_alertmanager_delivers_a_group_of_two_instances_as_one_incident_titled_from_the_group(
    alertmanager, product, database_url
):
    since = datetime.now(UTC) - timedelta(minutes=5)
    firing = instances(
        "CheckoutDown", "checkout", {"web-1": "Checkout returns 502", "web-2": "Checkout returns 502"}, since
    )
    post_to_alertmanager(alertmanager, firing)

    def both_on_one_incident() -> list[tuple] | None:
        rows = alerts_named(database_url, "CheckoutDown")
        return rows if len(rows) == 2 and all(r[0] == "firing" and r[1] for r in rows) else None

    rows = eventually(both_on_one_incident, "both CheckoutDown alerts on an incident", alertmanager, product)
    [incident_id] = {row[1] for row in rows}
    assert query(database_url, "SELECT count(*) FROM incidents") == [(1,)]
    ref, title, severity, services, status = incident(database_url, incident_id)
    assert (title, severity, services, status) == ("Checkout returns 502", "SEV1", ["checkout"], "triage")
    entries = alert_entries(database_url, incident_id)
    assert sum(e.startswith("Opened by alert: Checkout returns 502") for e in entries) == 1
    assert sum(e.startswith("Firing: Checkout returns 502") for e in entries) == 1
    assert_not_on_the_status_page(product, "Checkout returns 502")

    # Alertmanager repeats the firing group (repeat_interval): the same two alerts, counted.
    eventually(
        lambda: all(row[2] >= 2 for row in alerts_named(database_url, "CheckoutDown")),
        "a repeat notification of the CheckoutDown group",
        alertmanager,
        product,
    )
    assert query(database_url, "SELECT count(*) FROM incidents") == [(1,)]
    assert query(database_url, "SELECT count(*) FROM alerts") == [(2,)]

    # web-1 recovers first: its resolve comes while the group still fires, and says nothing more.
    web_1, web_2 = firing
    post_to_alertmanager(alertmanager, resolved([web_1]))
    eventually(
        lambda: [row[0] for row in alerts_named(database_url, "CheckoutDown")] == ["resolved", "firing"],
        "web-1's CheckoutDown alert resolved",
        alertmanager,
        product,
    )
    entries = alert_entries(database_url, incident_id)
    assert sum(e.startswith("Resolved: Checkout returns 502") for e in entries) == 1, entries
    assert not any(ALL_RESOLVED in e for e in entries), entries

    post_to_alertmanager(alertmanager, resolved([web_2]))
    eventually(
        lambda: any(ALL_RESOLVED in e for e in alert_entries(database_url, incident_id)),
        f"the note {ALL_RESOLVED!r} on {ref}",
        alertmanager,
        product,
    )
    assert [row[0] for row in alerts_named(database_url, "CheckoutDown")] == ["resolved", "resolved"]
    time.sleep(2.5)  # more group intervals: Alertmanager sends nothing more, so it stays one note
    entries = alert_entries(database_url, incident_id)
    assert sum(ALL_RESOLVED in e for e in entries) == 1, entries
    assert sum(e.startswith("Resolved: Checkout returns 502") for e in entries) == 2, entries
    assert incident(database_url, incident_id)[4] == "triage", "nothing resolves the incident by itself"
    assert_not_on_the_status_page(product, "Checkout returns 502")


def test_a_group_whose_instances_have_their_own_summaries_is_named_by_its_group_labels(
    alertmanager, product, database_url
):
    since = datetime.now(UTC) - timedelta(minutes=5)
    firing = instances(
        "DiskFull", "orders-db", {"db-1": "Disk 97% full on db-1", "db-2": "Disk 99% full on db-2"}, since
    )
    post_to_alertmanager(alertmanager, firing)

    def both_on_one_incident() -> list[tuple] | None:
        rows = alerts_named(database_url, "DiskFull")
        return rows if len(rows) == 2 and all(r[1] for r in rows) and rows[0][1] == rows[1][1] else None

    rows = eventually(both_on_one_incident, "both DiskFull alerts on one incident", alertmanager, product)
    assert [row[3] for row in rows] == ["Disk 97% full on db-1", "Disk 99% full on db-2"]
    assert incident(database_url, rows[0][1])[1] == "DiskFull (service=orders-db)"

    post_to_alertmanager(alertmanager, resolved(firing))
    eventually(
        lambda: [row[0] for row in alerts_named(database_url, "DiskFull")] == ["resolved", "resolved"],
        "both DiskFull alerts resolved",
        alertmanager,
        product,
    )


# --- Prometheus -> Alertmanager -> the product -------------------------------------------------

FIRING_RULES = """\
groups:
  - name: icc-end-to-end
    rules:
      - alert: PaymentsErrorBudgetBurn
        expr: {critical}
        for: 0s
        labels:
          service: payments
          severity: critical
        annotations:
          summary: Payments burn their error budget 14x too fast
      - alert: PaymentsLatencyHigh
        expr: {warning}
        for: 0s
        labels:
          service: payments
          severity: warning
        annotations:
          summary: Payments p99 latency above 800 ms
"""


def test_a_prometheus_alerting_rule_reaches_the_product_through_alertmanager_and_is_routed(
    prometheus, alertmanager, product, database_url
):
    verdict = prometheus.use_rules(FIRING_RULES.format(critical="vector(1)", warning="vector(1)"))
    assert "SUCCESS: 2 rules found" in verdict
    peers = (prometheus.peer, alertmanager, product)

    def declared() -> tuple | None:
        [critical] = alerts_named(database_url, "PaymentsErrorBudgetBurn") or [None]
        return critical if critical and critical[1] else None

    status, incident_id, _, title = eventually(
        declared, "the critical Prometheus alert on an incident", *peers
    )
    assert (status, title) == ("firing", "Payments burn their error budget 14x too fast")
    assert incident(database_url, incident_id)[1:4] == (
        "Payments burn their error budget 14x too fast",
        "SEV1",
        ["payments"],
    )
    [(labels, links)] = query(
        database_url,
        "SELECT labels, links FROM alerts WHERE labels->>'alertname' = 'PaymentsErrorBudgetBurn'",
    )
    assert labels == {"alertname": "PaymentsErrorBudgetBurn", "service": "payments", "severity": "critical"}
    assert [link["text"] for link in links] == ["Source"]  # Prometheus's generatorURL
    # Without routing rules a warning waits in the unrouted queue.
    warning = eventually(
        lambda: alerts_named(database_url, "PaymentsLatencyHigh"), "the warning alert", *peers
    )
    assert [(row[0], row[1]) for row in warning] == [("firing", None)]
    assert_not_on_the_status_page(product, "Payments burn")

    # The condition clears: Prometheus resolves its alerts, Alertmanager sends the resolve.
    verdict = prometheus.use_rules(FIRING_RULES.format(critical="vector(1) == 0", warning="vector(1) == 0"))
    assert "SUCCESS: 2 rules found" in verdict
    eventually(
        lambda: (
            [row[0] for row in alerts_named(database_url, "PaymentsErrorBudgetBurn")] == ["resolved"]
            and [row[0] for row in alerts_named(database_url, "PaymentsLatencyHigh")] == ["resolved"]
        ),
        "both Prometheus alerts resolved",
        *peers,
    )
    entries = eventually(
        lambda: [e for e in alert_entries(database_url, incident_id) if ALL_RESOLVED in e],
        f"the note {ALL_RESOLVED!r}",
        *peers,
    )
    assert len(entries) == 1


# --- Prometheus scraping the product -----------------------------------------------------------


def test_prometheus_scrapes_the_products_metrics_as_openmetrics_and_as_classic_text(prometheus, product):
    peers = (prometheus.peer, product)

    def both_up() -> dict[str, dict] | None:
        targets = {t["labels"]["job"]: t for t in prometheus.api("targets")["activeTargets"]}
        return targets if {t["health"] for t in targets.values()} == {"up"} and len(targets) == 2 else None

    targets = eventually(both_up, "both scrape targets up", *peers)
    assert targets["icc"]["scrapeUrl"] == f"{product.url}/metrics"
    assert all(t["lastError"] == "" for t in targets.values())

    def counted() -> dict[str, list] | None:
        result = prometheus.api("query", query="icc_http_requests_total")["result"]
        by_job: dict[str, list] = {}
        for series in result:
            by_job.setdefault(series["metric"]["job"], []).append(series)
        return by_job if set(by_job) == {"icc", "icc-text"} else None

    by_job = eventually(counted, "icc_http_requests_total from both jobs", *peers)
    for job, series in by_job.items():
        routes = {s["metric"]["route"] for s in series}
        assert "/metrics" in routes, (job, routes)
        assert all(float(s["value"][1]) >= 1 for s in series)

    # What each scrape was: OpenMetrics names a counter's family without `_total`, the classic text
    # with it; Prometheus keeps the metadata as it read it.
    def metadata(job: str) -> dict[str, str]:
        found = prometheus.api("targets/metadata", match_target=f'{{job="{job}"}}')
        return {m["metric"]: m["type"] for m in found}

    openmetrics, classic = metadata("icc"), metadata("icc-text")
    assert openmetrics["icc_http_requests"] == "counter" and "icc_http_requests_total" not in openmetrics
    assert classic["icc_http_requests_total"] == "counter" and "icc_http_requests" not in classic
    assert (
        openmetrics["icc_http_request_duration_seconds"]
        == classic["icc_http_request_duration_seconds"]
        == "histogram"
    )

    # Prometheus's own Accept asks for OpenMetrics first; the text-only scraper got the classic text.
    accept, content_type = prometheus.text_only.seen[-1]
    assert accept.startswith("application/openmetrics-text;version=1.0.0,")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
