"""Alert sources and routing rules: [alerts] in icc.toml over the defaults, parsed once, strictly.

```toml
[alerts]
rate_limit = "600/m"              # deliveries per source, "N/s" or "N/m"; a source may override it
signature_tolerance = "5m"        # generic webhooks: how old a signed timestamp may be

[alerts.severity_map]             # the sender's severity -> ours, when a route names none
critical = "SEV1"
warning = "SEV3"

[alerts.sources.alertmanager]     # POST /api/v1/alerts/alertmanager (or /alertmanager/<name>)
kind = "alertmanager"             # alertmanager | grafana | pagerduty | generic
token_env = "ICC_ALERTMANAGER_TOKEN"      # Authorization: Bearer <token>
# basic_user = "am"; basic_password_env = "ICC_AM_PASSWORD"   # or HTTP basic auth

[alerts.sources.pagerduty]
kind = "pagerduty"
routing_keys_env = "ICC_PAGERDUTY_ROUTING_KEYS"   # comma separated; or routing_keys = [...]

[alerts.sources.generic]
kind = "generic"
secret_env = "ICC_ALERT_WEBHOOK_SECRET"   # HMAC-SHA256 over "<timestamp>.<raw body>"
fields = { dedup_key = "id", title = "title", status = "state", severity = "level" }

[[alerts.routes]]                 # first match wins
match = ['service="checkout"', 'severity=~"critical|page"']
service = "checkout"              # or service_label = "service" (the default)
severity = "SEV1"                 # optional: else severity_map
action = "declare"                # declare | attach | triage
```
"""

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from app.config import ConfigError, Settings, get_settings, parse_duration, read_config_file

KINDS = ("alertmanager", "grafana", "pagerduty", "generic")
ACTIONS = ("declare", "attach", "triage")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MATCHER = re.compile(r'^\s*([^\s=!~]+)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(.*?))\s*$')
# Development values, refused outside development and tests.
DEV_CREDENTIALS = {
    "ICC_ALERTMANAGER_TOKEN": "dev-alertmanager-token",
    "ICC_GRAFANA_TOKEN": "dev-grafana-token",
    "ICC_PAGERDUTY_ROUTING_KEYS": "dev-pagerduty-routing-key",
    "ICC_ALERT_WEBHOOK_SECRET": "dev-alert-webhook-secret",
}
DEFAULT_SOURCES: dict[str, dict[str, object]] = {
    "alertmanager": {"kind": "alertmanager", "token_env": "ICC_ALERTMANAGER_TOKEN"},
    "grafana": {"kind": "grafana", "token_env": "ICC_GRAFANA_TOKEN"},
    "pagerduty": {"kind": "pagerduty", "routing_keys_env": "ICC_PAGERDUTY_ROUTING_KEYS"},
    "generic": {"kind": "generic", "secret_env": "ICC_ALERT_WEBHOOK_SECRET"},
}
DEFAULT_SEVERITY_MAP = {
    "critical": "SEV1",
    "page": "SEV1",
    "high": "SEV2",
    "error": "SEV2",
    "major": "SEV2",
    "warning": "SEV3",
    "minor": "SEV3",
    "info": "SEV4",
    "low": "SEV4",
}
# Without routing rules: critical pages open incidents, everything else waits for triage.
DEFAULT_ROUTES: list[dict[str, object]] = [
    {"match": ['severity=~"critical|page"'], "action": "declare"},
    {"match": [], "action": "triage"},
]
GENERIC_FIELDS = {
    "dedup_key": "dedup_key",
    "title": "title",
    "status": "status",
    "severity": "severity",
    "labels": "labels",
    "annotations": "annotations",
    "starts_at": "starts_at",
    "ends_at": "ends_at",
    "url": "url",
    "group_key": "group_key",
}
RESOLVED_WORDS = ("resolved", "ok", "closed", "recovered", "inactive", "normal")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # =, !=, =~, !~
    value: str
    pattern: re.Pattern[str] | None

    def matches(self, labels: dict[str, str]) -> bool:
        # As in Alertmanager: a missing label is the empty string, and regexes are anchored.
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.pattern is not None
        found = self.pattern.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.label}{self.op}"{self.value}"'


