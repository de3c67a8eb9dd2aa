"""The action catalog: [actions] in icc.toml over the defaults, parsed once and strictly.

```toml
[actions]
base_url = "https://automation.internal/hooks"   # "{base_url}" in an action's url
allowlist = ["automation.internal:443"]          # host:port (or host:*) the executor may call
allow_private = ["automation.internal"]           # hosts allowed to resolve to private/loopback
signing_secret_env = "ICC_WEBHOOK_SECRET"         # X-ICC-Signature: HMAC-SHA256 of the body
confirm_within = "2m"

[actions.service-restart]
headers = { Authorization = "Bearer ${env:AUTOMATION_TOKEN}" }
body = { deployment = "{services}", incident = "{ref}" }
incident_roles = ["incident_commander", "tech_lead"]
cooldown = "10m"
```
"""

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from app.auth.models import ORG_ROLES
from app.config import ConfigError, Settings, get_settings, parse_duration, read_config_file
from app.incidents.models import ROLES
from app.outbound import Policy

DEV_SIGNING_SECRET = "dev-webhook-secret"  # noqa: S105 - refused outside development and tests
DEFAULT_BASE_URL = "https://automation.example.com/hooks"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_TIMEOUT = timedelta(minutes=5)
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
# What a body template may name: "{ref}" inside a string, or a string that is exactly "{services}".
BODY_FIELDS = ("ref", "title", "severity", "status", "services", "user_email", "user_name", "action")
BODY_FIELD = re.compile(r"\{([a-z_]+)\}")

DEFAULT_BODY = {
    "action": "{action}",
    "incident": "{ref}",
    "severity": "{severity}",
    "services": "{services}",
    "requested_by": "{user_email}",
}
# The six webhooks of the incident-response runbook (RB-000, "Webhook catalog").
DEFAULT_ACTIONS: dict[str, dict[str, object]] = {
    "vpn-diagnostic": {
        "title": "VPN diagnostic",
        "description": "Collect tunnel state, routes and authentication logs for one user or gateway.",
    },
    "service-restart": {
        "title": "Service restart",
        "description": "Rolling restart of one deployment, respecting its disruption budget.",
        "dangerous": True,
        "cooldown": "5m",
    },
    "dns-flush": {
        "title": "DNS flush",
        "description": "Clear resolver and node-local DNS caches so clients see fresh answers.",
        "requires_confirmation": False,
    },
    "disk-cleanup": {
        "title": "Disk cleanup",
        "description": "Remove logs, temp files and old images from a full volume; never data directories.",
        "dangerous": True,
        "cooldown": "5m",
    },
    "log-tail": {
        "title": "Log tail",
        "description": "Stream a service's logs into the incident channel.",
        "requires_confirmation": False,
    },
    "cache-purge": {
        "title": "Cache purge",
        "description": "Purge cached content by key prefix or by service.",
    },
}


@dataclass(frozen=True)
class ActionSpec:
    name: str
    title: str
    description: str
    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, object] | None
    requires_confirmation: bool
    dangerous: bool
    roles: tuple[str, ...]
    incident_roles: tuple[str, ...]  # empty: anyone with one of `roles`
    timeout: timedelta
    cooldown: timedelta | None


@dataclass(frozen=True, kw_only=True)
class Catalog(Policy):
    """The actions, and (as a Policy) where their requests may go."""

    actions: dict[str, ActionSpec]
    signing_secret: str = field(repr=False)
    confirm_within: timedelta

    def get(self, name: str) -> ActionSpec | None:
        return self.actions.get(name)


