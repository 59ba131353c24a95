"""The manifest: everything one host must have, as plain data. Render produces it; lint, plan and
converge read it. Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class File:
    """A managed file. ``sensitive`` files hold secrets: plans and diffs never show their content."""

    path: str
    content: str
    owner: int = 0
    group: int = 0
    mode: str = "0644"
    sensitive: bool = False


@dataclass(frozen=True)
class Directory:
    path: str
    owner: int = 0
    group: int = 0
    mode: str = "0755"


@dataclass(frozen=True)
class FstabLine:
    spec: str
    mountpoint: str
    fstype: str
    options: str
    dump: int
    passno: int

    @property
    def line(self) -> str:
        return f"{self.spec} {self.mountpoint} {self.fstype} {self.options} {self.dump} {self.passno}"


@dataclass(frozen=True)
class Network:
    name: str
    internal: bool
    shared: bool
    members: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SystemUser:
    """An account of the container user model, created on the host only where missing."""

    name: str
    uid: int


@dataclass(frozen=True)
class Service:
    """What the manifest knows about a compose service beyond its compose text."""

    name: str
    container_name: str
    validate_command: tuple[str, ...] = ()
    reload_command: tuple[str, ...] = ()


@dataclass(frozen=True)
class Stack:
    """A compose project: its folder on the host, its parsed compose file and its services."""

    name: str
    directory: str
    compose: dict[str, Any]
    services: tuple[Service, ...]
    builtin: bool

    @property
    def compose_path(self) -> str:
        return f"{self.directory}/compose.yml"


@dataclass(frozen=True)
class Manifest:
    host: str
    files: tuple[File, ...]
    directories: tuple[Directory, ...]
    fstab: tuple[FstabLine, ...]
    networks: tuple[Network, ...]
    stacks: tuple[Stack, ...]
    users: tuple[SystemUser, ...] = ()
    volumes: dict[str, Any] = field(default_factory=dict)

    def file(self, path: str) -> File:
        for item in self.files:
            if item.path == path:
                return item
        raise KeyError(path)

    def stack(self, name: str) -> Stack:
        for item in self.stacks:
            if item.name == name:
                return item
        raise KeyError(name)

    def services_mounting(self, path: str) -> list[tuple[Stack, Service]]:
        """Services with a bind mount that contains ``path``: a change to it concerns them."""
        found = []
        for stack in self.stacks:
            by_name = {service.name: service for service in stack.services}
            for name, spec in stack.compose.get("services", {}).items():
                for volume in spec.get("volumes", []):
                    source = volume.get("source", "") if isinstance(volume, dict) else str(volume).split(":")[0]
                    if source.startswith("/") and (path == source or path.startswith(source.rstrip("/") + "/")):
                        found.append((stack, by_name.get(name) or Service(name, spec.get("container_name", name))))
                        break
        return found
