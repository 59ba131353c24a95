"""The plan: what converging a host would change, computed from its manifest and its state without
I/O. Deploys apply exactly this; `vsa-ops plan` prints it. One code path for both."""

from __future__ import annotations

import copy
import hashlib
import posixpath
from dataclasses import dataclass, field

from .config.accounts import PREFIX as SECRET_READER_PREFIX
from .errors import PlanError
from .fstab_plan import FstabChange, plan_fstab
from .state_read import HOST_COMMANDS, PathState, HostSnapshot
from .manifest import Directory, File, Manifest, Service, Stack


@dataclass(frozen=True)
class FileChange:
    file: File
    reason: str  # "create", "content", "owner", "mode"

    @property
    def needs_upload(self) -> bool:
        return self.reason in ("create", "content")


@dataclass(frozen=True)
class DirectoryChange:
    directory: Directory
    reason: str  # "create", "owner", "mode"


@dataclass(frozen=True)
class ServiceAction:
    stack: Stack
    service: Service
    action: str  # "reload" or "restart"


@dataclass
class Plan:
    host: str
    fstab: FstabChange | None = None
    users: list[tuple[str, int]] = field(default_factory=list)
    directories: list[DirectoryChange] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    # Files in owned directories that the manifest no longer names (a removed domain's vhost).
    removals: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    stacks_up: list[Stack] = field(default_factory=list)
    services: list[ServiceAction] = field(default_factory=list)
    daemon_json: FileChange | None = None
    # Domains with TLS whose certificate the host lacks: issued after their HTTP-only vhost is live.
    certificates: list = field(default_factory=list)
    restart_docker: bool = False
    install_docker: bool = False
    packages: list[str] = field(default_factory=list)  # Debian packages for tools the host lacks
    fingerprint: str = ""
    lock_holder: str = ""
    unfinished: str = ""  # the run whose cut-short transaction this run undoes first

    @property
    def empty(self) -> bool:
        return not (self.unfinished or self.fstab or self.users or self.directories or self.files or self.removals or self.networks
                    or self.images
                    or self.stacks_up or self.services or self.daemon_json or self.install_docker or self.packages
                    or self.certificates)

    @property
    def transaction_only(self) -> bool:
        """All of the work is in the files-and-stacks transaction (``operations.stacks.activate``)."""
        return not (self.install_docker or self.daemon_json or self.restart_docker or self.packages or self.fstab
                    or self.users or self.directories or self.networks or self.images or self.certificates)

    def summary(self) -> str:
        if self.empty:
            return "no changes"
        parts = [f"unfinished change from run {self.unfinished}: will be undone"] if self.unfinished else []
        for label, count in (("fstab", 1 if self.fstab else 0), ("users", len(self.users)),
                             ("directories", len(self.directories)), ("files", len(self.files)),
                             ("removed files", len(self.removals)),
                             ("networks", len(self.networks)), ("images", len(self.images)),
                             ("stacks up", len(self.stacks_up))):
            if count:
                parts.append(f"{count} {label}")
        for action in ("restart", "reload"):
            names = [s.service.container_name for s in self.services if s.action == action]
            if names:
                parts.append(f"{action} {', '.join(names)}")
        if self.packages:
            parts.append(f"install {', '.join(self.packages)}")
        if self.certificates:
            parts.append(f"certificates for {', '.join(d.name for d in self.certificates)}")
        if self.daemon_json:
            parts.append("daemon.json" + (" and restart docker" if self.restart_docker else ""))
        return "; ".join(parts)


DAEMON_JSON = "/etc/docker/daemon.json"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def managed_paths(manifest: Manifest) -> tuple[list[str], list[str], list[str]]:
    """Paths whose metadata the state read needs, the files whose content hash it needs, and those
    among them that hold secrets (hashed with a salt)."""
    files = [f.path for f in manifest.files if not f.sensitive]
    secret = [f.path for f in manifest.files if f.sensitive]
    return [d.path for d in manifest.directories] + files + secret, files, secret


def content_hash(item: File, salt: str = "") -> str:
    """The digest the state read reports for ``item``: salted where it holds a secret."""
    return sha256((salt if item.sensitive else "") + item.content)


def owned_directories(manifest: Manifest) -> list[str]:
    return [d.path for d in manifest.directories if d.owned]


def check_secret_readers(manifest: Manifest, state: HostSnapshot) -> None:
    """A secret reader's account (config.accounts) must be ours: its id held by an account of another
    name, or its name with another id, would share a password file with someone else."""
    for user in manifest.users:
        if not user.name.startswith(SECRET_READER_PREFIX):
            continue
        holder = next((name for name, uid in state.users.items() if uid == user.uid and name != user.name), None)
        if holder or state.users.get(user.name, user.uid) != user.uid:
            taken = f"uid {user.uid} belongs to {holder!r}" if holder else \
                f"{user.name!r} exists with uid {state.users[user.name]}"
            raise PlanError(f"{manifest.host}: secret reader {user.name} (id {user.uid}): {taken}; choose a free id "
                            f"in vsa.secret_readers")