@dataclass(frozen=True)
class Route:
    matchers: tuple[Matcher, ...]
    action: str
    service: str | None
    service_label: str
    severity: str | None
    sources: tuple[str, ...]  # empty: any source

    def matches(self, source: str, labels: dict[str, str]) -> bool:
        if self.sources and source not in self.sources:
            return False
        return all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    token: str | None = field(default=None, repr=False)
    basic_user: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    routing_keys: tuple[str, ...] = field(default=(), repr=False)
    secret: str | None = field(default=None, repr=False)
    fields: dict[str, str] = field(default_factory=dict)
    rate_limit: int = 600
    rate_window: int = 60  # seconds


@dataclass(frozen=True)
class AlertConfig:
    sources: dict[str, Source]
    routes: tuple[Route, ...]
    severity_map: dict[str, str]
    signature_tolerance: timedelta

    def source(self, name: str) -> Source | None:
        return self.sources.get(name)


def parse_matcher(text: str) -> Matcher:
    """'severity=~"critical|page"' -> a Matcher; ConfigError when it is not one."""
    found = MATCHER.match(text)
    if not found:
        raise ConfigError(f'invalid matcher {text!r}: write label="value", !=, =~ or !~')
    label, op, quoted, bare = found.groups()
    value = bytes(quoted, "utf-8").decode("unicode_escape") if quoted is not None else (bare or "")
    pattern = None
    if op in ("=~", "!~"):
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ConfigError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(label=label, op=op, value=value, pattern=pattern)


def parse_rate(text: str) -> tuple[int, int]:
    """'600/m' -> (600, 60); '20/s' -> (20, 1)."""
    number, _, unit = str(text).partition("/")
    seconds = {"s": 1, "m": 60}.get(unit.strip())
    if not number.strip().isdigit() or int(number) <= 0 or seconds is None:
        raise ConfigError(f"invalid rate limit {text!r}: write '600/m' or '20/s'")
    return int(number), seconds


def _secret(settings: Settings, where: str, env: object) -> str | None:
    if env is None:
        return None
    if not isinstance(env, str):
        raise ConfigError(f"{where}: give the name of an environment variable")
    value = os.environ.get(env) or None
    if value is None and env in DEV_CREDENTIALS and settings.environment != "production":
        value = DEV_CREDENTIALS[env]
    if value is not None and settings.environment == "production" and value in DEV_CREDENTIALS.values():
        raise ConfigError(f"{where}: {env} holds a development value; set a secret of your own")
    return value


def _source(settings: Settings, name: str, raw: dict[str, object], default_rate: str) -> Source:
    where = f"alerts.sources.{name}"
    known = {
        "kind", "token", "token_env", "basic_user", "basic_password_env", "routing_keys",
        "routing_keys_env", "secret_env", "fields", "rate_limit", "enabled",
    }  # fmt: skip
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}")
    if not NAME.match(name):
        raise ConfigError(f"{where}: a source name is lowercase letters, digits, '-' and '_'")
    kind = raw.get("kind", name)
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: use one of {', '.join(KINDS)}")
    if "token" in raw and settings.environment == "production":
        raise ConfigError(f"{where}.token: in production give token_env, not the token itself")
    token = (
        str(raw["token"])
        if raw.get("token")
        else _secret(settings, f"{where}.token_env", raw.get("token_env"))
    )
    keys: tuple[str, ...] = ()
    if isinstance(raw.get("routing_keys"), list):
        keys = tuple(str(k) for k in raw["routing_keys"])  # type: ignore[union-attr]
    elif env_keys := _secret(settings, f"{where}.routing_keys_env", raw.get("routing_keys_env")):
        keys = tuple(k.strip() for k in env_keys.split(",") if k.strip())
    fields = raw.get("fields", {})
    if not isinstance(fields, dict) or not all(isinstance(v, str) for v in fields.values()):
        raise ConfigError(f"{where}.fields: give a table of field paths such as {{ title = 'alert.name' }}")
    if unknown_fields := sorted(set(fields) - set(GENERIC_FIELDS)):
        raise ConfigError(f"{where}.fields: unknown field {unknown_fields[0]!r}")
    rate, window = parse_rate(str(raw.get("rate_limit", default_rate)))
    source = Source(
        name=name,
        kind=str(kind),
        token=token,
        basic_user=str(raw["basic_user"]) if raw.get("basic_user") else None,
        basic_password=_secret(settings, f"{where}.basic_password_env", raw.get("basic_password_env")),
        routing_keys=keys,
        secret=_secret(settings, f"{where}.secret_env", raw.get("secret_env")),
        fields={**GENERIC_FIELDS, **{str(k): v for k, v in fields.items()}},
        rate_limit=rate,
        rate_window=window,
    )
    if kind == "generic" and not source.secret:
        raise ConfigError(f"{where}: a generic source needs secret_env (its HMAC secret)")
    if kind == "pagerduty" and not source.routing_keys:
        raise ConfigError(f"{where}: a pagerduty source needs routing_keys or routing_keys_env")
    if kind in ("alertmanager", "grafana") and not (source.token or source.basic_user):
        raise ConfigError(f"{where}: give token_env, or basic_user and basic_password_env")
    return source


