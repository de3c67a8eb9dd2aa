"""Settings from ICC_* environment variables, and the policy file icc.toml.

One Settings object, parsed strictly. Safe defaults exist for development only: outside
development a default secret refuses to start.
"""

import tomllib
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-secret-change-me"  # noqa: S105 - refused outside development


class ConfigError(Exception):
    """A setting or the policy file is missing or invalid; the message is one readable line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ICC_", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    database_url: str | None = None
    secret_key: str = DEV_SECRET
    config: Path = Path("icc.toml")
    runbooks_dir: Path = Path("runbooks")
    data_dir: Path = Path(".icc")
    session_days: int = Field(default=7, ge=1, le=90)
    # Cookies only over HTTPS (with the __Host- prefix), and HSTS. Production must say which:
    # true behind HTTPS, false only as an informed choice (the compose demo on plain HTTP).
    secure_cookies: bool = False
    # The sign-in throttle (app/auth/service.py): failed attempts allowed per fixed window, per
    # account and per client address, counted in PostgreSQL so that every replica agrees.
    sign_in_window_minutes: int = Field(default=15, ge=1, le=1440)
    sign_in_failures_per_account: int = Field(default=5, ge=1, le=1000)
    sign_in_failures_per_address: int = Field(default=20, ge=1, le=100_000)
    # Password hashes computed at once per process (argon2 takes a core for ~0.1 s each); more
    # sign-ins wait in line, so a flood of them never starves the pages.
    password_checks_at_once: int = Field(default=1, ge=1, le=32)
    run_scheduler: bool = True
    access_log: bool = True  # a line per request; off behind nginx, whose access log has them all
    # Where stakeholders reach the status page ("https://status.example.com/"): the links of its
    # feed and JSON. Never taken from a request's Host: the copies are shared by everyone.
    public_url: str | None = None
    demo: bool = False  # `icc serve --demo`: the action catalog calls the built-in receiver
    actions_base_url: str | None = None  # overrides [actions] base_url in icc.toml

    @field_validator("database_url")
    @classmethod
    def normalise_driver(cls, value: str | None) -> str | None:
        """Accept postgres:// and postgresql:// URLs; always talk through psycopg 3."""
        if value is None or value == "":
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith("postgresql+psycopg://"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("public_url")
    @classmethod
    def absolute_url(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not value.startswith(("http://", "https://")) or " " in value:
            raise ValueError("must be an http:// or https:// address")
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def refuse_default_secret(self) -> "Settings":
        if self.environment == "production" and self.secret_key == DEV_SECRET:
            raise ValueError("ICC_SECRET_KEY must be set to a secret of your own in production")
        if self.environment == "production" and len(self.secret_key) < 32:
            raise ValueError("ICC_SECRET_KEY must be at least 32 characters in production")
        return self

    @model_validator(mode="after")
    def refuse_unstated_cookie_security(self) -> "Settings":
        if self.environment == "production" and "secure_cookies" not in self.model_fields_set:
            raise ValueError(
                "ICC_SECURE_COOKIES must be set in production: true when the site is served over "
                "HTTPS, false only to accept sign-ins over plain HTTP"
            )
        return self


@lru_cache
def get_settings() -> Settings:
    """Load the settings once; raise ConfigError with one clear line when they are invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if not first["loc"]:
            raise ConfigError(message) from None
        raise ConfigError(f"ICC_{str(first['loc'][0]).upper()}: {message}") from None


@dataclass(frozen=True)
class SeverityPolicy:
    key: str
    label: str
    description: str
    ack_sla: timedelta | None
    ack_business_days: int | None
    mitigation_sla: timedelta | None
    update_cadence: timedelta | None
    checklist: tuple[tuple[str, str], ...]


DEFAULT_CHECKLIST = (
    ("service-identified", "Affected service identified"),
    ("severity-set", "Severity confirmed"),
    ("ic-assigned", "Incident Commander assigned"),
    ("bridge-open", "Bridge call open"),
    ("channel-created", "Incident channel created"),
    ("status-page", "Status page updated"),
    ("comms-assigned", "Comms Lead assigned"),
)
# Checklist items that say a role is held: assigning the role ticks them, clearing it unticks
# them. By key: the default list's, and the one a custom list gets for the same label.
ROLE_CHECKLIST_ITEMS = {
    "incident_commander": ("ic-assigned", "incident-commander-assigned"),
    "comms_lead": ("comms-assigned", "comms-lead-assigned"),
}

# Defaults from the users' runbooks: SEV1 5 min / 60 min / 15 min, SEV2 10 min / 2 h / 30 min,
# SEV3 30 min / 8 h / 2 h, SEV4 one business day / none / none.
DEFAULT_SEVERITIES: dict[str, dict[str, object]] = {
    "SEV1": {
        "label": "SEV1 · Critical",
        "description": "Total outage or data loss",
        "ack_sla": "5m",
        "mitigation_sla": "60m",
        "update_cadence": "15m",
    },
    "SEV2": {
        "label": "SEV2 · Major",
        "description": "Severe degradation affecting more than 30% of users",
        "ack_sla": "10m",
        "mitigation_sla": "2h",
        "update_cadence": "30m",
    },
    "SEV3": {
        "label": "SEV3 · Minor",
        "description": "Partial degradation affecting fewer than 30% of users",
        "ack_sla": "30m",
        "mitigation_sla": "8h",
        "update_cadence": "2h",
    },
    "SEV4": {
        "label": "SEV4 · Low",
        "description": "Cosmetic, no functional impact",
        "ack_sla": "1bd",
        "mitigation_sla": None,
        "update_cadence": None,
    },
}

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '5m', '2h', '1d' into a timedelta."""
    text = text.strip()
    unit = text[-1:]
    number = text[:-1]
    if unit not in _UNITS or not number.isdigit() or int(number) <= 0:
        raise ConfigError(f"invalid duration {text!r}: use a positive number with s, m, h or d")
    return timedelta(seconds=int(number) * _UNITS[unit])


def _severity_from(key: str, raw: dict[str, object]) -> SeverityPolicy:
    def duration(name: str) -> timedelta | None:
        value = raw.get(name)
        if value in (None, "", "none"):
            return None
        if not isinstance(value, str):
            raise ConfigError(f"severities.{key}.{name}: give a duration such as '15m'")
        return parse_duration(value)

    ack = raw.get("ack_sla")
    ack_days = None
    if isinstance(ack, str) and ack.strip().endswith("bd"):
        days = ack.strip()[:-2]
        if not days.isdigit() or int(days) <= 0:
            raise ConfigError(f"severities.{key}.ack_sla: invalid business days {ack!r}")
        ack_days = int(days)
    checklist_raw = raw.get("checklist")
    if checklist_raw is None:
        checklist = DEFAULT_CHECKLIST
    elif isinstance(checklist_raw, list) and all(isinstance(i, str) for i in checklist_raw):
        checklist = tuple((_slug(label), label) for label in checklist_raw)
    else:
        raise ConfigError(f"severities.{key}.checklist: give a list of item labels")
    return SeverityPolicy(
        key=key,
        label=str(raw.get("label", key)),
        description=str(raw.get("description", "")),
        ack_sla=None if ack_days else duration("ack_sla"),
        ack_business_days=ack_days,
        mitigation_sla=duration("mitigation_sla"),
        update_cadence=duration("update_cadence"),
        checklist=checklist,
    )


def _slug(label: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in label.lower()).split())[:60]


@dataclass(frozen=True)
class Policy:
    severities: dict[str, SeverityPolicy]

    def severity(self, key: str) -> SeverityPolicy:
        return self.severities[key]


def load_policy(path: Path) -> Policy:
    """Read icc.toml (if present) over the defaults: [severities.SEV1] ack_sla = '5m' ..."""
    overrides: dict[str, dict[str, object]] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        raw = data.get("severities", {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: [severities] must be a table")
        overrides = raw
    severities = {}
    for key in sorted(set(DEFAULT_SEVERITIES) | set(overrides)):
        merged = {**DEFAULT_SEVERITIES.get(key, {}), **overrides.get(key, {})}
        severities[key] = _severity_from(key, merged)
    return Policy(severities=severities)


@lru_cache
def get_policy() -> Policy:
    return load_policy(get_settings().config)


def read_config_file(path: Path) -> dict[str, object]:
    """The parsed icc.toml, or {} when there is none; a syntax error is one clear line."""
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
