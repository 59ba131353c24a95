"""The whole hub: every table of the design in one model, and how overrides are applied."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, ValidationError

from ..errors import VsaError
from .base import AbsPath, Model, parse_size
from .component import Component
from .dashboard import Dashboard
from .docker import DockerDaemon
from .network import DEFAULT_NETWORKS, Network
from .observability import Observability
from .reverse_proxy import ReverseProxy
from .storage import Storage

# The host-data key that holds vsa-ops settings in inventory.py and group_data/*.py.
DATA_KEY = "vsa"


class Audit(Model):
    """Design: "/var/log/vsa/ Audit log JSONL" and "/var/lib/vsa/ Audit SQLite database"."""

    jsonl: AbsPath = "/var/log/vsa/audit.jsonl"
    database: AbsPath = "/var/lib/vsa/audit.db"


class Secrets(Model):
    """Where each secret comes from: an environment variable, or the same key in the project's
    uncommitted ``secrets.env``. Values never live in configuration."""

    postgres_password: str = "VSA_POSTGRES_PASSWORD"
    grafana_admin_password: str = "VSA_GRAFANA_ADMIN_PASSWORD"

    def names(self) -> set[str]:
        """The variable names that hold secrets: only these are read, and only these are masked."""
        return {getattr(self, key) for key in type(self).model_fields}


class HubConfig(Model):
    storage: Storage = Storage()
    networks: dict[str, Network] = Field(default_factory=lambda: dict(DEFAULT_NETWORKS))
    docker: DockerDaemon = DockerDaemon()
    observability: Observability = Observability()
    reverse_proxy: ReverseProxy = ReverseProxy()
    dashboard: Dashboard = Dashboard()
    audit: Audit = Audit()
    secrets: Secrets = Secrets()
    # Which stacks this host runs; None runs every built-in stack and every stack under stacks/.
    stacks: list[str] | None = None

    def volume_caps(self) -> dict[str, int]:
        """Bytes each named volume may hold: Prometheus' data volume is capped by its own
        retention_size (the one value users set), the others by their ``max_size``."""
        caps = {name: parse_size(v.max_size) for name, v in self.storage.volumes.items() if v.max_size}
        prometheus = self.observability.prometheus
        for mount in prometheus.container.mounts:
            if mount.source in self.storage.volumes:
                caps[mount.source] = parse_size(prometheus.retention_size)
        return caps

    def builtin_stacks(self) -> dict[str, dict[str, Component]]:
        """Built-in stacks by compose project name, each service name mapped to its component."""
        obs, rp, dash = self.observability, self.reverse_proxy, self.dashboard
        shipper = "alloy" if obs.log_shipper.kind == "alloy" else "promtail"
        return {
            "reverse-proxy": {"nginx": rp.nginx, "certbot": rp.certbot, "reloader": rp.reloader},
            "observability": {
                "prometheus": obs.prometheus, "loki": obs.loki, shipper: obs.log_shipper,
                "grafana": obs.grafana, "node-exporter": obs.node_exporter, "cadvisor": obs.cadvisor,
            },
            "dashboard": {"postgres": dash.postgres, "api": dash.api, "ui": dash.ui},
        }


class ConfigError(VsaError):
    """Configuration that cannot be used; one line per problem, each naming the key and the value."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (lists included) is replaced whole."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def hub_config(overrides: Iterable[Mapping[str, Any]] = ()) -> HubConfig:
    """The hub's configuration: the design's defaults with ``overrides`` applied, lowest first."""
    merged: dict[str, Any] = {}
    for layer in overrides:
        if not isinstance(layer, Mapping):
            raise ConfigError([f"{DATA_KEY}: must be a table of settings (got {_short(layer)})"])
        merged = deep_merge(merged, layer)
    try:
        # Overrides are merged onto the defaults' own values so that a partial table (one
        # container field, one header) keeps every other default of that table.
        defaults = HubConfig().model_dump(exclude_unset=False)
        return HubConfig.model_validate(deep_merge(defaults, merged))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            path = ".".join([DATA_KEY, *(str(part) for part in item["loc"])])
            if item["type"] == "extra_forbidden":
                problems.append(f"{path}: unknown key (value {_short(item['input'])})")
            else:
                message = item["msg"].removeprefix("Value error, ")
                problems.append(f"{path}: {message} (value {_short(item['input'])})")
        raise ConfigError(problems) from None
