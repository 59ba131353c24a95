"""The manifest: everything one host must have, as plain data. Render produces it; lint, plan and
converge read it. Nothing here does I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


# What holds a secret: htpasswd files, files under a secrets/ folder, private keys; and any content
# with a bcrypt hash or a PEM private key. One rule for files created, changed and removed.
_SECRET_PATH = re.compile(r"\.htpasswd$|/secrets/[^/]+$|(^|/)privkey\.pem$|\.key$")
_SECRET_CONTENT = re.compile(r"\$2[abxy]?\$\d\d\$|-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")


def holds_secret(path: str, content: str | None = None) -> bool:
    """Whether the file at ``path`` (holding ``content``, when known) holds a secret."""
    return bool(_SECRET_PATH.search(path) or (content and _SECRET_CONTENT.search(content)))


@dataclass(frozen=True)
class File:
    """A managed file. ``sensitive`` files hold secrets: plans and diffs never show their content.
    A file is sensitive when marked so or when ``holds_secret`` says it is."""

    path: str
    content: str
    owner: int = 0
    group: int = 0
    mode: str = "0644"
    sensitive: bool = False
    domain: str | None = None  # the domain this file belongs to (its vhost, its htpasswd)

    def __post_init__(self):
        if not self.sensitive and holds_secret(self.path, self.content):
            object.__setattr__(self, "sensitive", True)


@dataclass(frozen=True)
class Directory:
    path: str
    owner: int = 0
    group: int = 0
    mode: str = "0755"
    owned: bool = False  # files inside that the manifest does not name are removed


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
    # Host folders whose files the container reads as they change: no restart for those.
    live_paths: tuple[str, ...] = ()
    reload_signal: str = ""  # reloads on this signal instead (Container.reload_signal)

    @property
    def reloads(self) -> bool:
        """A changed configuration is reloaded, not restarted."""
        return bool(self.reload_signal or self.reload_command)


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


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
class Rotation:
    """What makes a changed secret take effect where the file alone does not (a database role's
    password, an admin password kept in an application's database): ``script`` runs by ``sh -c``
    inside the running ``container``, as root, and reads the new value from the mounted file itself,
    so no secret is ever on a command line."""

    path: str
    container: str
    script: str
    what: str


@dataclass(frozen=True)
class Manifest:
    host: str
    files: tuple[File, ...]
    directories: tuple[Directory, ...]
    fstab: tuple[FstabLine, ...]
    networks: tuple[Network, ...]
    stacks: tuple[Stack, ...]
    users: tuple[SystemUser, ...] = ()
    pull: str = "missing"
    domains: tuple[Any, ...] = ()  # the Domain entries this host serves
    rotations: tuple[Rotation, ...] = ()

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
        """The services a change to ``path`` concerns: those whose bind mount holding it is the
        deepest one any service has (a config folder wins over a whole-disk or log-reading mount),
        less those that read that folder live."""
        candidates = []
        for stack in self.stacks:
            by_name = {service.name: service for service in stack.services}
            for name, spec in stack.compose.get("services", {}).items():
                service = by_name.get(name) or Service(name, spec.get("container_name", name))
                sources = [v.get("source", "") if isinstance(v, dict) else str(v).split(":")[0]
                           for v in spec.get("volumes", [])]
                depth = max((len(s.rstrip("/")) for s in sources if s.startswith("/") and _under(path, s)), default=-1)
                if depth >= 0:
                    candidates.append((depth, stack, service))
        deepest = max((depth for depth, _, _ in candidates), default=-1)
        return [(stack, service) for depth, stack, service in candidates
                if depth == deepest and not any(_under(path, live) for live in service.live_paths)]