def _strings(where: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: give a list of strings")
    return tuple(value)


def _duration(where: str, value: object, *, optional: bool = False) -> timedelta | None:
    if optional and value in (None, "", "none", "0", 0):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: give a duration such as '30s' or '5m'")
    try:
        return parse_duration(value)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _check_body(where: str, value: object) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_body(f"{where}.{k}", v)
    elif isinstance(value, list):
        for n, v in enumerate(value):
            _check_body(f"{where}[{n}]", v)
    elif isinstance(value, str):
        for name in BODY_FIELD.findall(value):
            if name not in BODY_FIELDS:
                raise ConfigError(f"{where}: unknown field {{{name}}}; use one of {', '.join(BODY_FIELDS)}")


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def _action(name: str, raw: dict[str, object], base_url: str) -> ActionSpec:
    where = f"actions.{name}"
    known = {
        "title", "description", "method", "url", "headers", "body", "requires_confirmation",
        "dangerous", "roles", "incident_roles", "timeout", "cooldown", "enabled",
    }  # fmt: skip
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{where}: unknown setting {unknown[0]!r}")
    method = str(raw.get("method", "POST")).upper()
    if method not in METHODS:
        raise ConfigError(f"{where}.method: use one of {', '.join(METHODS)}")
    url = str(raw.get("url", "{base_url}/" + name)).replace("{base_url}", base_url.rstrip("/"))
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        raise ConfigError(f"{where}.url: give an http(s) URL without credentials, not {url!r}")
    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ConfigError(f"{where}.headers: give a table of strings")
    body = raw.get("body", DEFAULT_BODY)
    if body is not None and not isinstance(body, dict):
        raise ConfigError(f"{where}.body: give a table (it is sent as JSON)")
    _check_body(f"{where}.body", body)
    for flag in ("requires_confirmation", "dangerous"):
        if not isinstance(raw.get(flag, False), bool):
            raise ConfigError(f"{where}.{flag}: give true or false")
    roles = _strings(f"{where}.roles", raw.get("roles", ["admin", "responder"]))
    if bad := [r for r in roles if r not in ORG_ROLES or r == "viewer"]:
        raise ConfigError(f"{where}.roles: {bad[0]!r} cannot run actions; use admin and/or responder")
    incident_roles = _strings(f"{where}.incident_roles", raw.get("incident_roles", []))
    if bad := [r for r in incident_roles if r not in ROLES]:
        raise ConfigError(f"{where}.incident_roles: unknown role {bad[0]!r}; roles are {', '.join(ROLES)}")
    timeout = _duration(f"{where}.timeout", raw.get("timeout", "10s"))
    assert timeout is not None
    if timeout > MAX_TIMEOUT:
        raise ConfigError(f"{where}.timeout: at most 5m")
    return ActionSpec(
        name=name,
        title=str(raw.get("title", name)),
        description=str(raw.get("description", "")),
        method=method,
        url=url,
        headers={str(k): v for k, v in headers.items()},
        body=body,
        requires_confirmation=bool(raw.get("requires_confirmation", True)),
        dangerous=bool(raw.get("dangerous", False)),
        roles=roles,
        incident_roles=incident_roles,
        timeout=timeout,
        cooldown=_duration(f"{where}.cooldown", raw.get("cooldown", "1m"), optional=True),
    )


def build_catalog(
    data: dict[str, object], *, settings: Settings, demo_base_url: str | None = None
) -> Catalog:
    """The catalog from the [actions] table of icc.toml (as parsed) over the six defaults."""
    raw = data.get("actions", {})
    if not isinstance(raw, dict):
        raise ConfigError("[actions] must be a table")
    top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    known = {"base_url", "allowlist", "allow_private", "signing_secret_env", "confirm_within"}
    if unknown := sorted(set(top) - known):
        raise ConfigError(f"actions: unknown setting {unknown[0]!r} (an action is a [actions.<name>] table)")
    base_url = demo_base_url or settings.actions_base_url or str(top.get("base_url", DEFAULT_BASE_URL))
    allowlist = list(_strings("actions.allowlist", top.get("allowlist", [])))
    allow_private = list(_strings("actions.allow_private", top.get("allow_private", [])))
    host, port = _host_port(base_url)
    if "allowlist" not in top or demo_base_url:
        allowlist.append(f"{host}:{port}")  # the configured base URL is trusted by default
    if demo_base_url:
        allow_private.append(host)  # the built-in receiver is this very server
    for entry in allowlist:
        entry_host, _, entry_port = entry.rpartition(":")
        if not entry_host or not (entry_port == "*" or entry_port.isdigit()):
            raise ConfigError(f"actions.allowlist: {entry!r} must be host:port or host:*")
    env_name = str(top.get("signing_secret_env", "ICC_WEBHOOK_SECRET"))
    secret = os.environ.get(env_name, "")
    if not secret:
        if settings.environment == "production":
            raise ConfigError(f"{env_name} must be set: it signs every webhook the server sends")
        secret = DEV_SIGNING_SECRET
    actions: dict[str, ActionSpec] = {}
    for name in list(DEFAULT_ACTIONS) + sorted(set(tables) - set(DEFAULT_ACTIONS)):
        if not NAME.match(name):
            raise ConfigError(f"actions.{name}: a name is lower-case letters, digits and '-'")
        merged = {**DEFAULT_ACTIONS.get(name, {}), **tables.get(name, {})}
        if merged.get("enabled", True) is False:
            continue
        actions[name] = _action(name, merged, base_url)
    return Catalog(
        section="actions",
        actions=actions,
        allowlist=tuple(a.lower() for a in allowlist),
        allow_private=tuple(a.lower() for a in allow_private),
        signing_secret=secret,
        confirm_within=_duration("actions.confirm_within", top.get("confirm_within", "2m")) or timedelta(),
    )


def load_catalog(path: Path, *, settings: Settings) -> Catalog:
    """Read icc.toml (if present); in demo mode the actions call the built-in receiver."""
    demo_base_url = None
    if settings.demo:
        demo_base_url = settings.actions_base_url or "http://127.0.0.1:8000/demo/webhooks"
    return build_catalog(read_config_file(path), settings=settings, demo_base_url=demo_base_url)


@lru_cache
def get_catalog() -> Catalog:
    settings = get_settings()
    return load_catalog(settings.config, settings=settings)
