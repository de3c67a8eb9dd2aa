"""The escalation policy, per severity, from icc.toml:

    [escalation]
    allow_private = ["alerts.internal"]   # webhook hosts that may resolve to private addresses

    [[escalation.SEV1]]
    name = "Engineering manager"
    after = "30m"
    when = "unmitigated"          # unacknowledged | unmitigated | no_update
    notify = ["role:admin", "webhook:https://hooks.slack.com/services/..."]

Targets: `role:<org role>`, `person:<email>`, `incident-role:<role on the incident>` (shown in
the app), and `webhook:<url>` (a Slack-compatible JSON POST, retried with backoff). The hosts
of the webhook targets are the escalation allowlist of app/outbound.py, each with its port.
"""

from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from app.config import ConfigError, get_settings, parse_duration, read_config_file
from app.outbound import Policy, destination

CONDITIONS = ("unacknowledged", "unmitigated", "no_update")
TARGET_KINDS = ("role", "person", "incident-role", "webhook")


@dataclass(frozen=True)
class Step:
    key: str
    name: str
    after: timedelta
    when: str
    notify: tuple[str, ...]

    @property
    def webhooks(self) -> list[str]:
        return [t.split(":", 1)[1] for t in self.notify if t.startswith("webhook:")]

    @property
    def audience(self) -> list[str]:
        return [t for t in self.notify if not t.startswith("webhook:")]


# From the users' escalation matrix: SEV1 pages on-call at once, the engineering manager after
# 30 minutes and the VP of engineering after an hour; SEV2 the tech lead after 30 minutes and
# the engineering manager after an hour; SEV3 the tech lead after 30 minutes.
DEFAULT_POLICY: dict[str, list[dict[str, object]]] = {
    "SEV1": [
        {"name": "On-call responders", "after": "0m", "when": "unacknowledged", "notify": ["role:responder"]},
        {"name": "Engineering manager", "after": "30m", "when": "unmitigated", "notify": ["role:admin"]},
        {"name": "VP of engineering", "after": "60m", "when": "unmitigated", "notify": ["role:admin"]},
    ],
    "SEV2": [
        {"name": "Tech lead", "after": "30m", "when": "unmitigated", "notify": ["incident-role:tech_lead"]},
        {"name": "Engineering manager", "after": "60m", "when": "unmitigated", "notify": ["role:admin"]},
    ],
    "SEV3": [
        {"name": "Tech lead", "after": "30m", "when": "unmitigated", "notify": ["incident-role:tech_lead"]},
    ],
}


def _duration(text: object, where: str) -> timedelta:
    if text in ("0", "0m", "0s", 0):
        return timedelta(0)
    if not isinstance(text, str):
        raise ConfigError(f"{where}.after: give a duration such as '30m'")
    return parse_duration(text)


def _step(severity: str, index: int, raw: object) -> Step:
    where = f"escalation.{severity}[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each step is a table with name, after, when and notify")
    when = raw.get("when", "unacknowledged")
    if when not in CONDITIONS:
        raise ConfigError(f"{where}.when: one of {', '.join(CONDITIONS)}")
    notify = raw.get("notify", [])
    if not isinstance(notify, list) or not notify or not all(isinstance(t, str) for t in notify):
        raise ConfigError(f"{where}.notify: a list of targets such as 'role:admin'")
    for target in notify:
        kind, _, value = target.partition(":")
        if kind not in TARGET_KINDS or not value:
            raise ConfigError(f"{where}.notify: {target!r} is not role:, person:, incident-role: or webhook:")
        if kind == "webhook" and not _webhook_url(value):
            raise ConfigError(
                f"{where}.notify: {target!r} needs an http(s) URL with a host, without credentials"
            )
    return Step(
        key=f"{severity}:{index}",
        name=str(raw.get("name") or f"Step {index + 1}"),
        after=_duration(raw.get("after", "0m"), where),
        when=str(when),
        notify=tuple(notify),
    )


@dataclass(frozen=True, kw_only=True)
class EscalationPolicy(Policy):
    """The steps per severity, and (as a Policy) where their webhooks may be delivered."""

    steps: dict[str, list[Step]]


def _webhook_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return False
    # Credentials in the URL would be dropped: the request goes to the checked address.
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def _allow_private(raw: object, webhook_hosts: set[str]) -> tuple[str, ...]:
    where = "escalation.allow_private"
    if not isinstance(raw, list) or not all(isinstance(h, str) for h in raw):
        raise ConfigError(f'{where}: give a list of host names, such as ["alerts.internal"]')
    hosts = []
    for entry in raw:
        host = entry.strip().lower().removeprefix("[").removesuffix("]")
        if host not in webhook_hosts:
            named = ", ".join(sorted(webhook_hosts)) or "none"
            raise ConfigError(f"{where}: {entry!r} is not the host of a webhook: target (they are: {named})")
        hosts.append(host)
    return tuple(hosts)


def load_escalation_policy(path: Path) -> EscalationPolicy:
    data = read_config_file(path).get("escalation")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: [escalation] must be a table of severities")
    raw = dict(data or {})
    allow_private = raw.pop("allow_private", [])
    steps: dict[str, list[Step]] = {}
    for severity, entries in (DEFAULT_POLICY if data is None else raw).items():
        if not isinstance(entries, list):
            raise ConfigError(f"{path}: escalation.{severity} must be a list of steps")
        steps[str(severity)] = [_step(str(severity), i, s) for i, s in enumerate(entries)]
    webhooks = [destination(url) for entries in steps.values() for step in entries for url in step.webhooks]
    return EscalationPolicy(
        section="escalation",
        allowlist=tuple(dict.fromkeys(f"{host}:{port}" for _scheme, host, port in webhooks)),
        allow_private=_allow_private(allow_private, {host for _scheme, host, _port in webhooks}),
        steps=steps,
    )


@lru_cache
def get_escalation_policy() -> EscalationPolicy:
    return load_escalation_policy(get_settings().config)
