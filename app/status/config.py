"""The status page's components, from icc.toml:

[status]
name = "Example status"
require_login = false
publish = "auto"        # or "manual": nothing is public until a responder publishes it

[[status.components]]
key = "checkout"
name = "Checkout"
description = "Cart and payment"
group = "Shop"
services = ["checkout", "payments-api"]   # incidents on these services affect it
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.config import ConfigError, get_settings, read_config_file


@dataclass(frozen=True)
class Component:
    key: str
    name: str
    description: str
    group: str
    services: tuple[str, ...]
    position: int


PUBLISH_MODES = ("auto", "manual")


@dataclass(frozen=True)
class StatusConfig:
    name: str
    require_login: bool
    # "auto": an incident a person declares is public from its declaration; "manual": only once
    # a responder publishes it. An incident an alert opened waits for a person either way.
    publish: str
    components: tuple[Component, ...]

    def component(self, key: str) -> Component | None:
        return next((c for c in self.components if c.key == key), None)


DEFAULT_COMPONENTS = (
    ("website", "Website", "The public website and its content delivery", "Web", ("edge", "dns", "website")),
    ("sign-in", "Sign-in", "Accounts and authentication", "Web", ("auth", "sign-in")),
    ("checkout", "Checkout", "Cart, checkout and payments", "Shop", ("checkout", "payments-api")),
    ("orders", "Orders", "Order history and order processing", "Shop", ("orders-api", "orders-db")),
    ("search", "Search", "Product search", "Shop", ("search",)),
    ("webhooks", "Webhooks", "Notifications sent to your systems", "Integrations", ("webhooks",)),
    ("api", "Public API", "The REST API for integrations", "Integrations", ("api", "public-api")),
)


def load_status_config(path: Path) -> StatusConfig:
    data = read_config_file(path).get("status", {})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [status] must be a table")
    raw_components = data.get("components")
    if raw_components is None:
        components = tuple(
            Component(key, name, description, group, services, position)
            for position, (key, name, description, group, services) in enumerate(DEFAULT_COMPONENTS)
        )
    elif isinstance(raw_components, list):
        found = []
        for position, raw in enumerate(raw_components):
            if not isinstance(raw, dict) or not raw.get("key") or not raw.get("name"):
                raise ConfigError(f"{path}: every [[status.components]] needs a key and a name")
            services = raw.get("services", [raw["key"]])
            if not isinstance(services, list):
                raise ConfigError(f"{path}: status component {raw['key']}: services must be a list")
            found.append(
                Component(
                    key=str(raw["key"]),
                    name=str(raw["name"]),
                    description=str(raw.get("description", "")),
                    group=str(raw.get("group", "")),
                    services=tuple(str(s).lower() for s in services),
                    position=position,
                )
            )
        components = tuple(found)
    else:
        raise ConfigError(f"{path}: [[status.components]] must be a list of tables")
    publish = data.get("publish", "auto")
    if publish not in PUBLISH_MODES:
        raise ConfigError(f'{path}: [status] publish must be "auto" or "manual", not {publish!r}')
    return StatusConfig(
        name=str(data.get("name", "Service status")),
        require_login=bool(data.get("require_login", False)),
        publish=publish,
        components=components,
    )


@lru_cache
def get_status_config() -> StatusConfig:
    return load_status_config(get_settings().config)
