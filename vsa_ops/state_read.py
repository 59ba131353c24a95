"""The state read: what a host has of everything a manifest manages, in ONE remote command.

pyinfra runs one command per fact and caches nothing, so reading each file separately would cost
one round trip per file. This fact asks for everything at once: owner, group, mode and SHA-256 of
the managed paths, /etc/fstab, the filesystem labels present, accounts, whether Docker runs and
where its compose plugin is, its networks, images and compose containers, the issued certificates,
the run lock and the audit log's last line (so that the run's audit record needs no read of its own).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass, field

from .config.storage import CERTIFICATES

MARK = "@@vsa:"
# Tools vsa-ops relies on at the host, by the Debian package that brings each.
HOST_COMMANDS = {"sqlite3": "sqlite3", "logrotate": "logrotate", "findmnt": "util-linux", "flock": "util-linux"}
LOCK_DIR = "/var/lib/vsa-ops.lock"
# Where the docker CLI finds plugins (system-wide first). Compose v2 is the CLI plugin; finding the
# file costs nothing, while `docker compose version` starts a 60 MB binary.
PLUGIN_DIRS = ("/usr/local/lib/docker/cli-plugins", "/usr/local/libexec/docker/cli-plugins",
               "/usr/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins", "$HOME/.docker/cli-plugins")


@dataclass(frozen=True)
class PathState:
    kind: str  # "file", "directory", "link", "other"
    owner: int
    group: int
    mode: str
    sha256: str | None = None


@dataclass
class HostSnapshot:
    paths: dict[str, PathState] = field(default_factory=dict)
    # Files found directly inside the directories vsa-ops owns.
    owned_files: set[str] = field(default_factory=set)
    fstab: str = ""
    labels: set[str] = field(default_factory=set)
    mounts: dict[str, str] = field(default_factory=dict)
    # fstab sources (LABEL=..., UUID=...) that name the block device mounted at / now (see ROOT_SOURCES).
    root_sources: set[str] = field(default_factory=set)
    users: dict[str, int] = field(default_factory=dict)
    uids: set[int] = field(default_factory=set)
    docker_running: bool = False
    compose_plugin: str = ""  # path of the compose v2 CLI plugin; "" when missing
    networks: set[str] = field(default_factory=set)
    images: set[str] = field(default_factory=set)
    # (compose project, service) -> container state ("running", "exited", ...)
    containers: dict[tuple[str, str], str] = field(default_factory=dict)
    certificates: set[str] = field(default_factory=set)
    lock: str = ""
    commands: set[str] = field(default_factory=set)
    fingerprint: str = ""
    salt: str = ""  # what secret files were hashed after (see hash_command)
    # The audit JSONL's last line, newline included (b"": no log yet); None when not asked for.
    audit_head: bytes | None = None


# The LABEL= and UUID= names of the device mounted at / (a btrfs subvolume's "[/@]" stripped, the
# device's symlinks followed): an fstab line for / may only name one of these (plan.plan_fstab).
ROOT_SOURCES = ("r=$(findmnt -rn -o SOURCE / 2>/dev/null | sed 's/\\[.*//'); r=$(readlink -f \"$r\" 2>/dev/null); "
                "[ -b \"$r\" ] && for k in label uuid; do for l in /dev/disk/by-$k/*; do "
                "[ \"$(readlink -f \"$l\")\" = \"$r\" ] && echo \"$k=${l##*/}\"; done; done")


def hash_command(files: list[str], secret_files: list[str] = (), salt: str = "") -> str:
    """``sha256sum`` lines for ``files``; files holding secrets are hashed after ``salt`` (a value
    new for every run), so the digest of a password never shows in logs, not even at -vvv."""
    quoted_files = " ".join(shlex.quote(p) for p in files) or "/nonexistent-vsa"
    command = f"sha256sum {quoted_files}"
    if secret_files:
        quoted = " ".join(shlex.quote(p) for p in secret_files)
        command += (f"; for f in {quoted}; do [ -f \"$f\" ] && printf '%s  %s\\n' "
                    f"\"$({{ printf %s {shlex.quote(salt)}; cat \"$f\"; }} | sha256sum | cut -d' ' -f1)\" \"$f\"; done")
    return command


def fingerprinted_reads(paths: list[str], files: list[str], secret_files: list[str] = (),
                        salt: str = "") -> list[tuple[str, str]]:
    """(section, command) for what the fingerprint covers: the managed paths' metadata, their
    contents' digests and /etc/fstab. Each command tolerates missing paths (callers may run them
    under `set -e`); the state read prints them and the run lock re-hashes them, the same text."""
    quoted_paths = " ".join(shlex.quote(p) for p in paths) or "/nonexistent-vsa"
    return [("stat", f"stat -c '%F|%u|%g|%a|%n' {quoted_paths} || true"),
            ("sha256", f"{{ {hash_command(files, secret_files, salt)}; }} || true"),
            ("fstab", "cat /etc/fstab || true")]


def fingerprint_command(paths: list[str], files: list[str], secret_files: list[str] = (), salt: str = "") -> str:
    """Digest of the managed paths' metadata and contents and of /etc/fstab, as the state read
    computes it, so both sides hash exactly the same bytes."""
    reads = "; ".join(command for _, command in fingerprinted_reads(paths, files, secret_files, salt))
    return f"{{ {reads}; }} 2>/dev/null | sha256sum | cut -d' ' -f1"


def state_script(paths: list[str], files: list[str], owned: list[str] | None = None,
                 secret_files: list[str] = (), salt: str = "", audit_log: str | None = None) -> str:
    """The shell script the fact runs: one section per kind of state, each after a marker line.
    Metadata, hashes and fstab are read once into a private temporary folder, printed, and hashed
    together as the fingerprint, the very bytes ``fingerprint_command`` hashes under the lock."""
    docker_ps = ("docker ps -a --filter label=com.docker.compose.project --format "
                 "'{{.Label \"com.docker.compose.project\"}}|{{.Label \"com.docker.compose.service\"}}|{{.State}}'")
    plugins = " ".join(f"{d}/docker-compose" for d in PLUGIN_DIRS)
    reads = fingerprinted_reads(paths, files, secret_files, salt)
    read = "t=$(mktemp -d); " + "; ".join(f"{{ {command}; }} > \"$t/{name}\" 2>/dev/null" for name, command in reads)
    kept = " ".join(f"\"$t/{name}\"" for name, _ in reads)
    sections = [
        *((name, f"cat \"$t/{name}\"") for name, _ in reads),
        ("fingerprint", f"cat {kept} | sha256sum | cut -d' ' -f1; rm -rf \"$t\""),
        ("owned", f"find {' '.join(shlex.quote(p) for p in owned or []) or '/nonexistent-vsa'} -mindepth 1 "
                  "-maxdepth 1 ! -type d 2>/dev/null"),
        ("labels", "ls /dev/disk/by-label/ 2>/dev/null"),
        ("mounts", "findmnt -rn -o TARGET,SOURCE 2>/dev/null"),
        ("root", ROOT_SOURCES),
        ("passwd", "cut -d: -f1,3 /etc/passwd"),
        ("networks", "docker network ls --format '{{.Name}}' 2>/dev/null && running=yes"),
        ("docker", "echo \"${running:-}\""),
        ("compose", f"for p in {plugins}; do [ -x \"$p\" ] && {{ echo \"$p\"; break; }}; done"),
        ("images", "[ -n \"${running:-}\" ] && docker image ls --format '{{.Repository}}:{{.Tag}}' 2>/dev/null"),
        ("containers", f"[ -n \"${{running:-}}\" ] && {docker_ps} 2>/dev/null"),
        ("certificates", f"ls {CERTIFICATES} 2>/dev/null"),
        ("lock", f"cat {LOCK_DIR}/owner 2>/dev/null"),
        ("commands", "for c in " + " ".join(HOST_COMMANDS) + "; do command -v $c >/dev/null && echo $c; done"),
    ]
    if audit_log:
        log = shlex.quote(audit_log)
        sections.append(("audit", f"[ -s {log} ] && tail -n 1 {log} | base64 -w0; echo"))
    return read + "; " + "; ".join(f"echo '{MARK}{name}'; {command}" for name, command in sections) + "; true"


def parse_host_state(lines: list[str]) -> HostSnapshot:
    sections: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if line.startswith(MARK):
            current = line[len(MARK):].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    state = HostSnapshot()
    hashes = {}
    for line in sections.get("sha256", []):
        digest, _, path = line.partition("  ")
        hashes[path] = digest
    kinds = {"regular file": "file", "regular empty file": "file", "directory": "directory", "symbolic link": "link"}
    for line in sections.get("stat", []):
        parts = line.split("|", 4)
        if len(parts) == 5:
            kind, owner, group, mode, path = parts
            state.paths[path] = PathState(kinds.get(kind, "other"), int(owner), int(group), mode.rjust(4, "0"),
                                          hashes.get(path))
    state.owned_files = {line for line in sections.get("owned", []) if line.startswith("/")}
    state.fstab = "".join(f"{line}\n" for line in sections.get("fstab", []))
    state.labels = {line.strip() for line in sections.get("labels", []) if line.strip()}
    for line in sections.get("mounts", []):
        target, _, source = line.partition(" ")
        state.mounts[target] = source
    for line in sections.get("root", []):
        kind, _, name = line.strip().partition("=")
        if kind in ("label", "uuid") and name:
            state.root_sources.add(f"{kind.upper()}={name}")
    for line in sections.get("passwd", []):
        name, _, uid = line.partition(":")
        if uid.isdigit():
            state.users[name] = int(uid)
    state.uids = set(state.users.values())
    state.docker_running = "yes" in sections.get("docker", [])
    state.compose_plugin = "".join(sections.get("compose", [])).strip()
    state.networks = {line.strip() for line in sections.get("networks", []) if line.strip()}
    state.images = {line.strip() for line in sections.get("images", []) if line.strip()}
    for line in sections.get("containers", []):
        project, service, status = (line.split("|") + ["", "", ""])[:3]
        if project and service:
            state.containers[(project, service)] = status
    state.certificates = {line.strip() for line in sections.get("certificates", [])
                          if line.strip() and line.strip() != "README"}
    state.lock = "\n".join(sections.get("lock", [])).strip()
    state.commands = {line.strip() for line in sections.get("commands", []) if line.strip()}
    state.fingerprint = "".join(sections.get("fingerprint", [])).strip()
    if "audit" in sections:
        state.audit_head = base64.b64decode("".join(sections["audit"]).strip())
    return state
