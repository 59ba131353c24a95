"""One container of a compose stack, as the design describes it: image, name, user, flags, mounts,
ports, networks, restart policy and bounded logs."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import AbsPath, Duration, Model, Size

_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]*(:[0-9]+)?[a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})")
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}")


class RunAs(Model):
    """An entry of the design's "Container User Model".

    ``set_in_compose`` is false where the image itself drops privileges (NGINX's master starts as root
    and runs workers as ``nginx``; PostgreSQL's entrypoint switches to ``postgres``).
    """

    name: str
    uid: int = Field(ge=0, le=2**31)
    set_in_compose: bool = True


class Mount(Model):
    """A bind mount (source is an absolute host path) or a named volume (source is a volume name).

    Written in configuration either as a table or in compose's short form ``SOURCE:TARGET[:ro]``.
    """

    source: str
    target: AbsPath
    read_only: bool = False
    propagation: Literal["rslave", "rshared", "rprivate"] | None = None
    # The container reads these files as they change (data, not configuration): a change to a
    # file under this mount needs no restart.
    live: bool = False

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"{value!r} is not SOURCE:TARGET[:ro|rw]")
            return {"source": parts[0], "target": parts[1], "read_only": len(parts) == 3 and parts[2] == "ro"}
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if not (value.startswith("/") or _NAME.fullmatch(value)) or any(c in value for c in " \n\0:"):
            raise ValueError("must be an absolute host path or a volume name")
        return value

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")


class Port(Model):
    """A published port, ``[HOST_IP:]HOST_PORT:CONTAINER_PORT``."""

    host_ip: str | None = None
    host_port: int = Field(ge=1, le=65535)
    container_port: int = Field(ge=1, le=65535)

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = re.fullmatch(r"(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d+):(\d+)", value)
            if not match:
                raise ValueError(f"{value!r} is not [HOST_IP:]HOST_PORT:CONTAINER_PORT")
            host_ip, host_port, container_port = match.groups()
            return {"host_ip": host_ip, "host_port": int(host_port), "container_port": int(container_port)}
        return value

    @property
    def short(self) -> str:
        prefix = f"{self.host_ip}:" if self.host_ip else ""
        return f"{prefix}{self.host_port}:{self.container_port}"


class Logging(Model):
    """Bounded container logs (reliability: Docker rotates nothing by default)."""

    driver: Literal["json-file", "local"] = "json-file"
    max_size: Size = "10m"
    max_file: int = Field(3, ge=1, le=100)


class Healthcheck(Model):
    test: list[str]
    interval: Duration = "30s"
    timeout: Duration = "5s"
    retries: int = Field(3, ge=1)
    start_period: Duration = "10s"


class Container(Model):
    """A service of a compose stack. Field names follow compose's where they mean the same."""

    image: str
    container_name: str
    runs_as: RunAs | None = None
    entrypoint: list[str] | None = None
    command: list[str] | None = None
    environment: dict[str, str] = {}
    mounts: list[Mount] = []
    ports: list[Port] = []
    networks: list[str] = []
    network_mode: Literal["none", "host"] | None = None
    restart: Literal["no", "always", "unless-stopped", "on-failure"] = "unless-stopped"
    logging: Logging = Logging()
    healthcheck: Healthcheck | None = None
    privileged: bool = False
    security_opt: list[str] = ["no-new-privileges:true"]
    # Least privilege: every Linux capability dropped, then the few this image needs added back.
    cap_drop: list[str] = ["ALL"]
    cap_add: list[str] = []
    # Why this container may hold root-equivalent access (privileged, the host's / mounted read-write,
    # the Docker socket). Lint refuses such access without a reason (README "Least privilege").
    root_access_reason: str = ""
    mem_limit: Size | None = None
    shm_size: Size | None = None
    stop_grace_period: Duration | None = None
    depends_on: list[str] = []
    # Supplementary groups of the container's process (compose ``group_add``): how it reads a
    # password file whose group is a secret reader's (config.accounts).
    group_add: list[int] = []
    # How a changed configuration is checked and applied without a restart: a command run inside the
    # container that checks it (NGINX: nginx -t), then either a signal on which its main process reads
    # it and starts new workers with it (NGINX: HUP; sent with `docker kill`, and the reload waits for
    # the new workers: host_programs/reload.sh; `nginx -s reload` would parse every file once more
    # itself, and return before the new configuration answers) or a command run inside it. Neither: a
    # configuration change restarts it.
    validate_command: list[str] = []
    reload_signal: Literal["", "HUP"] = ""  # HUP only: a reload is done when a new worker runs
    reload_command: list[str] = []

    @field_validator("image")
    @classmethod
    def _pinned_image(cls, value: str) -> str:
        if not _IMAGE.fullmatch(value):
            raise ValueError("must be an image pinned to a tag or digest, such as nginx:1.25-alpine")
        if value.endswith(":latest"):
            raise ValueError("must be pinned to a version, not 'latest'")
        return value

    @field_validator("container_name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("must be a container name: letters, digits, '_', '.', '-'")
        return value

    @field_validator("networks")
    @classmethod
    def _network_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a network name")
        return value

    @field_validator("cap_drop", "cap_add")
    @classmethod
    def _capabilities(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"ALL|[A-Z][A-Z_]{1,31}", name):
                raise ValueError(f"{name!r} is not a Linux capability such as NET_BIND_SERVICE")
        return value

    @model_validator(mode="after")
    def _one_way_to_reload(self):
        if self.reload_signal and self.reload_command:
            raise ValueError(f"reload_signal {self.reload_signal!r} and reload_command {self.reload_command!r}: "
                             f"set one of them (the other to its empty value)")
        return self

    @property
    def user(self) -> str | None:
        """The compose ``user:`` value, when the user model says compose sets it."""
        if self.runs_as and self.runs_as.set_in_compose:
            return f"{self.runs_as.uid}:{self.runs_as.uid}"
        return None