def _route(number: int, raw: object, severities: set[str], sources: set[str]) -> Route:
    where = f"alerts.routes[{number}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: give a table")
    known = {"match", "action", "service", "service_label", "severity", "sources"}
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}")
    match = raw.get("match", [])
    if isinstance(match, str):
        match = [match]
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        raise ConfigError(f"{where}.match: give a list of matchers such as 'severity=\"critical\"'")
    try:
        matchers = tuple(parse_matcher(m) for m in match)
    except ConfigError as exc:
        raise ConfigError(f"{where}.match: {exc}") from None
    action = raw.get("action", "triage")
    if action not in ACTIONS:
        raise ConfigError(f"{where}.action: use one of {', '.join(ACTIONS)}")
    severity = raw.get("severity")
    if severity is not None and str(severity).upper() not in severities:
        raise ConfigError(f"{where}.severity: use one of {', '.join(sorted(severities))}")
    route_sources = raw.get("sources", [])
    if not isinstance(route_sources, list) or any(s not in sources for s in route_sources):
        raise ConfigError(f"{where}.sources: give a list of configured source names")
    return Route(
        matchers=matchers,
        action=str(action),
        service=str(raw["service"]).strip().lower() if raw.get("service") else None,
        service_label=str(raw.get("service_label", "service")),
        severity=str(severity).upper() if severity else None,
        sources=tuple(route_sources),
    )


def load_alert_config(path: Path, settings: Settings | None = None) -> AlertConfig:
    """Read [alerts] from icc.toml (if present) over the defaults."""
    from app.config import load_policy

    settings = settings or get_settings()
    severities = set(load_policy(path).severities)
    data = read_config_file(path).get("alerts", {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [alerts] must be a table")
    if unknown := sorted(
        set(data) - {"rate_limit", "signature_tolerance", "severity_map", "sources", "routes"}
    ):
        raise ConfigError(f"{path}: alerts: unknown setting {unknown[0]!r}")
    default_rate = str(data.get("rate_limit", "600/m"))
    parse_rate(default_rate)
    raw_sources = data.get("sources", {})
    if not isinstance(raw_sources, dict):
        raise ConfigError(f"{path}: [alerts.sources] must be a table of tables")
    sources: dict[str, Source] = {}
    for name in sorted(set(DEFAULT_SOURCES) | set(raw_sources)):
        raw = {**DEFAULT_SOURCES.get(name, {}), **raw_sources.get(name, {})}
        if raw.get("enabled", True) is False:
            continue
        try:
            sources[name] = _source(settings, name, raw, default_rate)
        except ConfigError:
            if name in raw_sources:
                raise
            # A default source whose credential is not set (production) is simply not offered.
    severity_map = dict(DEFAULT_SEVERITY_MAP)
    raw_map = data.get("severity_map", {})
    if not isinstance(raw_map, dict):
        raise ConfigError(f"{path}: [alerts.severity_map] must be a table")
    for sender, ours in raw_map.items():
        if str(ours).upper() not in severities:
            raise ConfigError(f"alerts.severity_map.{sender}: use one of {', '.join(sorted(severities))}")
        severity_map[str(sender).lower()] = str(ours).upper()
    raw_routes = data.get("routes", DEFAULT_ROUTES)
    if not isinstance(raw_routes, list):
        raise ConfigError(f"{path}: [[alerts.routes]] must be a list of tables")
    routes = tuple(_route(n, r, severities, set(sources)) for n, r in enumerate(raw_routes))
    tolerance = parse_duration(str(data.get("signature_tolerance", "5m")))
    return AlertConfig(
        sources=sources, routes=routes, severity_map=severity_map, signature_tolerance=tolerance
    )


@lru_cache
def get_alert_config() -> AlertConfig:
    return load_alert_config(get_settings().config)
