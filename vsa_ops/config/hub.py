"""The whole hub: every table of the design in one model, and how overrides are applied."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, ValidationError, field_validator

from ..errors import VsaError
from .accounts import SecretReaders
from .backup import Backup
from .base import AbsPath, Model, parse_size
from .component import Component
from .containers import Mount
from .dashboard import Dashboard
from .docker import DockerDaemon
from .network import DEFAULT_NETWORKS, Network
from .observability import CERTBOT_TEXTFILE, TEXTFILE_MOUNT, Observability
from .plan_access import PlanIdentity
from .reverse_proxy import ReverseProxy
from .storage import DirectorySpec, Storage

# The host-data key that holds vsa-ops settings in inventory.py and group_data/*.py.
DATA_KEY = "vsa"


class Audit(Model):
    """Design: "/var/log/vsa/ Audit log JSONL" and "/var/lib/vsa/ Audit SQLite database". The one place
    these paths are set: the directory tree, the mounts of the readers (log shipper, dashboard API) and
    the shipper's ``vsa-audit`` job follow from them."""

    jsonl: AbsPath = "/var/log/vsa/audit.jsonl"
    database: AbsPath = "/var/lib/vsa/audit.db"
    # Design: the dashboard API reads both as its non-root user. The folders are root's with this
    # account's id as their group, setgid (2750): the files the audit writes inside (0640) take that
    # group, so the API (whose group must be that id) reads them and nobody else does.
    readers_group: str = "dashboard"

    @field_validator("jsonl", "database")
    @classmethod
    def _in_a_folder(cls, value: str) -> str:
        # The folder is created, owned and mounted into containers: never the root itself.
        if posixpath.dirname(value) == "/":
            raise ValueError("must be a file inside a folder, not directly in /")
        return value

    @property
    def log_folder(self) -> str:
        return posixpath.dirname(self.jsonl)

    @property
    def database_folder(self) -> str:
        return posixpath.dirname(self.database)

    @property
    def directories(self) -> list[DirectorySpec]:
        # Design, "Root Disk": audit trail.
        readable = {"group": self.readers_group, "mode": "2750"}
        return [DirectorySpec(path=self.log_folder, purpose="Audit log JSONL", **readable),
                *([DirectorySpec(path=self.database_folder, purpose="Audit SQLite database", **readable)]
                  if self.database_folder != self.log_folder else [])]

    def mounts(self, database: bool) -> list[Mount]:
        """Read-only binds of the audit folders at the same path, read as they grow (no restart);
        ``database``: the SQLite folder too, not only the JSONL's."""
        folders = dict.fromkeys([self.log_folder, *([self.database_folder] if database else [])])
        return [Mount(source=folder, target=folder, read_only=True, live=True) for folder in folders]


class Secrets(Model):
    """Where each secret comes from: an environment variable, or the same key in the project's
    uncommitted ``secrets.env``. Values never live in configuration."""

    postgres_password: str = "VSA_POSTGRES_PASSWORD"
    grafana_admin_password: str = "VSA_GRAFANA_ADMIN_PASSWORD"
    # The restic repository's password and credentials (vsa.backup; only those its kind needs are asked)
    backup_password: str = "VSA_BACKUP_PASSWORD"
    backup_ssh_key: str = "VSA_BACKUP_SSH_KEY"
    backup_s3_access_key_id: str = "VSA_BACKUP_S3_ACCESS_KEY_ID"
    backup_s3_secret_access_key: str = "VSA_BACKUP_S3_SECRET_ACCESS_KEY"

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
    backup: Backup = Backup()
    secrets: Secrets = Secrets()
    secret_readers: SecretReaders = SecretReaders()
    plan_identity: PlanIdentity = PlanIdentity()
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

    @property
    def directories(self) -> list[DirectorySpec]:
        """The root-disk tree: the audit trail's folders, then storage's (whose entries win)."""
        textfile = DirectorySpec(path=self.observability.node_exporter.textfile_directory,
                                 purpose="vsa-ops facts for node-exporter's textfile collector (certbot's "
                                         "renewal hook writes there too)", container_data=True)
        return [*self.audit.directories, textfile, *self.storage.directories]

    def builtin_stacks(self) -> dict[str, dict[str, Component]]:
        """Built-in stacks by compose project name, each service name mapped to its component. The log
        shipper and the dashboard API get the audit folders mounted (from ``audit``); each container that
        reads a password file gets its secret reader's group (from ``secret_readers``)."""
        obs, rp, dash, readers = self.observability, self.reverse_proxy, self.dashboard, self.secret_readers
        shipper = "alloy" if obs.log_shipper.kind == "alloy" else "promtail"
        return {
            "reverse-proxy": {"nginx": rp.nginx, "reloader": rp.reloader, "certbot": _with_mounts(
                rp.certbot, [obs.node_exporter.textfile_mount(CERTBOT_TEXTFILE, writable=True)])},
            "observability": {
                "prometheus": obs.prometheus, "loki": obs.loki,
                shipper: _with_mounts(obs.log_shipper, self.audit.mounts(database=False)),
                "grafana": _with_group(obs.grafana, readers.grafana.gid), "cadvisor": obs.cadvisor,
                "node-exporter": _with_mounts(obs.node_exporter, [obs.node_exporter.textfile_mount(TEXTFILE_MOUNT)]),
            },
            "dashboard": {"postgres": _with_group(dash.postgres, readers.dashboard_postgres.gid),
                          "api": _with_group(_with_mounts(dash.api, self.audit.mounts(database=True)),
                                             readers.dashboard_api.gid),
                          "ui": dash.ui},
            "backup": {"restic": self.backup.runner_with(
                self.audit.jsonl, self.audit.database, _textfile_directory(obs), dash.postgres.container.container_name,
                dash.postgres.user, dash.postgres.database,
                [dash.api.container.container_name, obs.grafana.container.container_name])},
        }


def _textfile_directory(observability: Observability) -> str:
    # node-exporter's textfile collector folder (issue 13 needs it; another branch adds the field)
    return observability.node_exporter.textfile_directory


def _with_mounts(component: Component, mounts: list[Mount]) -> Component:
    """The component with ``mounts`` added, except where its container already mounts that target."""
    container = component.container
    targets = {m.target for m in container.mounts}
    extra = [m for m in mounts if m.target not in targets]
    if not extra:
        return component
    return component.model_copy(update={"container": container.model_copy(
        update={"mounts": [*container.mounts, *extra]})})


def _with_group(component: Component, gid: int) -> Component:
    container = component.container
    if gid in container.group_add:
        return component
    return component.model_copy(update={"container": container.model_copy(
        update={"group_add": [*container.group_add, gid]})})


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