def make_plan(manifest: Manifest, state: HostSnapshot, *, force_fstab: bool = False) -> Plan:
    plan = Plan(manifest.host, fingerprint=state.fingerprint, lock_holder=state.lock,
                unfinished="" if state.unfinished_committed else state.unfinished)
    plan.install_docker = not state.docker_running or not state.compose_plugin
    plan.packages = sorted({package for command, package in HOST_COMMANDS.items() if command not in state.commands})
    plan.fstab = plan_fstab(state.fstab, manifest.fstab, state, force_fstab)

    check_secret_readers(manifest, state)
    plan.users = [(u.name, u.uid) for u in manifest.users if u.name not in state.users and u.uid not in state.uids]

    for directory in manifest.directories:
        current = state.paths.get(directory.path)
        if current is None or current.kind != "directory":
            plan.directories.append(DirectoryChange(directory, "create"))
        elif (current.owner, current.group) != (directory.owner, directory.group):
            plan.directories.append(DirectoryChange(directory, "owner"))
        elif current.mode != directory.mode:
            plan.directories.append(DirectoryChange(directory, "mode"))

    for item in manifest.files:
        current = state.paths.get(item.path)
        if current is None or current.kind != "file":
            change = FileChange(item, "create")
        elif current.sha256 != content_hash(item, state.salt):
            change = FileChange(item, "content")
        elif (current.owner, current.group) != (item.owner, item.group):
            change = FileChange(item, "owner")
        elif current.mode != item.mode:
            change = FileChange(item, "mode")
        else:
            continue
        if item.path == DAEMON_JSON:
            plan.daemon_json = change  # applied with the engine, before any stack starts
        else:
            plan.files.append(change)

    named = {f.path for f in manifest.files}
    owned = set(owned_directories(manifest))
    plan.removals = sorted(p for p in state.owned_files if p not in named and posixpath.dirname(p) in owned)

    plan.networks = sorted(n.name for n in manifest.networks if n.shared and n.name not in state.networks)
    wanted_images = sorted({spec["image"] for stack in manifest.stacks
                            for spec in stack.compose["services"].values() if spec.get("image")})
    plan.images = [image for image in wanted_images if image not in state.images]

    changed = {c.file.path for c in plan.files if c.needs_upload} | set(plan.removals)
    plan.restart_docker = bool(plan.daemon_json and plan.daemon_json.needs_upload and state.docker_running)
    for stack in manifest.stacks:
        services = list(stack.compose["services"])
        down = [s for s in services if state.containers.get((stack.name, s)) != "running"]
        if stack.compose_path in changed or down:
            plan.stacks_up.append(stack)
    plan.certificates = [d for d in manifest.domains if d.tls and d.name not in state.certificates]
    seen: set[tuple[str, str]] = set()
    compose_files = {stack.compose_path for stack in manifest.stacks}
    for path in sorted(changed - compose_files):  # compose itself recreates what its file changes
        for stack, service in manifest.services_mounting(path):
            key = (stack.name, service.name)
            # A service that is not running starts with the new files: nothing to restart.
            if key in seen or state.containers.get(key) != "running":
                continue
            seen.add(key)
            plan.services.append(ServiceAction(stack, service, "reload" if service.reloads else "restart"))
    return plan


def restrict(plan: Plan, paths: set[str], certificates: set[str]) -> Plan:
    """The part of ``plan`` that concerns only ``paths`` and the certificates named: a change aimed
    at one domain leaves everything else on the host as it is."""
    files = [c for c in plan.files if c.file.path in paths]
    removals = [p for p in plan.removals if p in paths]
    return Plan(
        plan.host,
        files=files,
        removals=removals,
        services=[s for s in plan.services if s.action == "reload"] if files or removals else [],
        certificates=[d for d in plan.certificates if d.name in certificates],
        fingerprint=plan.fingerprint,
        lock_holder=plan.lock_holder,
        unfinished=plan.unfinished,
    )


def assume_applied(state: HostSnapshot, manifest: Manifest, plan: Plan) -> HostSnapshot:
    """The state the host will be in once ``plan`` is applied: the base for a follow-up plan."""
    after = copy.deepcopy(state)
    after.unfinished = ""  # undone by then
    for item in manifest.files:
        after.paths[item.path] = PathState("file", item.owner, item.group, item.mode, content_hash(item, state.salt))
    for directory in manifest.directories:
        after.paths[directory.path] = PathState("directory", directory.owner, directory.group, directory.mode)
    after.owned_files = (state.owned_files - set(plan.removals)) | {f.path for f in manifest.files}
    for stack in plan.stacks_up:
        for service in stack.compose["services"]:
            after.containers[(stack.name, service)] = "running"
    after.certificates = state.certificates | {d.name for d in plan.certificates}
    return after
